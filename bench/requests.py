"""Target 3: the server-side cost of one /v1/gradients request against the floor.

The floor is what any implementation must do: parse the JSON, np.asarray, the
core, write the JSON (orjson both ways). The service adds Flask, webargs and
marshmallow (parse once, check every shape rule), the rate limiter, the request
log and the metrics. The target's measure is the Flask test client, as the issue
specifies; the same request made as one WSGI call (what gunicorn does, without
the test client's own environ building and response wrapping) is shown beside
it, and so are two bare Flask routes: one doing exactly the floor's work, one
doing nothing. The last is Flask's own request cycle, a cost no Flask service
can avoid. The naive baselines (the standard json module, marshmallow's
List(List(Float()))) are for contrast.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import orjson
from flask import Flask, Response, request
from marshmallow import Schema, fields
from werkzeug.test import EnvironBuilder

from service import create_app
from service.core import Problem, compute_gradients, dense_layer

from .cases import MEDIUM, SMALL
from .timing import interleaved

JSON = {"Content-Type": "application/json"}


def _problem(data: dict) -> Problem:
    return Problem(
        inputs=np.asarray(data["inputs"], dtype=np.float64),
        targets=np.asarray(data["targets"], dtype=np.float64),
        layers=tuple(
            dense_layer(
                np.asarray(l["weights"], dtype=np.float64),
                np.asarray(l["biases"], dtype=np.float64),
                l["activation"],
            )
            for l in data["layers"]
        ),
        loss=data["loss"],
    )


def _answer(result) -> dict:
    return {
        "loss": result.loss,
        "layers": [{"a": l.a, "dW": l.dW, "db": l.db} for l in result.layers],
    }


def floor(body: bytes) -> bytes:
    result = compute_gradients(_problem(orjson.loads(body)))
    return orjson.dumps(_answer(result), option=orjson.OPT_SERIALIZE_NUMPY)


def stdlib_json(body: bytes) -> str:
    result = compute_gradients(_problem(json.loads(body)))
    answer = _answer(result)
    answer["layers"] = [{k: np.asarray(v).tolist() for k, v in l.items()} for l in answer["layers"]]
    return json.dumps(answer)


class _NaiveLayer(Schema):
    weights = fields.List(fields.List(fields.Float()))
    biases = fields.List(fields.Float())
    activation = fields.String()


class _NaiveRequest(Schema):
    inputs = fields.List(fields.List(fields.Float()))
    targets = fields.List(fields.List(fields.Float()))
    layers = fields.List(fields.Nested(_NaiveLayer))
    loss = fields.String()


def marshmallow_lists(body: bytes, schema=_NaiveRequest()) -> bytes:
    result = compute_gradients(_problem(schema.load(orjson.loads(body))))
    return orjson.dumps(_answer(result), option=orjson.OPT_SERIALIZE_NUMPY)


def bare_flask() -> Flask:
    app = Flask("bare")

    @app.post("/g")
    def g():
        return Response(floor(request.get_data()), mimetype="application/json")

    @app.post("/nothing")
    def nothing():
        return Response(b"{}", mimetype="application/json")

    return app


def wsgi_call(app, path: str, body: bytes):
    """One request as gunicorn makes it: the app called with a ready environ."""
    environ = EnvironBuilder(path=path, method="POST", data=body, headers=JSON).get_environ()

    def call():
        fresh = {**environ, "wsgi.input": io.BytesIO(body)}
        chunks = app(fresh, lambda status, headers, exc_info=None: None)
        b"".join(chunks)
        chunks.close()

    return call


def run(report) -> None:
    app = create_app({"RATELIMIT_DEFAULT": "100000000 per minute"})
    service, bare = app.test_client(), bare_flask()
    bare_client = bare.test_client()
    for case in (SMALL, MEDIUM):
        body = orjson.dumps(case.request())
        repeats, inner = (40, 100) if case is SMALL else (20, 5)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # the request log
            stats = interleaved(
                {
                    "service": lambda: service.post("/v1/gradients", data=body, headers=JSON),
                    "service wsgi": wsgi_call(app, "/v1/gradients", body),
                    "floor": lambda: floor(body),
                    "bare": lambda: bare_client.post("/g", data=body, headers=JSON),
                    "bare wsgi": wsgi_call(bare, "/g", body),
                    "nothing wsgi": wsgi_call(bare, "/nothing", body),
                    "stdlib": lambda: stdlib_json(body),
                    "marshmallow": lambda: marshmallow_lists(body),
                },
                repeats,
                inner,
            )
        for name, label in [
            ("service", "service /v1/gradients (test client)"),
            ("service wsgi", "service /v1/gradients (one WSGI call)"),
            ("floor", "floor: orjson + asarray + core + orjson"),
            ("bare", "bare Flask route doing the floor (test client)"),
            ("bare wsgi", "bare Flask route doing the floor (one WSGI call)"),
            ("nothing wsgi", "bare Flask route doing nothing (one WSGI call)"),
            ("stdlib", "naive: stdlib json"),
            ("marshmallow", "naive: marshmallow List(List(Float))"),
        ]:
            report.figure(f"{label}, {case.name}", stats[name])
        floor_time = stats["floor"].median
        report.ratio(f"3. service / floor, {case.name}", stats["service"].median / floor_time, 1.5)
        for name, label in [
            ("service wsgi", "service, one WSGI call"),
            ("bare", "bare Flask route"),
            ("bare wsgi", "bare Flask route, one WSGI call"),
            ("nothing wsgi", "Flask's own request cycle"),
        ]:
            report.ratio(f"   {label} / floor", stats[name].median / floor_time, None)
        report.ratio(
            "   service / bare Flask route, one WSGI call each",
            stats["service wsgi"].median / stats["bare wsgi"].median,
            None,
        )
