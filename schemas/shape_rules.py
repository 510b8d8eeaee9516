"""The cross-field shape rules of a network problem, each with a message a student can act on.

Every rule names the field path, what was sent, what this convention expects
and why; they are collected so the client sees all of them at once.
"""

from __future__ import annotations

import numpy as np

from .conventions import Convention, convention_of
from .fields import shape_text
from .layers import LAYER_TYPES
from .target_rules import (
    label_errors,
    labels_sent,
    loss_errors,
    target_errors,
    target_value_errors,
)


def shape_errors(data: dict) -> dict:
    """Every cross-field rule, collected so the client sees all of them at once."""
    c: Convention = convention_of(data)
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
    batch, sample = c.batch_and_sample(inputs.shape)
    source = f"the inputs have {sample[0]} features" if len(sample) == 1 else image_source(sample)

    layer_errors: dict = {}
    for i, layer in enumerate(data["layers"]):
        kind = LAYER_TYPES[layer["type"]]
        if kind.takes != "any" and (kind.takes == "image") != (len(sample) == 3):
            layer_errors[i] = {"type": [data_kind_problem(c, i, layer["type"], kind.takes, sample)]}
            break
        width = sample if len(sample) == 3 else sample[0]
        chained = kind.chain(layer, c, batch, width, source)
        if chained.errors:
            layer_errors[i] = chained.errors
        if chained.n_out is None:
            break  # later layers cannot be checked against a broken chain
        if isinstance(chained.n_out, int) and len(sample) == 3:
            source = (
                f"layer {i} flattens {sample[0]} channel(s) of {sample[1]}x{sample[2]} into "
                f"{chained.n_out} units (in {c.layout} order)"
            )
            sample = (chained.n_out,)
        elif isinstance(chained.n_out, int):
            sample, source = (chained.n_out,), f"layer {i} has {chained.n_out} units"
        else:
            sample, source = chained.n_out, image_source(chained.n_out, f"layer {i}'s output")
    if layer_errors:
        errors["layers"] = layer_errors
        return errors
    if errors:
        return errors
    if data["upstream"] is not None:
        return _upstream_errors(c, data["upstream"], batch, sample)
    if len(sample) == 3:
        return {"loss": [image_loss_problem(c, len(data["layers"]) - 1, batch, sample)]}
    width = sample[0]

    errors.update(loss_errors(data))
    if labels_sent(c, data["targets"], data["loss"], width):
        errors.update(label_errors(c, data, batch, width))
    else:
        errors.update(target_errors(c, data, batch, width) or target_value_errors(c, data))
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


def image_source(sample: tuple, what: str = "the inputs") -> str:
    """Where an image layer's input comes from, in words, for its messages."""
    channels, height, width = sample
    return f"{what} are {channels} channel(s) of {height}x{width}"


def data_kind_problem(c: Convention, i: int, kind: str, takes: str, sample: tuple) -> str:
    """A layer sent data of the other kind: a flat layer images, or an image layer rows."""
    what = "the inputs" if i == 0 else f"layer {i - 1}'s output"
    if takes == "flat":
        return (
            f"layer {i} is a {kind} layer, which takes 2-D data (batch, n), but {what} is 4-D "
            f"images, {shape_text(c.image_shape('batch', sample))} in the {c.layout} layout. "
            f'Put a {{"type": "flatten"}} layer before it (x.reshape(N, -1)), or send 2-D inputs.'
        )
    return (
        f"layer {i} is a {kind} layer, which takes 4-D images, "
        f"{shape_text(c.image_shape('batch', ('C', 'H', 'W')))} in the {c.layout} layout "
        f'("layout"), but {what} is 2-D with {sample[0]} features per sample. Send the inputs '
        f"as 4-D images, or move the {kind} layer before the flatten."
    )


def image_loss_problem(c: Convention, last: int, batch: int, sample: tuple) -> str:
    return (
        f"a loss takes 2-D scores (batch, classes), but layer {last}'s output is 4-D images, "
        f"{shape_text(c.image_shape(batch, sample))} in the {c.layout} layout. End the network "
        'with {"type": "flatten"} and a dense layer, or send upstream (dL/d(that output)) '
        "instead of targets and a loss."
    )


def _upstream_errors(c: Convention, upstream: np.ndarray, batch: int, sample: tuple) -> dict:
    expected = c.sample_shape(batch, sample)
    if upstream.shape == expected:
        return {}
    if len(sample) == 3:
        return {
            "upstream": [
                f"got shape {shape_text(upstream.shape)}, expected {shape_text(expected)}: "
                f"upstream is dL/d(the last layer's output), shaped like that output in the "
                f"{c.layout} layout (batch {batch} from the inputs, {image_source(sample, 'it')})."
            ]
        }
    n_out = sample[0]
    message = (
        f"got shape {shape_text(upstream.shape)}, expected {shape_text(expected)}: upstream is "
        f"dL/d(the last layer's output), shaped like that output in the {c.name!r} convention "
        f"(batch {batch} from the inputs, {n_out} output unit(s) from the last layer)."
    )
    if upstream.shape == expected[::-1]:
        message += " It looks transposed."
    return {"upstream": [message]}
