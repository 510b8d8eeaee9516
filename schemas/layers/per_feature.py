"""What the norm layers share at the boundary: vectors with one value per feature (or channel).

gamma, beta and batchnorm's running statistics hold one number per feature of the layer's
input, and multiply or shift x_hat, whose features lie along the units axis: so they take
a bias's shapes in each convention ((n,) or (1, n) in numpy and torch, (n, 1) in columns),
for the same reason (broadcast along the batch axis and nowhere else).  The messages say
what was sent, what this convention expects and why, naming the field.

On images (spatial batchnorm, groupnorm) the same vectors hold one value per channel, and
the rule is the same: (C,), or the shape that broadcasts against the images along their
channel axis and nowhere else, (1, C, 1, 1) in NCHW (CS231n's groupnorm gamma) and
(1, 1, 1, C) in NHWC.  A (1, C, 1, 1) vector under NHWC images is refused: NumPy would
broadcast it along their height.
"""

from __future__ import annotations

import numpy as np

from ..base import StrictSchema
from ..conventions import Convention
from ..fields import Array, one_of, positive_number, shape_text
from .base import ACTIVATION_NAMES

#: what each vector holds, per feature, in the messages
ROLES = {
    "gamma": "scale",
    "beta": "shift",
    "running_mean": "running mean",
    "running_var": "running variance",
}
SHAPES = "(n,) or (1, n) in numpy and torch; (n, 1) in columns, n the layer's input width"
#: the same vectors on images, one value per channel
CHANNEL_SHAPES = "(C,), or (1, C, 1, 1) in the NCHW layout and (1, 1, 1, C) in NHWC"


def vector_field(
    name: str,
    required: bool = False,
    extra: str = "",
    shapes: str = SHAPES,
    ndims=(1, 2),
    per: str = "feature",
) -> Array:
    """gamma, beta or a running statistic, documented with its shapes."""
    description = f"one {ROLES[name]} per {per}: {shapes}.{extra}"
    if required:
        return Array(ndims=ndims, required=True, metadata={"description": description})
    return Array(
        ndims=ndims, allow_none=True, load_default=None, metadata={"description": description}
    )


class NormLayerSchema(StrictSchema):
    """The fields both norms take; each type adds its own ``type`` (and batchnorm its mode)."""

    gamma = vector_field("gamma", required=True, extra=" The answer's dgamma has its shape.")
    beta = vector_field("beta", required=True, extra=" The answer's dbeta has its shape.")
    eps = positive_number(
        load_default=1e-5,
        metadata={"description": "added to the variance under the square root (default 1e-5)"},
    )
    activation = one_of(
        ACTIVATION_NAMES,
        "activation",
        load_default=None,
        metadata={"description": "applied to the normalised output (default identity)"},
    )


def vector_problem(
    c: Convention, name: str, shape: tuple, n: int, batch: int, source: str
) -> str | None:
    """None for a legal shape of the per-feature vector ``name``, else what is wrong and why."""
    legal = c.bias_shapes(n)
    if shape in legal:
        return None
    expected = " or ".join(shape_text(s) for s in legal)
    got = f"got shape {shape_text(shape)}, expected {expected}"
    why = f"{name} holds one {ROLES[name]} per feature of the layer's input: {source}"
    fix = (
        f"send it as a column [[v1], [v2], ...] of shape {shape_text((n, 1))}"
        if c.samples_are_columns
        else f"send it as a flat list [v1, ..., v{n}] of shape ({n},) "
        f"or as one row [[v1, ..., v{n}]] of shape (1, {n})"
    )
    if len(shape) == 4:
        return (
            f"{got}: a 4-D {name} is for images (one {ROLES[name]} per channel), but the "
            f"layer's input is 2-D ({source}), so {name} holds one {ROLES[name]} per feature; "
            f"{fix}."
        )
    count = int(np.prod(shape))
    if len(shape) == 2 and 1 not in shape:
        return f"{got}: {why}, so it is a vector of {n} values, not a matrix; {fix}."
    if count != n:
        return f"{got}: {why}, so {name} needs {n} value(s), but {count} were sent; {fix}."
    if n == 1:
        return (
            f"{got}: the {c.name!r} convention writes every per-feature vector that way, even "
            f"for a single feature; {fix}."
        )
    x_shape = c.data_shape(batch, n)
    units_axis = 0 if c.samples_are_columns else 1
    return (
        f"{got} in the {c.name!r} convention, where the layer's input is {shape_text(x_shape)}, "
        f"its {n} features along axis {units_axis} ({source}): {name} holds one {ROLES[name]} "
        f"per feature, and a {shape_text(shape)} {name} lines up with the batch axis instead. "
        f"{_what_numpy_does(name, shape, x_shape)} Fix: {fix}."
    )


def _what_numpy_does(name: str, shape: tuple, x_shape: tuple) -> str:
    """What NumPy makes of a per-feature vector laid along the batch axis, against x_hat."""
    try:
        result = np.broadcast_shapes(x_shape, shape)
    except ValueError:
        return (
            f"NumPy would fail with 'operands could not be broadcast together with shapes "
            f"{shape_text(x_shape)} {shape_text(shape)}'."
        )
    if result != x_shape:
        return f"NumPy would silently broadcast x_hat to shape {shape_text(result)}."
    return (
        f"NumPy would silently apply one {name} value per sample instead of per feature, "
        "a wrong answer with no error."
    )


def vector_errors(
    layer: dict, names: tuple[str, ...], c: Convention, batch: int, width: int, source: str
) -> dict:
    """Shape errors of the per-feature vectors among ``names`` that were sent, by field."""
    errors = {}
    for name in names:
        value = layer.get(name)
        problem = (
            None if value is None else vector_problem(c, name, value.shape, width, batch, source)
        )
        if problem:
            errors[name] = [problem]
    return errors


def channel_shapes(c: Convention, channels: int) -> list[tuple]:
    """A per-channel vector's legal shapes: (C,), and the one broadcasting along the channels."""
    return [(channels,), (1, 1, 1, channels) if c.channels_last else (1, channels, 1, 1)]


def channel_problem(
    c: Convention, name: str, shape: tuple, channels: int, source: str
) -> str | None:
    """None for a legal shape of the per-channel vector ``name``, else what is wrong and why."""
    legal = channel_shapes(c, channels)
    if shape in legal:
        return None
    expected = " or ".join(shape_text(s) for s in legal)
    got = f"got shape {shape_text(shape)}, expected {expected}"
    fix = (
        f"send {channels} value(s) as a flat list of shape ({channels},), or shaped "
        f"{shape_text(legal[1])} to broadcast along the {c.layout} channel axis"
    )
    count = int(np.prod(shape))
    why = f"{name} holds one {ROLES[name]} per channel of the layer's input ({source})"
    if count != channels:
        return f"{got}: {why}, so it needs {channels} value(s), but {count} were sent; {fix}."
    other = (1, channels, 1, 1) if c.channels_last else (1, 1, 1, channels)
    other_layout = "NCHW" if c.channels_last else "NHWC"
    if shape == other and channels > 1:
        return (
            f"{got}: {why}. {shape_text(shape)} is the {other_layout} layout's shape: in "
            f"{c.layout} the channels are axis {3 if c.channels_last else 1}, and NumPy would "
            f'broadcast it along another axis. Fix: {fix}, or set "layout" to "{other_layout}" '
            f"(and send the inputs in it)."
        )
    return f"{got}: {why}; {fix}."


def channel_errors(
    layer: dict, names: tuple[str, ...], c: Convention, channels: int, source: str
) -> dict:
    """Shape errors of the per-channel vectors among ``names`` that were sent, by field."""
    errors = {}
    for name in names:
        value = layer.get(name)
        problem = None if value is None else channel_problem(c, name, value.shape, channels, source)
        if problem:
            errors[name] = [problem]
    return errors
