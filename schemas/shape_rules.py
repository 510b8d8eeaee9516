"""The cross-field shape rules of a network problem, each with a message a student can act on.

Every rule names the field path, what was sent, what this convention expects
and why; they are collected so the client sees all of them at once.
"""

from __future__ import annotations

import numpy as np

from service.core import ALIASES, LOSSES

from .conventions import Convention, convention_of
from .fields import shape_text
from .layers import LAYER_TYPES

#: probability targets for cross_entropy must sum to 1 within this
PROBABILITY_TOLERANCE = 1e-6


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
        if (kind.takes == "image") != (len(sample) == 3):
            layer_errors[i] = {"type": [data_kind_problem(c, i, layer["type"], kind.takes, sample)]}
            break
        width = sample[0] if kind.takes == "flat" else sample
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

    errors.update(_loss_errors(data))
    if labels_sent(c, data["targets"], data["loss"], width):
        errors.update(_label_errors(c, data, batch, width))
    else:
        errors.update(_target_errors(c, data, batch, width) or _target_value_errors(c, data))
    return errors


def labels_sent(c: Convention, targets: np.ndarray, loss: str, n_out: int) -> bool:
    """Whether the targets are class labels: a loss that takes them, and shape (batch,),
    or (1, batch) in columns when the last layer has more than one unit (one row of labels
    where dense targets would have one row per unit)."""
    if not LOSSES[loss].takes_labels:
        return False
    if targets.ndim == 1:
        return True
    return c.samples_are_columns and targets.shape[0] == 1 and n_out > 1


def _label_errors(c: Convention, data: dict, batch: int, n_out: int) -> dict:
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


def _loss_errors(data: dict) -> dict:
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


def _target_value_errors(c: Convention, data: dict) -> dict:
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
