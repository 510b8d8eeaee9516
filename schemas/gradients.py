"""POST /v1/gradients: the request, its shape rules, and the response.

The request schema parses once, checks every cross-field shape rule with a
message a student can act on, and loads into a ``GradientsRequest`` that
holds the canonical ``core.Problem`` and what is needed to answer in the
client's own shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from service.core import (
    LOSSES,
    REDUCTIONS,
    Gradients,
    Layer,
    LayerResult,
    Problem,
)
from service.core.gradient_check import GradientCheck
from service.core.layers import KINDS
from service.core.problem import DZ_SCALES, L2_STYLES

from .base import StrictSchema
from .conventions import CONVENTIONS, LAYOUTS, Convention, convention_of
from .fields import (
    MAX_LAYERS,
    Array,
    BoundedList,
    Choice,
    Flag,
    Number,
    one_of,
    positive_number,
)
from .layers import DATA, FILTERS, LAYER_TYPES, WEIGHTS, LayerField, Layout
from .shape_rules import shape_errors
from .target_rules import labels_sent

INCLUDABLE = ("z", "a", "dz", "dx")
DZ_SCALE_TEXT = (
    "where the 'mean' reduction's 1/N goes. reduced (PyTorch, CS231n): inside dL/da, so every "
    "dz and dx holds it and dW = a_prev.T @ dz. per_sample (Andrew Ng's course: dZ2 = A2 - Y, "
    "dW = 1/m * dZ @ A_prev.T, db = 1/m * np.sum(dZ)): dz and dx without it, dW and db with it. "
    "The same with 'sum' or upstream, where there is no 1/N."
)
ENCODINGS = ("json", "base64")


@dataclass(frozen=True)
class GradientsRequest:
    """A validated request: the canonical problem and how to answer in the client's shapes."""

    problem: Problem
    convention: Convention
    #: per layer: each of its answer's arrays (dW, db, dgamma, running_mean, mask, ...) -> the
    #: layout it goes back in (schemas.layers: the weights', the data's, or the shape sent)
    layouts: tuple[Mapping[str, Layout], ...]
    include: tuple[str, ...]
    learning_rate: float | None
    gradient_check: bool = False
    #: "base64": every array of the answer in the binary form (written by service.http.json)
    encoding: str = "json"

    def client_array(self, out: LayerResult, layer: int, name: str) -> np.ndarray:
        """One of a layer's results (z, a, dz, dx, a gradient, a state) in the client's shapes."""
        if name in INCLUDABLE:
            return self.convention.data(getattr(out, name), back=True)
        value = out.grads[name] if name in out.grads else out.state[name]
        return self.to_client(value, self.layouts[layer][name])

    def to_client(self, value: np.ndarray, layout: Layout) -> np.ndarray:
        if layout == WEIGHTS:
            return self.convention.weights(value)
        if layout == DATA:
            return self.convention.data(value, back=True)
        if layout == FILTERS:
            return self.convention.filters(value, back=True)
        return value.reshape(layout)

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
                {
                    name: self.client_array(out, i, name)
                    for name in (*self.include, *out.grads, *out.state)
                }
                for i, out in enumerate(result.layers)
            ],
        }
        if updated is not None:
            answer["updated_layers"] = [
                {
                    name: self.to_client(value, self.layouts[i][KINDS[layer.kind].gradients[name]])
                    for name, value in layer.params.items()
                }
                for i, layer in enumerate(updated)
            ]
        if check is not None:
            answer["gradient_check"] = {
                "epsilon": check.epsilon,
                "max_relative_error": check.max_relative_error,
                # a dense layer without a bias has always answered "db": null here
                "layers": [
                    ({"db": None} if layer.kind == "dense" else {}) | errors
                    for layer, errors in zip(self.problem.layers, check.layers)
                ],
            }
        return answer


class NetworkProblemSchema(StrictSchema):
    """The problem every endpoint shares: data, layers, loss, and their shape rules."""

    inputs = Array(
        ndims=(1, 2, 4),  # 1-D is parsed only to be refused with the shape rules' advice
        documented_ndims=(2, 4),
        required=True,
        metadata={
            "description": (
                "(batch, n_in) in numpy and torch; (n_in, batch) in columns. Images: 4-D, "
                "(batch, C, H, W) in the NCHW layout, (batch, H, W, C) in NHWC."
            )
        },
    )
    targets = Array(
        ndims=(1, 2),  # 1-D: class labels, or refused with the shape rules' advice
        load_default=None,
        metadata={
            "description": (
                "(batch, n_out) in numpy and torch; (n_out, batch) in columns. With "
                "cross_entropy or svm, also class labels: (batch,) whole numbers in "
                "0..n_out-1 in every convention ((1, batch) too in columns). hinge: -1 or +1. "
                "Required with loss; leave both out when sending upstream."
            )
        },
    )
    upstream = Array(
        ndims=(1, 2, 4),  # 1-D is parsed only to be refused with the shape rules' advice
        documented_ndims=(2, 4),
        load_default=None,
        metadata={
            "description": (
                "instead of targets and loss: dL/d(the last layer's output after its "
                "activation), shaped like that output ((batch, n_out) in numpy and torch; "
                "(n_out, batch) in columns; 4-D after an image layer, in the layout), as "
                "CS231n's dout. The answer's loss is then null."
            )
        },
    )
    layers = BoundedList(
        LayerField(
            metadata={"description": "one layer; its type (absent: dense) says which fields"}
        ),
        MAX_LAYERS,
        "layers",
        required=True,
        validate=validate.Length(min=1, error="at least one layer is needed."),
    )
    loss = one_of(LOSSES, "loss", load_default=None)
    reduction = one_of(REDUCTIONS, "reduction", load_default="mean")
    convention = one_of(CONVENTIONS, "convention", load_default="numpy")
    layout = one_of(
        LAYOUTS,
        "layout",
        load_default="NCHW",
        metadata={
            "description": (
                "how 4-D data (inputs, upstream, z, a, dz, dx) and convolution weights are laid "
                "out: NCHW (CS231n, PyTorch; weights (F, C, HH, WW)) or NHWC (Andrew Ng's course "
                "4, TensorFlow; weights (HH, WW, C, F)). 2-D data ignores it."
            )
        },
    )
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

    dz_scale = one_of(
        DZ_SCALES,
        "dz_scale",
        load_default="reduced",
        metadata={"description": DZ_SCALE_TEXT},
    )

    @validates_schema(skip_on_field_errors=True)
    def _check_shapes(self, data, **kwargs):
        errors = shape_errors(data)
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
    c = convention_of(data)
    layers, sample = [], c.batch_and_sample(data["inputs"].shape)[1]
    for layer in data["layers"]:
        kind = LAYER_TYPES[layer["type"]]
        core_layer = kind.to_core(layer, c, sample if len(sample) == 3 else sample[0])
        layers.append(core_layer)
        sample = core_layer.sample_out(sample)
    width = sample[0]
    targets = data["targets"]
    if targets is not None and labels_sent(c, targets, data["loss"], width):
        targets = targets.reshape(-1).astype(np.int64)  # class labels: (batch,) in the core
    else:
        targets = _canonical(c, targets)
    return GradientsRequest(
        problem=Problem(
            inputs=c.data(data["inputs"]),
            targets=targets,
            layers=tuple(layers),
            loss=data["loss"],
            reduction=data["reduction"],
            l2=data["l2"],
            l2_style=data["l2_style"],
            upstream=_canonical(c, data["upstream"]),
            dz_scale=data.get("dz_scale", "reduced"),
        ),
        convention=c,
        layouts=tuple(LAYER_TYPES[layer["type"]].layouts(layer) for layer in data["layers"]),
        include=tuple(dict.fromkeys(include)),
        learning_rate=learning_rate,
        gradient_check=gradient_check,
        encoding=encoding,
    )


def _canonical(c: Convention, array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else c.data(array)
