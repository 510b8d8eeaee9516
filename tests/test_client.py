"""The Python client and the command line, against a live gunicorn."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time

import numpy as np
import pytest
import requests

from gradient_client import GradientClient, GradientServiceError
from gradient_client import _arrays as answer_arrays
from tests.conftest import BIN, ROOT, start_server, stop_server
from tests.problems import CONVENTIONS, random_request
from tests.torch_reference import assert_close, reference

CLI = str(BIN / "gradient-service")


def as_arrays(request: dict) -> dict:
    """A /v1/gradients request with every array an ndarray, as a Python caller has them."""
    return {
        **request,
        "inputs": np.array(request["inputs"]),
        "targets": np.array(request["targets"]),
        "layers": [
            {**layer, "weights": np.array(layer["weights"]), "biases": np.array(layer["biases"])}
            for layer in request["layers"]
        ],
    }


def recording_session() -> tuple[requests.Session, list[bytes]]:
    session, bodies = requests.Session(), []
    session.hooks["response"].append(lambda response, **_: bodies.append(response.request.body))
    return session, bodies


@pytest.fixture(scope="module")
def guarded_server():
    """One worker, an API key, and a limit of one request a second."""
    base_url, process = start_server(
        [
            str(BIN / "gunicorn"),
            "--config",
            "python:service.operations.gunicorn_conf",
            "service:create_app()",
        ],
        env={
            "WEB_CONCURRENCY": "1",
            "GRADIENT_API_KEYS": "course-key",
            "GRADIENT_RATELIMIT_DEFAULT": "1 per second",
        },
    )
    yield base_url
    stop_server(process)


# -- the client --------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("bias_form", ["flat", "row"])
def test_gradients_come_back_as_arrays_in_the_callers_shapes(live_server, convention, bias_form):
    if convention == "columns":
        bias_form = "column"  # the only bias shape of the columns convention
    request = random_request(31, convention=convention, bias_form=bias_form, n_layers=3)
    answer = GradientClient(live_server).gradients(**as_arrays(request))
    expected = reference(request)
    assert_close(answer["loss"], expected["loss"], "loss")
    for got, want, sent in zip(answer["layers"], expected["layers"], request["layers"]):
        assert isinstance(got["dW"], np.ndarray) and isinstance(got["db"], np.ndarray)
        assert got["db"].shape == np.shape(sent["biases"])
        assert_close(got["dW"], want["dW"], "dW")
        assert_close(got["db"], want["db"], "db")


def course_layers_request(convention: str) -> dict:
    """CS231n's affine - batchnorm - relu - dropout - affine - softmax, over class labels."""
    rng = np.random.default_rng(41)
    batch, n_in, hidden, classes = 6, 4, 5, 3
    columns = convention == "columns"
    data = (lambda array: array.T) if columns else (lambda array: array)
    weights = (lambda array: array) if convention == "numpy" else (lambda array: array.T)
    vector = (lambda n: (n, 1)) if columns else (lambda n: (n,))
    return {
        "convention": convention,
        "inputs": data(rng.normal(size=(batch, n_in))),
        "targets": rng.integers(0, classes, size=batch),
        "loss": "cross_entropy",
        "layers": [
            {"weights": weights(rng.normal(size=(n_in, hidden))), "activation": "identity"},
            {
                "type": "batchnorm",
                "gamma": rng.normal(size=vector(hidden)),
                "beta": rng.normal(size=vector(hidden)),
                "activation": "relu",
            },
            {
                "type": "dropout",
                "keep_prob": 0.8,
                "mask": data((rng.random((batch, hidden)) < 0.8).astype(float)),
            },
            {
                "weights": weights(rng.normal(size=(hidden, classes))),
                "biases": rng.normal(size=vector(classes)),
                "activation": "softmax",
            },
        ],
        "include": ["dx"],
    }


def as_lists(value):
    if isinstance(value, dict):
        return {key: as_lists(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_lists(item) for item in value]
    return value.tolist() if isinstance(value, np.ndarray) else value


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_the_client_computes_course_layers_and_class_labels(live_server, convention):
    request = course_layers_request(convention)
    answer = GradientClient(live_server).gradients(**request)
    expected = reference(as_lists(request))
    assert_close(answer["loss"], expected["loss"], "loss")
    names = [("dx", "dW"), ("dx", "dgamma", "dbeta"), ("dx",), ("dx", "dW", "db")]
    for got, want, layer_names in zip(answer["layers"], expected["layers"], names):
        assert set(layer_names) <= set(got)
        for name in layer_names:
            assert isinstance(got[name], np.ndarray)
            assert_close(got[name], want[name], name)


def test_the_command_line_computes_course_layers_in_process_and_remotely(live_server, tmp_path):
    problem = tmp_path / "course_layers.json"
    problem.write_text(json.dumps(as_lists(course_layers_request("torch"))))
    local, remote = (
        cli("gradients", str(problem)),
        cli("gradients", str(problem), "--url", live_server),
    )
    assert local.returncode == remote.returncode == 0, local.stderr + remote.stderr
    assert local.stdout == remote.stdout
    assert set(json.loads(local.stdout)["layers"][1]) == {"dx", "dgamma", "dbeta"}


def test_large_arrays_travel_as_base64_both_ways(live_server):
    session, bodies = recording_session()
    client = GradientClient(live_server, session=session, binary_threshold=10)
    request = random_request(32, n_layers=2)
    request["inputs"] = np.random.default_rng(0).normal(size=(20, len(request["inputs"][0])))
    request["targets"] = np.random.default_rng(1).normal(size=(20, len(request["targets"][0])))
    request["loss"] = "mse"
    request["layers"][-1]["activation"] = "identity"
    answer = client.gradients(**as_arrays(request))
    sent = json.loads(bodies[-1])
    assert set(sent["inputs"]) == {"dtype", "shape", "data"} and sent["encoding"] == "base64"
    plain = GradientClient(live_server).gradients(**as_arrays(request))  # small: plain JSON
    assert answer["loss"] == plain["loss"]
    for got, want in zip(answer["layers"], plain["layers"]):
        np.testing.assert_array_equal(got["dW"], want["dW"])
        np.testing.assert_array_equal(got["a"], want["a"])


def test_small_arrays_stay_readable_json(live_server):
    session, bodies = recording_session()
    GradientClient(live_server, session=session).gradients(**as_arrays(random_request(33)))
    assert '"dtype"' not in bodies[-1].decode()


def test_neuron_returns_every_term(live_server):
    terms = GradientClient(live_server).neuron(
        x=np.array([1.5, -0.5]),
        w=np.array([0.8, 0.3]),
        b=0.1,
        y=1.0,
        activation="sigmoid",
        loss="bce",
    )
    a = 1 / (1 + np.exp(-(1.5 * 0.8 - 0.5 * 0.3 + 0.1)))
    assert terms["dL_db"] == pytest.approx(a - 1.0, rel=1e-12)
    assert isinstance(terms["dL_dw"], np.ndarray) and terms["dL_dw"].shape == (2,)


def test_a_grading_script_gets_a_score_and_diagnoses(live_server):
    client = GradientClient(live_server)
    exercise = client.exercises(
        seed=3,
        layer_sizes=[2, 3, 1],
        activations=["sigmoid", "sigmoid"],
        loss="half_mse",
        reduction="sum",
    )
    problem, solution = exercise["problem"], exercise["solution"]
    assert isinstance(problem["inputs"], np.ndarray)
    dz_rows = np.ones((4, 1))  # one row per sample: not summed over the batch
    report = client.check(
        problem,
        {"layers": [{"dW": solution["layers"][0]["dW"]}, {"db": dz_rows}]},
        reveal=True,
    )
    assert report["score"] == 0.5 and report["checked"] == 2
    assert report["results"][1]["diagnosis"] == "not_reduced_over_batch"
    assert isinstance(report["results"][0]["expected"], np.ndarray)


def test_the_client_asks_for_an_exercise_with_any_layer_kind(live_server):
    client = GradientClient(live_server)
    layers = [
        {"units": 4, "activation": "relu", "bias": False},
        {"type": "layernorm"},
        {"type": "dropout", "keep_prob": 0.5},
        {"units": 3, "activation": "softmax"},
    ]
    exercise = client.exercises(
        seed=5, n_in=2, layers=layers, loss="cross_entropy", targets="labels", batch_size=6
    )
    problem, solution = exercise["problem"], exercise["solution"]
    assert sorted(problem["targets"]) == [0, 0, 1, 1, 2, 2]  # every class, twice
    assert "biases" not in problem["layers"][0] and "db" not in solution["layers"][0]
    assert solution["layers"][2]["mask"].shape == (6, 4)
    again = client.gradients(**problem)
    for got, want in zip(again["layers"], solution["layers"], strict=True):
        assert got.keys() == want.keys()
        for name in got:
            np.testing.assert_array_equal(got[name], want[name])


def test_a_validation_error_raises_with_the_services_problem_document(live_server):
    request = as_arrays(random_request(34))
    request["targets"] = request["targets"].ravel()
    with pytest.raises(GradientServiceError) as caught:
        GradientClient(live_server).gradients(**request)
    error = caught.value
    assert error.status == 422 and error.is_invalid_input
    assert "targets" in error.errors and "targets" in str(error)
    assert error.problem["type"].endswith("validation")


def test_a_missing_key_raises_401_and_the_key_is_sent_as_bearer(guarded_server):
    with pytest.raises(GradientServiceError) as caught:
        GradientClient(guarded_server, retries=0).neuron(1.0, 1.0, 0.0, 1.0, "sigmoid", "bce")
    assert caught.value.status == 401 and not caught.value.is_invalid_input
    time.sleep(1.1)
    terms = GradientClient(guarded_server, api_key="course-key").neuron(
        1.0, 1.0, 0.0, 1.0, "sigmoid", "bce"
    )
    assert "dL_db" in terms


def test_a_429_is_retried_after_the_servers_retry_after(guarded_server):
    client = GradientClient(guarded_server, api_key="course-key", retries=3)
    session, bodies = recording_session()
    client.session.hooks = session.hooks
    time.sleep(1.1)
    client.neuron(1.0, 1.0, 0.0, 1.0, "sigmoid", "bce")
    started = time.monotonic()
    client.neuron(1.0, 1.0, 0.0, 1.0, "sigmoid", "bce")  # 429 first, then 200
    assert len(bodies) == 3 and time.monotonic() - started >= 0.5
    with pytest.raises(GradientServiceError) as caught:
        GradientClient(guarded_server, api_key="course-key", retries=0).neuron(
            1.0, 1.0, 0.0, 1.0, "sigmoid", "bce"
        )
    assert caught.value.status == 429


def test_validation_errors_are_never_retried(live_server):
    client = GradientClient(live_server, retries=3)
    session, bodies = recording_session()
    client.session.hooks = session.hooks
    with pytest.raises(GradientServiceError):
        client.neuron(1.0, 1.0, 0.0, 2.0, "sigmoid", "bce")
    assert len(bodies) == 1


def test_an_unreachable_service_raises_after_the_retries():
    client = GradientClient("http://127.0.0.1:1", retries=2)
    started = time.monotonic()
    with pytest.raises(GradientServiceError) as caught:
        client.neuron(1.0, 1.0, 0.0, 1.0, "sigmoid", "bce")
    assert caught.value.status is None and "unreachable" in caught.value.title
    assert time.monotonic() - started < 5


def test_the_client_passes_mypy_strict():
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the command line -----------------------------------------------------------------------------


def cli(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *arguments], cwd=ROOT, capture_output=True, input=stdin, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ("gradients", "examples/problem.json"),
        ("check", "examples/problem.json", "examples/submission.json"),
        ("check", "examples/problem.json", "examples/submission.json", "--format", "gradescope"),
        (
            "exercise",
            "--seed",
            "7",
            "--layers",
            "2,3,1",
            "--activations",
            "tanh,sigmoid",
            "--loss",
            "bce",
            "--decimals",
            "2",
        ),
        (
            "exercise",
            "--seed",
            "7",
            "--n-in",
            "3",
            "--layer-specs",
            '[{"units": 4, "activation": "relu", "bias": false}, {"type": "batchnorm"}, '
            '{"type": "dropout", "keep_prob": 0.8}, {"units": 3, "activation": "identity"}]',
            "--loss",
            "svm",
            "--targets",
            "labels",
        ),
    ],
    ids=["gradients", "check", "check-gradescope", "exercise", "exercise-layers"],
)
def test_in_process_and_remote_print_the_same_bytes(live_server, arguments):
    local, remote = cli(*arguments), cli(*arguments, "--url", live_server)
    assert local.returncode == remote.returncode == 0, local.stderr + remote.stderr
    assert local.stdout == remote.stdout and local.stdout.strip()
    json.loads(local.stdout)


def test_invalid_input_prints_the_problem_on_stderr_and_exits_2(live_server):
    bad = json.dumps({**random_request(35), "targets": [1.0, 0.0]})
    for extra in ((), ("--url", live_server)):
        result = cli("gradients", "-", *extra, stdin=bad)
        assert result.returncode == 2 and result.stdout == ""
        assert json.loads(result.stderr)["errors"]["targets"]


def test_an_unreadable_file_exits_2_and_an_unreachable_service_exits_1():
    assert cli("gradients", "no-such-file.json").returncode == 2
    result = cli("gradients", "examples/problem.json", "--url", "http://127.0.0.1:1")
    assert result.returncode == 1 and "unreachable" in result.stderr


@pytest.mark.parametrize("command", ["serve", "gradients", "check", "exercise"])
def test_every_subcommand_shows_a_working_example(command):
    result = cli(command, "--help")
    assert result.returncode == 0 and "example: gradient-service" in result.stdout


@pytest.mark.parametrize("command", ["gradients", "check", "exercise"])
def test_the_help_examples_run_as_written(command):
    example = re.search(r"example: (gradient-service .*)", cli(command, "--help").stdout)
    arguments = shlex.split(example.group(1).replace("\n", " "))[1:]
    result = cli(*arguments)
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)


# -- images: conv2d, maxpool2d, flatten (issue 15) ------------------------------------------------


def conv_network_request(layout: str) -> dict:
    """conv 3x3 pad 1 (relu) - 2x2 max pool - flatten - dense softmax over class labels, with
    NumPy arrays as a caller has them: images and filters in the layout's order (Ng's (HH, WW,
    C, F) filters and (1, 1, 1, F) biases in NHWC)."""
    rng = np.random.default_rng(15)
    batch, channels, size, filters, classes = 3, 2, 6, 4, 5
    x = rng.normal(size=(batch, channels, size, size))
    w = rng.normal(size=(filters, channels, 3, 3)) * 0.5
    b = rng.normal(size=filters)
    if layout == "NHWC":
        x, w, b = x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), b.reshape(1, 1, 1, -1)
    flat = filters * (size // 2) ** 2
    return {
        "layout": layout,
        "inputs": x,
        "targets": rng.integers(0, classes, size=batch),
        "loss": "cross_entropy",
        "layers": [
            {"type": "conv2d", "weights": w, "biases": b, "pad": 1, "activation": "relu"},
            {"type": "maxpool2d", "pool": 2},
            {"type": "flatten"},
            {
                "weights": rng.normal(size=(flat, classes)) * 0.2,
                "biases": rng.normal(size=classes),
                "activation": "softmax",
            },
        ],
        "include": ["z", "dx"],
    }


@pytest.mark.parametrize("binary_threshold", [4096, 0], ids=["json", "base64"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_the_client_computes_a_conv_network_in_either_layout(live_server, layout, binary_threshold):
    """4-D arrays go out as nested lists or in the binary form, and come back as 4-D ndarrays
    in the layout sent, equal to torch's (F.conv2d, F.max_pool2d, permuted for NHWC)."""
    session, bodies = recording_session()
    client = GradientClient(live_server, session=session, binary_threshold=binary_threshold)
    request = conv_network_request(layout)
    answer = client.gradients(**request)
    sent = json.loads(bodies[-1])
    if binary_threshold == 0:
        assert sent["encoding"] == "base64"
        assert sent["inputs"]["shape"] == list(request["inputs"].shape)
    else:
        assert "encoding" not in sent and np.shape(sent["inputs"]) == request["inputs"].shape
    expected = reference(as_lists(request))
    assert_close(answer["loss"], expected["loss"], "loss")
    conv = answer["layers"][0]
    assert (
        isinstance(conv["dW"], np.ndarray)
        and conv["dW"].shape == request["layers"][0]["weights"].shape
    )
    assert conv["db"].shape == np.shape(request["layers"][0]["biases"])
    assert conv["dx"].shape == request["inputs"].shape
    for i, (got, want) in enumerate(zip(answer["layers"], expected["layers"], strict=True)):
        for name in ("z", "a", "dx", "dW", "db"):
            if name in want and (name in got or name in ("dW", "db")):
                assert_close(got[name], want[name], f"layers.{i}.{name}")


def test_the_client_sends_an_upstream_gradient_without_targets_or_loss(live_server):
    """Ng's conv_backward(dZ, cache) as a call: NHWC images, his W (f, f, n_C_prev, n_C) and
    b (1, 1, 1, n_C), dZ as the upstream; no targets, no loss, and none sent."""
    session, bodies = recording_session()
    rng = np.random.default_rng(16)
    request = {
        "inputs": rng.normal(size=(2, 5, 5, 3)),
        "layout": "NHWC",
        "layers": [
            {
                "type": "conv2d",
                "weights": rng.normal(size=(3, 3, 3, 4)),
                "biases": rng.normal(size=(1, 1, 1, 4)),
                "pad": 1,
                "stride": 2,
            }
        ],
        "upstream": rng.normal(size=(2, 3, 3, 4)),
        "include": ["dx"],
    }
    answer = GradientClient(live_server, session=session).gradients(**request)
    assert not {"targets", "loss"} & set(json.loads(bodies[-1]))
    assert answer["loss"] is None
    expected = reference(as_lists(request))["layers"][0]
    for name in ("dx", "dW", "db"):
        assert answer["layers"][0][name].shape == expected[name].shape
        assert_close(answer["layers"][0][name], expected[name], name)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_the_command_line_computes_a_conv_network_in_process_and_remotely(
    live_server, tmp_path, layout
):
    request = as_lists(conv_network_request(layout))
    for form in ("json", "base64"):
        body = request | ({"encoding": "base64"} if form == "base64" else {})
        problem = tmp_path / f"conv_{form}.json"
        problem.write_text(json.dumps(body))
        local, remote = (
            cli("gradients", str(problem)),
            cli("gradients", str(problem), "--url", live_server),
        )
        assert local.returncode == remote.returncode == 0, local.stderr + remote.stderr
        assert local.stdout == remote.stdout
        answer = answer_arrays(json.loads(local.stdout))  # base64 answers decoded
        expected = reference(request)
        assert_close(answer["loss"], expected["loss"], f"{form} loss")
        for name in ("dW", "db", "dx"):
            assert_close(answer["layers"][0][name], expected["layers"][0][name], f"{form} {name}")
