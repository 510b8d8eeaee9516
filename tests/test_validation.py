"""The error contract: every bad request is problem+json that names the field, the shape
received, the shape expected and the fix; never a 500, never a silent broadcast."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from service import create_app
from service.core import Limits

JSON = {"Content-Type": "application/json"}


def base(**changes) -> dict:
    """A valid 2-3-1 request (numpy convention, batch 4) that each test breaks one way."""
    request = {
        "inputs": [[0.5, -1.0], [1.5, 2.0], [0.1, 0.2], [-0.3, 0.4]],
        "targets": [[1.0], [0.0], [1.0], [0.0]],
        "layers": [
            {
                "weights": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]],
                "biases": [0.0, 0.1, -0.1],
                "activation": "tanh",
            },
            {"weights": [[0.7], [-0.8], [0.9]], "biases": [0.2], "activation": "sigmoid"},
        ],
        "loss": "bce",
    }
    request.update(changes)
    return request


def with_layer(index: int, **changes) -> dict:
    request = base()
    request["layers"] = copy.deepcopy(request["layers"])
    request["layers"][index].update(changes)
    return request


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]
    return body


def field_error(client, request: dict, field: str, *fragments: str, path="/v1/gradients") -> str:
    body = problem(client.post(path, json=request), 422)
    assert field in body["errors"], body["errors"]
    message = " ".join(body["errors"][field])
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_valid_base_request_is_accepted(client):
    assert client.post("/v1/gradients", json=base()).status_code == 200


# -- 400, 404, 405, 413, 415 --


@pytest.mark.parametrize(
    "body",
    [
        '{"inputs": [[1, 2]',
        '{"b": NaN}',
        '{"b": Infinity}',
        '{"b": -Infinity}',
        '{"b": 1e400}',
        "",
        "[1, 2]",
        '"text"',
        "3",
        "null",
    ],
    ids=[
        "truncated",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "empty",
        "array",
        "string",
        "number",
        "null",
    ],
)
def test_unparsable_or_non_object_bodies_are_400(client, body):
    problem(client.post("/v1/gradients", data=body, headers=JSON), 400)


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}],
)
def test_a_body_that_is_not_declared_json_is_415(client, headers):
    body = problem(client.post("/v1/gradients", data='{"a": 1}', headers=headers), 415)
    assert "application/json" in body["detail"]


def test_a_body_over_the_limit_is_413():
    client = create_app({"MAX_CONTENT_LENGTH": 1000}).test_client()
    problem(client.post("/v1/gradients", data=" " * 2000, headers=JSON), 413)


def test_unknown_routes_are_404_json(client):
    problem(client.get("/v1/nothing-here"), 404)


def test_a_wrong_method_is_405_json_with_allow(client):
    response = client.get("/v1/gradients")
    problem(response, 405)
    assert "POST" in response.headers["Allow"]


# -- field errors --


def test_an_unknown_top_level_field_is_named_with_a_suggestion(client):
    field_error(client, base(los="mse"), "los", "unknown field", "'loss'")


def test_a_typo_inside_a_layer_is_never_ignored(client):
    request = base()
    request["layers"][0]["bais"] = request["layers"][0].pop("biases")
    body = problem(client.post("/v1/gradients", json=request), 422)
    assert "layers.0.bais" in body["errors"]
    assert "'biases'" in body["errors"]["layers.0.bais"][0]


@pytest.mark.parametrize("missing", ["inputs", "targets", "layers", "loss"])
def test_missing_required_fields_are_named(client, missing):
    request = base()
    del request[missing]
    field_error(client, request, missing)


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ([[1.0, 2.0], [3.0]], ("ragged", "row 1 has 1")),
        ([], ("(0,)",)),
        ([[]], ("empty",)),
        ([[1.0, "2.0"]], ("[0][1]", "string '2.0'")),
        ([[1.0, True]], ("[0][1]", "boolean")),
        ([[1.0, None]], ("[0][1]", "null")),
        ([[[1.0, 2.0]]], ("3-D",)),
        ("1.0", ("expected", "string")),
        ({"a": 1}, ("binary array",)),
    ],
    ids=[
        "ragged",
        "empty",
        "empty-row",
        "string",
        "boolean",
        "null",
        "3-D",
        "not-a-list",
        "object",
    ],
)
def test_malformed_arrays_are_named_with_what_is_wrong(client, value, fragments):
    field_error(client, with_layer(0, weights=value), "layers.0.weights", *fragments)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("l2", "0.1", "JSON number"),
        ("l2", -1.0, "negative"),
        ("learning_rate", 0.0, "greater than 0"),
        ("learning_rate", True, "JSON number"),
        ("learning_rate", -0.1, "greater than 0"),
    ],
)
def test_scalar_fields_must_be_valid_json_numbers(client, field, value, fragment):
    field_error(client, base(**{field: value}), field, fragment)


@pytest.mark.parametrize(
    ("field", "value", "suggestion"),
    [("loss", "msee", "'mse'"), ("reduction", "avg", None), ("convention", "pytorch", "'torch'")],
)
def test_unknown_names_list_the_choices_and_suggest_one(client, field, value, suggestion):
    message = field_error(client, base(**{field: value}), field, "expected one of")
    if suggestion:
        assert suggestion in message


def test_an_unknown_activation_suggests_the_closest(client):
    field_error(client, with_layer(1, activation="sigmod"), "layers.1.activation", "'sigmoid'")


def test_include_names_must_be_known(client):
    field_error(client, base(include=["a", "dW"]), "include.1", "expected one of z, a, dz")


def test_at_least_one_layer_is_needed(client):
    field_error(client, base(layers=[]), "layers", "at least one layer")


# -- shape rules and the classic traps --


def test_one_dimensional_inputs_explain_how_to_wrap_one_sample(client):
    field_error(
        client, base(inputs=[0.5, -1.0]), "inputs", "(2,)", "(batch, n_in)", "[[x1, ..., x2]]"
    )


def test_one_dimensional_targets_name_the_broadcasting_trap(client):
    message = field_error(client, base(targets=[1.0, 0.0, 1.0, 0.0]), "targets", "(4,)", "(4, 1)")
    assert "(4, 4) matrix" in message and "every prediction compared with every target" in message


def test_targets_of_the_wrong_shape_name_both_shapes(client):
    field_error(client, base(targets=[[1.0, 0.0]] * 4), "targets", "(4, 2)", "expected (4, 1)")


def test_layers_that_do_not_chain_say_what_was_expected(client):
    field_error(
        client,
        with_layer(1, weights=[[0.7], [0.9]]),
        "layers.1.weights",
        "(2, 1)",
        "layer 0 has 3 units",
        "(3, n_out)",
    )


def test_transposed_weights_suggest_the_other_convention(client):
    field_error(
        client,
        with_layer(0, weights=[[0.1, 0.4], [-0.2, 0.5], [0.3, -0.6]]),
        "layers.0.weights",
        "look transposed",
        "'torch'",
    )


@pytest.mark.parametrize(
    ("batch", "effect"),
    [
        (3, "silently add the same bias to every unit of each sample"),
        (1, "silently broadcast z to shape (3, 3)"),
        (4, "NumPy would fail"),
    ],
    ids=["batch-equals-units", "batch-one", "other-batch"],
)
def test_a_column_bias_in_the_numpy_convention_says_what_numpy_would_do(client, batch, effect):
    request = with_layer(0, biases=[[0.0], [0.1], [-0.1]])
    request["inputs"] = request["inputs"][:batch]
    request["targets"] = request["targets"][:batch]
    field_error(client, request, "layers.0.biases", "(3, 1)", "(3,) or (1, 3)", effect, "Fix:")


@pytest.mark.parametrize("bias", [[0.0, 0.1, -0.1], [[0.0, 0.1, -0.1]]], ids=["flat", "row"])
def test_a_flat_or_row_bias_in_the_columns_convention_is_refused(client, bias):
    request = {
        "convention": "columns",
        "inputs": [[0.5, 1.5, 0.1], [-1.0, 2.0, 0.2]],
        "targets": [[1.0, 0.0, 1.0]],
        "layers": [
            {
                "weights": [[0.1, 0.4], [-0.2, 0.5], [0.3, -0.6]],
                "biases": bias,
                "activation": "tanh",
            },
            {"weights": [[0.7, -0.8, 0.9]], "biases": [[0.2]], "activation": "sigmoid"},
        ],
        "loss": "bce",
    }
    field_error(
        client, request, "layers.0.biases", "expected (3, 1)", "batch axis", "[[b1], [b2], ...]"
    )


def test_a_bias_with_the_wrong_number_of_values_says_how_many(client):
    field_error(
        client, with_layer(0, biases=[0.0, 0.1]), "layers.0.biases", "3 unit(s)", "2 bias value(s)"
    )


# -- losses and activations that do not fit --


def test_bce_needs_a_sigmoid_output(client):
    field_error(client, with_layer(1, activation="tanh"), "loss", "sigmoid output", "'tanh'")


def test_cross_entropy_needs_a_softmax_output(client):
    field_error(client, base(loss="cross_entropy"), "loss", "softmax output")


def test_bce_targets_must_lie_in_0_1(client):
    field_error(client, base(targets=[[1.0], [2.0], [1.0], [0.0]]), "targets", "[0, 1]", "2")


@pytest.mark.parametrize(
    ("targets", "fragment"),
    [([[0.5, 0.6]] * 4, "sums to 1.1"), ([[1.5, -0.5]] * 4, "negative")],
    ids=["not-summing-to-1", "negative"],
)
def test_cross_entropy_targets_must_be_probabilities(client, targets, fragment):
    request = base(loss="cross_entropy", targets=targets)
    request["layers"] = copy.deepcopy(request["layers"])
    request["layers"][1] = {
        "weights": [[0.7, 0.1], [-0.8, 0.2], [0.9, 0.3]],
        "biases": [0.2, 0.0],
        "activation": "softmax",
    }
    field_error(client, request, "targets", fragment)


# -- bounds and overflow --


@pytest.mark.parametrize(
    ("limits", "fragments"),
    [
        (Limits(max_elements=20), ("GRADIENT_MAX_ELEMENTS", "20")),
        (Limits(max_layers=1), ("GRADIENT_MAX_LAYERS", "1")),
        (Limits(max_flops=100), ("GRADIENT_MAX_FLOPS", "100")),
    ],
    ids=["elements", "layers", "flops"],
)
def test_a_request_over_a_bound_is_422_naming_the_bound(limits, fragments):
    client = create_app({"GRADIENT_LIMITS": limits}).test_client()
    body = problem(client.post("/v1/gradients", json=base()), 422)
    assert body["type"].endswith("limit-exceeded")
    for fragment in fragments:
        assert fragment in body["detail"]


def test_an_overflowing_computation_is_422_naming_the_layer_never_infinity(client):
    request = base(loss="mse")
    request["layers"] = [
        {
            "weights": [[1e200, 1e200], [1e200, 1e200]],
            "biases": [0.0, 0.0],
            "activation": "identity",
        },
        {"weights": [[1e200], [1e200]], "biases": [0.0], "activation": "identity"},
    ]
    response = client.post("/v1/gradients", json=request)
    body = problem(response, 422)
    assert "overflowed" in body["detail"] and "layer" in body["detail"]
    assert b"Infinity" not in response.data and b"NaN" not in response.data


@pytest.mark.parametrize("encoding", ["json", "base64"])
def test_a_gradient_step_that_overflows_is_422_naming_the_learning_rate(client, encoding):
    # dW = 2 * 10 * (20 - 0) = 400 is finite; 1e308 * 400 is not
    request = {
        "inputs": [[10.0, 10.0]],
        "targets": [[0.0]],
        "layers": [{"weights": [[1.0], [1.0]], "biases": [0.0], "activation": "identity"}],
        "loss": "mse",
        "learning_rate": 1e308,
        "encoding": encoding,
    }
    response = client.post("/v1/gradients", json=request)
    body = problem(response, 422)
    assert list(body["errors"]) == ["learning_rate"]
    assert "layer 0" in body["detail"] and "smaller learning_rate" in body["detail"]


# -- /v1/neuron --

NEURON = {"x": 1.5, "w": 0.8, "b": 0.1, "y": 1.0, "activation": "sigmoid", "loss": "bce"}


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"x": [1.0, 2.0], "w": [1.0]}, "w", "one weight per input"),
        ({"activation": "tanh"}, "loss", "sigmoid"),
        ({"y": 2.0}, "y", "[0, 1]"),
        ({"activation": "softmax"}, "activation", "expected one of"),
        ({"b": "0.1"}, "b", "JSON number"),
    ],
)
def test_neuron_errors_name_the_field(client, changes, field, fragment):
    field_error(client, {**NEURON, **changes}, field, fragment, path="/v1/neuron")


# -- never a 500 --


HOSTILE = [
    base(layers={"weights": [[1.0]]}),
    base(layers=[[1.0, 2.0]]),
    base(layers=[None]),
    with_layer(0, weights="[[1, 2]]"),
    with_layer(0, weights=[[[[[1.0]]]]]),
    with_layer(0, weights=[[1.0, 2.0, 3.0], {"x": 1}]),
    with_layer(0, biases=None),
    base(inputs=[[10**30, 1.0]] * 4),
    base(inputs=[[1e308, 1e308]] * 4, loss="mse"),
    base(**{"ünïcødé": 1}),
    base(loss=None, reduction=7, convention=[]),
    base(include="a"),
    base(layers=[{}] * 70),
]


@pytest.mark.parametrize("request_body", HOSTILE, ids=[f"hostile-{i}" for i in range(len(HOSTILE))])
def test_hostile_bodies_never_get_a_500(client, request_body):
    # the standard library encodes what orjson refuses (10**30)
    response = client.post("/v1/gradients", data=json.dumps(request_body), headers=JSON)
    assert response.status_code in {200, 400, 413, 415, 422}
    if response.status_code != 200:
        problem(response, response.status_code)


# -- issue 14, first step: layer type, upstream, l2_style, include dx -------------------------


def upstream_base(**changes) -> dict:
    """base() with upstream (shaped like the (4, 1) output) instead of targets and loss."""
    request = {k: v for k, v in base().items() if k not in ("targets", "loss")}
    return request | {"upstream": [[1.0], [-1.0], [0.5], [0.0]]} | changes


def test_the_valid_upstream_request_is_accepted_with_a_null_loss(client):
    response = client.post("/v1/gradients", json=upstream_base())
    assert response.status_code == 200
    assert response.get_json()["loss"] is None


@pytest.mark.parametrize("biases", [None, "omitted"])
def test_a_layer_without_biases_is_accepted_and_answers_no_db(client, biases):
    request = with_layer(0, biases=None)
    if biases == "omitted":
        del request["layers"][0]["biases"]
    layers = client.post("/v1/gradients", json=request).get_json()["layers"]
    assert set(layers[0]) == {"a", "dW"} and set(layers[1]) == {"a", "dW", "db"}


def test_an_explicit_dense_type_is_the_default_layer(client):
    plain = client.post("/v1/gradients", json=base()).get_json()
    typed = client.post("/v1/gradients", json=with_layer(1, type="dense")).get_json()
    assert typed == plain


def test_an_unknown_layer_type_names_the_known_types(client):
    field_error(
        client, with_layer(1, type="lstm"), "layers.1.type", "'lstm'", "expected one of dense"
    )


def test_upstream_with_targets_and_loss_says_to_send_one_or_the_other(client):
    field_error(
        client,
        upstream_base(targets=base()["targets"], loss="bce"),
        "upstream",
        "together with targets and loss",
        "Remove targets and loss, or upstream",
    )


def test_upstream_with_a_loss_only_names_the_loss(client):
    field_error(client, upstream_base(loss="mse"), "upstream", "together with loss", "Remove loss")


def test_neither_targets_nor_upstream_says_what_to_send(client):
    request = upstream_base()
    del request["upstream"]
    message = field_error(client, request, "targets", "send targets and a loss", "upstream")
    assert message == field_error(client, request, "loss")


def test_targets_without_a_loss_names_the_loss(client):
    request = base()
    del request["loss"]
    field_error(client, request, "loss", "missing", "send targets and a loss")


@pytest.mark.parametrize(
    ("upstream", "fragments"),
    [
        ([[1.0, -1.0, 0.5, 0.0]], ["got shape (1, 4)", "expected (4, 1)", "looks transposed"]),
        ([1.0, -1.0, 0.5, 0.0], ["got shape (4,)", "expected (4, 1)", "batch 4", "1 output"]),
        ([[1.0], [2.0]], ["got shape (2, 1)", "expected (4, 1)", "'numpy' convention"]),
    ],
    ids=["transposed", "flat", "wrong-batch"],
)
def test_a_mis_shaped_upstream_names_the_shape_received_and_expected(client, upstream, fragments):
    field_error(client, upstream_base(upstream=upstream), "upstream", *fragments)


def test_upstream_in_the_columns_convention_is_units_by_batch(client):
    request = upstream_base(
        convention="columns",
        inputs=np.array(base()["inputs"]).T.tolist(),
        layers=[
            {**layer, "weights": np.array(layer["weights"]).T.tolist(), "biases": None}
            for layer in base()["layers"]
        ],
    )
    field_error(client, request, "upstream", "got shape (4, 1)", "expected (1, 4)", "transposed")
    request["upstream"] = [[1.0, -1.0, 0.5, 0.0]]
    assert client.post("/v1/gradients", json=request).status_code == 200


def test_an_unknown_l2_style_names_the_styles(client):
    field_error(client, base(l2_style="double"), "l2_style", "'double'", "half, full")


def test_dx_is_an_includable_array(client):
    layers = client.post("/v1/gradients", json=base(include=["dx"])).get_json()["layers"]
    assert np.shape(layers[0]["dx"]) == (4, 2) and np.shape(layers[1]["dx"]) == (4, 3)
