"""The cross-field shape rules of a network problem, each with a message a student can act on.

Every rule names the field path, what was sent, what this convention expects
and why; they are collected so the client sees all of them at once.
"""

from __future__ import annotations

import numpy as np

from service.core import ALIASES, LOSSES

from .conventions import CONVENTIONS, Convention
from .fields import shape_text
from .layers import LAYER_TYPES

#: probability targets for cross_entropy must sum to 1 within this
PROBABILITY_TOLERANCE = 1e-6


def shape_errors(data: dict) -> dict:
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
        chained = LAYER_TYPES[layer["type"]].chain(layer, c, batch, width, source)
        if chained.errors:
            layer_errors[i] = chained.errors
        if chained.n_out is None:
            break  # later layers cannot be checked against a broken chain
        width, source = chained.n_out, f"layer {i} has {chained.n_out} units"
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
