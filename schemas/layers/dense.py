"""The dense layer at the boundary: weights in the convention's layout, an optional bias."""

from __future__ import annotations

from service.core import Layer, dense_layer

from ..base import StrictSchema
from ..conventions import CONVENTIONS, Convention
from ..fields import Array, one_of, shape_text
from .base import ACTIVATION_NAMES, WEIGHTS, Chained, LayerType


class DenseLayerSchema(StrictSchema):
    type = one_of(
        ("dense",), "layer type", metadata={"description": "dense (the default when absent)"}
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


def chain(layer: dict, c: Convention, batch: int, width: int, source: str) -> Chained:
    weights, biases = layer["weights"], layer["biases"]
    n_in, n_out = c.fan_in_and_out(weights.shape)
    if n_in != width:
        return Chained({"weights": [chaining_message(c, weights.shape, width, source)]}, None)
    problem = None if biases is None else c.bias_problem(biases.shape, n_out, batch)
    return Chained({"biases": [problem]} if problem else {}, n_out)


def chaining_message(c: Convention, shape: tuple, width: int, source: str) -> str:
    """The weights do not take the width of the layer below: what they must be, and why."""
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


def to_core(layer: dict, c: Convention, width: int) -> Layer:
    biases = layer["biases"]
    return dense_layer(
        c.weights(layer["weights"]),
        None if biases is None else biases.reshape(-1),
        layer["activation"],
    )


def layouts(layer: dict) -> dict:
    biases = layer["biases"]
    return {"dW": WEIGHTS} | ({} if biases is None else {"db": biases.shape})


DENSE = LayerType(
    name="dense",
    schema=DenseLayerSchema,
    chain=chain,
    to_core=to_core,
    layouts=layouts,
    default_activation=None,
)
