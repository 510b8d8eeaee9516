"""The mistakes found from the reference pass alone, for a field no mistaken pass explains.

Tried after the catalogue (service.core.mistakes), in this order: dW built from the wrong
layer's input, db summed over the units, a square field transposed, every entry the same
constant times the right one; what is left is ``wrong_values``.  Each is recomputed from the
reference pass in the client's layout, never guessed from the numbers alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.core.objective import l2_gradient_factor, loss_scale

from .results import FieldResult, Waiting, diagnosed

#: service.grading.grader.Grader (not imported: it imports this module)
Grader = Any


def param_scale(grader: Grader) -> float:
    """The factor on dW and db beyond dz: the 1/N with dz_scale "per_sample"."""
    problem = grader.request.problem
    return loss_scale(problem) if problem.dz_scale == "per_sample" else 1.0


def l2_term(grader: Grader, layer: int) -> np.ndarray | None:
    """l2's share of dW, in the client's layout (None without l2)."""
    problem = grader.request.problem
    if not problem.l2 or problem.layers[layer].kind != "dense":
        return None
    term = l2_gradient_factor(problem) * problem.layers[layer].weights
    return grader.request.to_client(term, grader.request.layouts[layer]["dW"])


def wrong_input(grader: Grader, layer: int, aligned, expected) -> str | None:
    """wrong_layer_input: dW = x.T @ dz with x another layer's activations (or the
    inputs) than this layer's own input; recomputed for each x of the right width."""
    problem = grader.request.problem
    if problem.layers[layer].kind != "dense":
        return None
    dz = grader.reference.layers[layer].dz
    n_in = problem.layers[layer].weights.shape[0]
    candidates = [("the inputs", problem.inputs)] if layer > 0 else []
    candidates += [
        (f"layer {j}'s activation", out) for j, out in enumerate(grader.fwd.outs) if j != layer - 1
    ]
    l2 = l2_term(grader, layer)
    for which, x in candidates:
        if x.ndim != 2 or x.shape[1] != n_in:  # an image is no dense layer's input
            continue
        wrong = grader.request.to_client(
            param_scale(grader) * (x.T @ dz), grader.request.layouts[layer]["dW"]
        )
        if l2 is not None:
            wrong = wrong + l2
        if not grader.tolerance.close(wrong, expected) and grader.tolerance.close(aligned, wrong):
            return which
    return None


def summed_over_units(grader: Grader, layer: int, submitted, expected) -> bool:
    """summed_over_wrong_axis: db = np.sum(dz, axis=<the units>), one value a sample."""
    batch = grader.request.problem.inputs.shape[0]
    if submitted.size != batch or submitted.ndim > 2 or max(submitted.shape) != batch:
        return False
    dz = grader.value(grader.reference, layer, "dz")
    wrong = param_scale(grader) * dz.sum(axis=0 if grader.c.samples_are_columns else 1)
    if submitted.shape == expected.shape and grader.tolerance.close(
        wrong.reshape(expected.shape), expected
    ):
        return False
    return grader.tolerance.close(submitted.reshape(-1), wrong)


def scale_of(grader: Grader, layer: int, name: str, aligned, expected) -> float | None:
    """scaled_by_constant: the k for which the submission is k times the right values
    (l2's share of dW left out: a constant on the output's gradient does not scale it),
    or None.  Only a k a student plausibly multiplied by counts (a whole number or its
    inverse: a lost 2, a 1/N twice); 1.1 times the right values stays unexplained, and a
    field of one number, some multiple of anything, is not over-explained."""
    if name not in ("dz", "dx", "dW", "db", "dgamma", "dbeta"):
        return None
    l2 = l2_term(grader, layer) if name == "dW" else None
    got, want = (aligned, expected) if l2 is None else (aligned - l2, expected - l2)
    want = np.asarray(want, dtype=np.float64).ravel()
    got = np.asarray(got, dtype=np.float64).ravel()
    norm = float(want @ want)
    if norm == 0.0 or not np.isfinite(norm):
        return None
    k = float(got @ want) / norm
    if not np.isfinite(k) or k == 0.0 or np.isclose(k, 1.0, rtol=grader.tolerance.rtol):
        return None
    if not recognisable(k):
        return None
    return k if grader.tolerance.close(got, k * want) else None


def field_from_reference(grader: Grader, w: Waiting) -> FieldResult:
    """The field's diagnosis when no mistaken pass explains it."""
    result, layer, name, aligned, expected = w.result, w.layer, w.name, w.submitted, w.expected
    path = result.field
    if name == "dW":
        which = wrong_input(grader, layer, aligned, expected)
        if which is not None:
            message = grader.say.wrong_input(path, layer, which)
            return diagnosed(result, "wrong_layer_input", message)
    if name == "db" and summed_over_units(grader, layer, aligned, expected):
        message = grader.say.wrong_axis(path, expected.shape)
        return diagnosed(result, "summed_over_wrong_axis", message)
    square = aligned.ndim == 2 and aligned.shape == aligned.T.shape
    if square and grader.tolerance.close(aligned.T, expected):
        message = grader.say.transposed(path, layer, name, expected.shape)
        return diagnosed(result, "transposed", message)
    k = scale_of(grader, layer, name, aligned, expected)
    if k is not None:
        message = grader.say.scaled(path, k, layer, name, expected.shape)
        return diagnosed(result, "scaled_by_constant", message)
    message = grader.say.wrong_values(path, layer, name, expected.shape)
    return diagnosed(result, "wrong_values", message)


def loss_from_reference(grader: Grader, result: FieldResult, submitted, expected) -> FieldResult:
    """The loss's diagnosis when no mistaken pass explains it."""
    k = submitted / expected if expected else None
    if k is not None and recognisable(k) and grader.tolerance.close(submitted, k * expected):
        message = grader.say.scaled("loss", k, None, "loss", ())
        return diagnosed(result, "scaled_by_constant", message)
    return diagnosed(result, "wrong_values", grader.say.wrong_loss(submitted, expected))


def recognisable(k: float) -> bool:
    """A constant a student plausibly multiplied by: a whole number, its inverse, or 0.5."""
    for value in (abs(k), 1 / abs(k)):
        if 2 <= round(value) <= 1_000_000 and np.isclose(value, round(value), rtol=1e-9):
            return True
    return False
