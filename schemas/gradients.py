"""POST /v1/gradients: the request, its shape rules, and the response.

The request schema parses once, checks every cross-field shape rule with a
message a student can act on, and loads into a ``GradientsRequest`` that
holds the canonical ``core.Problem`` and what is needed to answer in the
client's own shapes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from service.core import (
    ACTIVATIONS,
    ALIASES,
    LOSSES,
    REDUCTIONS,
    Gradients,
    Layer,
    LayerResult,
    Problem,
)
from service.core.gradient_check import GradientCheck
from service.core.layers import KINDS
from service.core.network import L2_STYLES

from .base import StrictSchema
from .conventions import CONVENTIONS, Convention
from .fields import (
    MAX_LAYERS,
    Array,
    BoundedList,
    Choice,
    Flag,
    Number,
    one_of,
    positive_number,
    shape_text,
)

INCLUDABLE = ("z", "a", "dz", "dx")
ENCODINGS = ("json", "base64")
ACTIVATION_NAMES = (*ACTIVATIONS, *ALIASES)
#: probability targets for cross_entropy must sum to 1 within this
PROBABILITY_TOLERANCE = 1e-6


class LayerSchema(StrictSchema):
    type = one_of(
        KINDS,
        "layer type",
        load_default="dense",
        metadata={"description": "the layer's kind; absent means dense"},
    )
    weights = Array(
        ndims=(2,),
        required=True,
        metadata={
            "description": (
                "2-D: (n_in, n_out) in the numpy convention, (n_out, n_in) in torch and columns."
            )
        },
    )
    biases = Array(
        ndims=(1, 2),
        allow_none=True,
        load_default=None,
        metadata={
            "description": (
                "(n_out,) or (1, n_out) in numpy and torch; (n_out, 1) in columns. Omitted or "
                "null: a layer without a bias, and no db in the answer."
            )
        },
    )
    activation = one_of(ACTIVATION_NAMES, "activation", required=True)


@dataclass(frozen=True)
class GradientsRequest:
    """A validated request: the canonical problem and how to answer in the client's shapes."""

    problem: Problem
    convention: Convention
    bias_shapes: tuple[tuple[int, ...] | None, ...]  # None: a layer without a bias
    include: tuple[str, ...]
    learning_rate: float | None
    gradient_check: bool = False
    #: "base64": every array of the answer in the binary form (written by service.json)
    encoding: str = "json"

    def client_array(self, out: LayerResult, layer: int, name: str) -> np.ndarray:
        """One of a layer's results (z, a, dz, dx, dW, db) in the client's convention and shapes."""
        if name == "dW":
            return self.convention.weights(out.dW)
        if name == "db":
            return out.db.reshape(self.bias_shapes[layer])
        return self.convention.data(getattr(out, name))

    def present(
        self,
        result: Gradients,
        check: GradientCheck | None = None,
        updated: tuple[Layer, ...] | None = None,
    ) -> dict:
        """The core's canonical result (and ``updated`` layers), in the client's shapes.

        Arrays stay ndarrays: the JSON writer lays them out as lists or in the
        binary form, as ``encoding`` asks.
        """
        answer = {
            "loss": result.loss,
            "layers": [
                {name: self.client_array(out, i, name) for name in (*self.include, *out.grads)}
                for i, out in enumerate(result.layers)
            ],
        }
        if updated is not None:
            answer["updated_layers"] = [
                {"weights": self.convention.weights(layer.weights)}
                | ({} if shape is None else {"biases": layer.biases.reshape(shape)})
                for layer, shape in zip(updated, self.bias_shapes)
            ]
        if check is not None:
            answer["gradient_check"] = check
        return answer


class NetworkProblemSchema(StrictSchema):
    """The problem every endpoint shares: data, layers, loss, and their shape rules."""

    inputs = Array(
        ndims=(1, 2),  # 1-D is parsed only to be refused with the shape rules' advice
        documented_ndims=(2,),
        required=True,
        metadata={"description": ("(batch, n_in) in numpy and torch; (n_in, batch) in columns.")},
    )
    targets = Array(
        ndims=(1, 2),  # 1-D is parsed only to be refused with the shape rules' advice
        documented_ndims=(2,),
        load_default=None,
        metadata={
            "description": (
                "(batch, n_out) in numpy and torch; (n_out, batch) in columns. Required with "
                "loss; leave both out when sending upstream."
            )
        },
    )
    upstream = Array(
        ndims=(1, 2),  # 1-D is parsed only to be refused with the shape rules' advice
        documented_ndims=(2,),
        load_default=None,
        metadata={
            "description": (
                "instead of targets and loss: dL/d(the last layer's output after its "
                "activation), shaped like that output ((batch, n_out) in numpy and torch; "
                "(n_out, batch) in columns), as CS231n's dout. The answer's loss is then null."
            )
        },
    )
    layers = BoundedList(
        fields.Nested(LayerSchema),
        MAX_LAYERS,
        "layers",
        required=True,
        validate=validate.Length(min=1, error="at least one layer is needed."),
    )
    loss = one_of(LOSSES, "loss", load_default=None)
    reduction = one_of(REDUCTIONS, "reduction", load_default="mean")
    convention = one_of(CONVENTIONS, "convention", load_default="numpy")
    l2 = Number(
        load_default=0.0,
        validate=validate.Range(min=0, error="must not be negative (got {input})."),
    )
    l2_style = one_of(
        L2_STYLES,
        "l2_style",
        load_default="half",
        metadata={
            "description": (
                "half: 0.5 * l2 * sum(W**2), gradient l2 * W; full (CS231n): l2 * sum(W**2), "
                "gradient 2 * l2 * W"
            )
        },
    )

    @validates_schema(skip_on_field_errors=True)
    def _check_shapes(self, data, **kwargs):
        errors = _shape_errors(data)
        if errors:
            raise ValidationError(errors)


class GradientsRequestSchema(NetworkProblemSchema):
    learning_rate = positive_number(load_default=None)
    include = BoundedList(
        fields.String(validate=Choice(INCLUDABLE, "array")),
        len(INCLUDABLE),
        "names",
        load_default=lambda: ["a"],
        metadata={
            "description": (
                "per-layer arrays to return besides the parameters' gradients; dx is dL/d(the "
                "layer's input), in the inputs' layout"
            )
        },
    )
    gradient_check = Flag(
        load_default=False,
        metadata={
            "description": (
                "also compare dW and db with central finite differences: per layer, the largest "
                "|analytic - numeric| / max(|analytic|, |numeric|, 1e-8)"
            )
        },
    )

    encoding = fields.String(
        load_default="json",
        validate=Choice(ENCODINGS, "encoding"),
        metadata={
            "enum": list(ENCODINGS),
            "description": "base64: every array of the answer as {dtype, shape, data}",
        },
    )

    @post_load
    def _to_request(self, data, **kwargs) -> GradientsRequest:
        return gradients_request(
            data,
            include=data["include"],
            learning_rate=data["learning_rate"],
            gradient_check=data["gradient_check"],
            encoding=data["encoding"],
        )


def gradients_request(
    data: dict,
    include: Iterable[str] = ("a",),
    learning_rate: float | None = None,
    gradient_check: bool = False,
    encoding: str = "json",
) -> GradientsRequest:
    """The validated fields of a NetworkProblemSchema, as canonical arrays."""
    c = CONVENTIONS[data["convention"]]
    return GradientsRequest(
        problem=Problem(
            inputs=c.data(data["inputs"]),
            targets=_canonical(c, data["targets"]),
            layers=tuple(
                Layer(
                    weights=c.weights(layer["weights"]),
                    biases=None if layer["biases"] is None else layer["biases"].reshape(-1),
                    activation=layer["activation"],
                    kind=layer["type"],
                )
                for layer in data["layers"]
            ),
            loss=data["loss"],
            reduction=data["reduction"],
            l2=data["l2"],
            l2_style=data["l2_style"],
            upstream=_canonical(c, data["upstream"]),
        ),
        convention=c,
        bias_shapes=tuple(
            None if layer["biases"] is None else layer["biases"].shape for layer in data["layers"]
        ),
        include=tuple(dict.fromkeys(include)),
        learning_rate=learning_rate,
        gradient_check=gradient_check,
        encoding=encoding,
    )


def _canonical(c: Convention, array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else c.data(array)


def _shape_errors(data: dict) -> dict:
    """Every cross-field rule, collected so the client sees all of them at once."""
    c: Convention = CONVENTIONS[data["convention"]]
    errors: dict = _objective_errors(data)

    inputs = data["inputs"]
    if inputs.ndim == 1:
        k = inputs.shape[0]
        one_sample = f"[[x1, ..., x{k}]]" if not c.samples_are_columns else "[[x1], ..., [xk]]"
        errors["inputs"] = [
            f"got a 1-D array of shape ({k},), expected 2-D "
            f"{shape_text(c.data_shape('batch', 'n_in'))} in the {c.name!r} convention. "
            f"One sample of {k} features is {one_sample}, shape "
            f"{shape_text(c.data_shape(1, k))}."
        ]
        return errors
    batch, width = c.batch_and_units(inputs.shape)
    source = f"the inputs have {width} features"

    layer_errors: dict = {}
    for i, layer in enumerate(data["layers"]):
        weights, biases = layer["weights"], layer["biases"]
        n_in, n_out = c.fan_in_and_out(weights.shape)
        if n_in != width:
            layer_errors[i] = {"weights": [_chaining_message(c, weights.shape, width, source)]}
            break  # later layers cannot be checked against a broken chain
        problem = None if biases is None else c.bias_problem(biases.shape, n_out, batch)
        if problem:
            layer_errors[i] = {"biases": [problem]}
        width, source = n_out, f"layer {i} has {n_out} units"
    if layer_errors:
        errors["layers"] = layer_errors
        return errors
    if errors:
        return errors
    if data["upstream"] is not None:
        return _upstream_errors(c, data["upstream"], batch, width)

    errors.update(_target_errors(c, data, batch, width))
    errors.update(_loss_errors(data))
    return errors


def _objective_errors(data: dict) -> dict:
    """Exactly one of: targets and a loss, or upstream."""
    sent = [name for name in ("targets", "loss") if data[name] is not None]
    if data["upstream"] is not None and sent:
        return {
            "upstream": [
                f"upstream was sent together with {' and '.join(sent)}: send either targets and "
                "a loss (backpropagation starts from the loss), or upstream alone (it starts "
                f"from dL/d(output) = upstream). Remove {' and '.join(sent)}, or upstream."
            ]
        }
    if data["upstream"] is None and len(sent) < 2:
        missing = [name for name in ("targets", "loss") if name not in sent]
        return {
            name: [
                "missing: send targets and a loss, or instead of both an upstream gradient "
                "dL/d(output) (upstream) shaped like the last layer's output."
            ]
            for name in missing
        }
    return {}


def _upstream_errors(c: Convention, upstream: np.ndarray, batch: int, n_out: int) -> dict:
    expected = c.data_shape(batch, n_out)
    if upstream.shape == expected:
        return {}
    message = (
        f"got shape {shape_text(upstream.shape)}, expected {shape_text(expected)}: upstream is "
        f"dL/d(the last layer's output), shaped like that output in the {c.name!r} convention "
        f"(batch {batch} from the inputs, {n_out} output unit(s) from the last layer)."
    )
    if upstream.shape == expected[::-1]:
        message += " It looks transposed."
    return {"upstream": [message]}


def _chaining_message(c: Convention, shape: tuple, width: int, source: str) -> str:
    expected = shape_text(c.weights_shape(width, "n_out"))
    message = (
        f"got shape {shape_text(shape)}, but {source}, so the weights must be {expected} "
        f"in the {c.name!r} convention (z = {c.formula})."
    )
    rows_first = c.weights_shape(width, 0)[0] == width
    if (shape[1] if rows_first else shape[0]) == width:
        others = [
            name for name, o in CONVENTIONS.items() if o.weights_out_by_in != c.weights_out_by_in
        ]
        message += (
            f' These weights look transposed: transpose them, or set "convention" to '
            f"{' or '.join(repr(o) for o in others)} if that is the layout you use."
        )
    return message


def _target_errors(c: Convention, data: dict, batch: int, n_out: int) -> dict:
    targets = data["targets"]
    expected = c.data_shape(batch, n_out)
    if targets.ndim == 1:
        message = (
            f"got a 1-D array of shape {shape_text(targets.shape)}, expected 2-D "
            f"{shape_text(expected)} (batch {batch}, {n_out} output unit(s))."
        )
        if not c.samples_are_columns:
            message += _broadcast_trap(targets.shape[0], batch, n_out)
        else:
            message += " Send one row per output unit, for example [[y1, y2, ...]] for one output."
        return {"targets": [message]}
    if targets.shape != expected:
        message = (
            f"got shape {shape_text(targets.shape)}, expected {shape_text(expected)}: "
            f"batch {batch} (from the inputs) and {n_out} output unit(s) (from the last layer)."
        )
        if targets.shape == expected[::-1]:
            message += " The targets look transposed."
        return {"targets": [message]}
    return {}


def _broadcast_trap(k: int, batch: int, n_out: int) -> str:
    """What y - a would have done with a flat (k,) target against (batch, n_out) predictions."""
    try:
        result = np.broadcast_shapes((k,), (batch, n_out))
    except ValueError:
        effect = "NumPy would fail to broadcast them"
    else:
        effect = f"NumPy silently makes y - a a {shape_text(result)} matrix"
        if n_out == 1 and k == batch and batch > 1:
            effect += ", every prediction compared with every target"
    return (
        f" This is the (batch,) versus (batch, 1) trap: with a ({k},) target and "
        f"({batch}, {n_out}) predictions, {effect}. Send one row per sample, for example "
        "[[y1], [y2], ...] for one output unit."
    )


def _loss_errors(data: dict) -> dict:
    loss = LOSSES[data["loss"]]
    last = len(data["layers"]) - 1
    activation = ALIASES.get(data["layers"][last]["activation"], data["layers"][last]["activation"])
    if loss.requires_activation and activation != loss.requires_activation:
        return {
            "loss": [
                f"{loss.name} needs a {loss.requires_activation} output layer, but layer {last}'s "
                f"activation is {activation!r}. Set layers.{last}.activation to "
                f"{loss.requires_activation!r}, or choose another loss (mse, half_mse)."
            ]
        }
    c = CONVENTIONS[data["convention"]]
    targets = c.data(data["targets"])
    if loss.name == "bce" and ((targets < 0) | (targets > 1)).any():
        bad = float(targets[(targets < 0) | (targets > 1)][0])
        return {"targets": [f"bce needs targets in [0, 1]; found {bad:g}."]}
    if loss.name == "cross_entropy":
        if (targets < 0).any():
            return {
                "targets": [
                    f"cross_entropy needs probability targets; found the negative value "
                    f"{float(targets[targets < 0][0]):g}."
                ]
            }
        sums = targets.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1.0) > PROBABILITY_TOLERANCE)
        if off.size:
            axis = "column" if c.samples_are_columns else "row"
            return {
                "targets": [
                    f"cross_entropy needs each sample's targets to sum to 1 (one-hot or "
                    f"probabilities); sample {off[0]} ({axis} {off[0]}) sums to "
                    f"{sums[off[0]]:.10g}."
                ]
            }
    return {}


class LayerGradientsSchema(StrictSchema):
    z = Array(ndims=(2,), metadata={"description": "pre-activation, when included"})
    a = Array(ndims=(2,), metadata={"description": "activation (included by default)"})
    dz = Array(ndims=(2,), metadata={"description": "dL/dz, when included"})
    dx = Array(
        ndims=(2,),
        metadata={"description": "dL/d(the layer's input), in the inputs' layout, when included"},
    )
    dW = Array(
        ndims=(2,), required=True, metadata={"description": "in the client's weights layout"}
    )
    db = Array(
        ndims=(1, 2),
        metadata={"description": "in the client's bias shape; absent for a layer without a bias"},
    )


class UpdatedLayerSchema(StrictSchema):
    weights = Array(ndims=(2,), required=True)
    biases = Array(ndims=(1, 2), metadata={"description": "absent for a layer without a bias"})


class LayerCheckSchema(StrictSchema):
    dW = Number(required=True, metadata={"description": "largest relative error over dW"})
    db = Number(
        required=True,
        allow_none=True,
        metadata={"description": "largest relative error over db; null without a bias"},
    )


class GradientCheckSchema(StrictSchema):
    epsilon = Number(required=True, metadata={"description": "the central difference's step"})
    max_relative_error = Number(required=True)
    layers = fields.List(fields.Nested(LayerCheckSchema), required=True)


class GradientsResponseSchema(StrictSchema):
    loss = Number(
        required=True, allow_none=True, metadata={"description": "null when upstream was sent"}
    )
    layers = fields.List(fields.Nested(LayerGradientsSchema), required=True)
    updated_layers = fields.List(fields.Nested(UpdatedLayerSchema))
    gradient_check = fields.Nested(GradientCheckSchema)
