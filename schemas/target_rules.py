"""The rules of the targets and the loss: their shape against the last layer's output, class
labels, and the values each loss takes, each with a message a student can act on."""

from __future__ import annotations

import numpy as np

from service.core import ALIASES, LOSSES

from .conventions import Convention
from .fields import shape_text

#: probability targets for cross_entropy must sum to 1 within this
PROBABILITY_TOLERANCE = 1e-6


def labels_sent(c: Convention, targets: np.ndarray, loss: str, n_out: int) -> bool:
    """Whether the targets are class labels: a loss that takes them, and shape (batch,),
    or (1, batch) in columns when the last layer has more than one unit (one row of labels
    where dense targets would have one row per unit)."""
    if not LOSSES[loss].takes_labels:
        return False
    if targets.ndim == 1:
        return True
    return c.samples_are_columns and targets.shape[0] == 1 and n_out > 1


def label_errors(c: Convention, data: dict, batch: int, n_out: int) -> dict:
    """Class labels: one per sample, each a whole number in [0, classes)."""
    targets, loss = data["targets"], data["loss"]
    last = len(data["layers"]) - 1
    labels = targets.reshape(-1)
    if labels.size != batch:
        return {
            "targets": [
                f"got {labels.size} class label(s) (shape {shape_text(targets.shape)}), expected "
                f"{batch}: one per sample (batch {batch} from the inputs)."
            ]
        }
    bad = np.flatnonzero((labels != np.floor(labels)) | (labels < 0) | (labels >= n_out))
    if not bad.size:
        return {}
    i = int(bad[0])
    where = f"targets[{i}]" if targets.ndim == 1 else f"targets[0][{i}]"
    value = float(labels[i])
    what = "not a whole number" if value != np.floor(value) else "out of range"
    return {
        "targets": [
            f"{where} is {value:g}, {what}: class labels for {loss} are whole numbers "
            f"0..{n_out - 1}, one per sample (layer {last} has {n_out} unit(s), one per class). "
            f"Send each sample's class index (for example [{min(2, n_out - 1)}, 0, ...]), or "
            f"one-hot targets of shape {shape_text(c.data_shape(batch, n_out))}."
        ]
    }


def target_errors(c: Convention, data: dict, batch: int, n_out: int) -> dict:
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
        return {"targets": [message + LABEL_LOSSES_NOTE]}
    if targets.shape != expected:
        message = (
            f"got shape {shape_text(targets.shape)}, expected {shape_text(expected)}: "
            f"batch {batch} (from the inputs) and {n_out} output unit(s) (from the last layer)."
        )
        if targets.shape == expected[::-1]:
            message += " The targets look transposed."
        if LOSSES[data["loss"]].takes_labels and n_out > 1 and batch in targets.shape:
            message += f" Class labels are sent flat: shape ({batch},), one index per sample."
        return {"targets": [message]}
    return {}


LABEL_LOSSES_NOTE = (
    " Class labels of shape (batch,) are accepted only by "
    + " and ".join(name for name, loss in LOSSES.items() if loss.takes_labels)
    + "."
)


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


def loss_errors(data: dict) -> dict:
    """The output activation the loss needs."""
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
    return {}


def target_value_errors(c: Convention, data: dict) -> dict:
    """Dense targets of the right shape whose values the loss cannot take."""
    loss = data["loss"]
    targets = c.data(data["targets"])
    axis = "column" if c.samples_are_columns else "row"
    if loss == "bce" and ((targets < 0) | (targets > 1)).any():
        bad = float(targets[(targets < 0) | (targets > 1)][0])
        return {"targets": [f"bce needs targets in [0, 1]; found {bad:g}."]}
    if loss == "cross_entropy":
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
            return {
                "targets": [
                    f"cross_entropy needs each sample's targets to sum to 1 (one-hot or "
                    f"probabilities); sample {off[0]} ({axis} {off[0]}) sums to "
                    f"{sums[off[0]]:.10g}."
                ]
            }
    if loss == "svm":
        return _one_hot_errors(targets, axis)
    if loss == "hinge":
        return _plus_minus_one_errors(data["targets"])
    return {}


def _one_hot_errors(targets: np.ndarray, axis: str) -> dict:
    """svm's dense targets: exactly one 1 per sample, 0 elsewhere."""
    binary = (targets == 0) | (targets == 1)
    ones = np.count_nonzero(targets == 1, axis=1)
    bad = np.flatnonzero(~binary.all(axis=1) | (ones != 1))
    if not bad.size:
        return {}
    i = int(bad[0])
    if not binary[i].all():
        j = int(np.flatnonzero(~binary[i])[0])
        found = f"it holds {float(targets[i, j]):g} at unit {j}"
    else:
        found = f"it has {int(ones[i])} ones"
    batch, classes = targets.shape
    return {
        "targets": [
            f"svm takes class labels or one-hot targets, but sample {i} ({axis} {i}) is not "
            f"one-hot: {found}. Each sample needs exactly one 1 (its class) and 0 elsewhere; or "
            f"send class labels, shape ({batch},), whole numbers 0..{classes - 1}."
        ]
    }


def _plus_minus_one_errors(targets: np.ndarray) -> dict:
    """hinge's targets: -1 or +1, named by their index in the client's layout."""
    bad = np.argwhere((targets != 1) & (targets != -1))
    if not bad.size:
        return {}
    index = tuple(int(k) for k in bad[0])
    where = "targets" + "".join(f"[{k}]" for k in index)
    return {
        "targets": [
            f"{where} is {float(targets[index]):g}: hinge needs every target to be -1 or +1 "
            "(the sign of the class). For 0/1 targets y send 2 * y - 1, or use the bce loss."
        ]
    }
