"""Target 3: the server-side cost of one /v1/gradients request against the floor.

The floor is what any implementation must do: orjson.loads, np.asarray, the
core, orjson.dumps. The service adds Flask, webargs and marshmallow (parse
once, check every shape rule), the rate limiter, the request log and the
metrics. A bare Flask route doing exactly the floor's work is shown too: it
is the least a Flask service can cost. The naive baselines (the standard
json module, marshmallow's List(List(Float()))) are for contrast.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import orjson
from flask import Flask, Response, request
from marshmallow import Schema, fields

from service import create_app
from service.core import Layer, Problem, compute_gradients

from .cases import MEDIUM, SMALL
from .timing import interleaved

JSON = {"Content-Type": "application/json"}


def _problem(data: dict) -> Problem:
    return Problem(
        inputs=np.asarray(data["inputs"], dtype=np.float64),
        targets=np.asarray(data["targets"], dtype=np.float64),
        layers=tuple(
            Layer(
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


def bare_flask():
    app = Flask("bare")

    @app.post("/g")
    def g():
        return Response(floor(request.get_data()), mimetype="application/json")

    return app.test_client()


def run(report) -> None:
    service = create_app({"RATELIMIT_DEFAULT": "100000000 per minute"}).test_client()
    bare = bare_flask()
    for case in (SMALL, MEDIUM):
        body = orjson.dumps(case.request())
        repeats, inner = (40, 100) if case is SMALL else (20, 5)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # the request log
            stats = interleaved(
                {
                    "service": lambda: service.post("/v1/gradients", data=body, headers=JSON),
                    "floor": lambda: floor(body),
                    "bare": lambda: bare.post("/g", data=body, headers=JSON),
                    "stdlib": lambda: stdlib_json(body),
                    "marshmallow": lambda: marshmallow_lists(body),
                },
                repeats,
                inner,
            )
        for name, label in [
            ("service", "service /v1/gradients (test client)"),
            ("floor", "floor: orjson + asarray + core + orjson"),
            ("bare", "bare Flask route doing the floor"),
            ("stdlib", "naive: stdlib json"),
            ("marshmallow", "naive: marshmallow List(List(Float))"),
        ]:
            report.figure(f"{label}, {case.name}", stats[name])
        floor_time = stats["floor"].median
        report.ratio(f"3. service / floor, {case.name}", stats["service"].median / floor_time, 1.5)
        report.ratio(f"   bare Flask / floor, {case.name}", stats["bare"].median / floor_time, None)
        report.ratio(
            f"   service / bare Flask, {case.name}",
            stats["service"].median / stats["bare"].median,
            None,
        )
