"""Mistakes inside an inverted-dropout layer, as students write CS231n's dropout_backward or
Ng's backward_propagation_with_dropout (issue 13, item 4).

In the order the grader tries them:

- ``mask_not_applied_in_backward``: dx without the mask.  Two forms, one code:
  ``dx = dout / keep_prob`` (the scale kept, the mask forgotten), then ``dx = dout`` (the
  layer passed through, as in eval mode).  Backward only.
- ``dropout_not_rescaled``: the 1 / keep_prob forgotten.  Two forms, one code:
  ``dx = dout * mask`` under the right forward, then the whole layer without it
  (``out = x * mask`` too: "vanilla" dropout, whose z and everything after it differ).

Each form is linear in dL/da.  A layer with keep_prob 1 has none of them (nothing differs).
The words quote NumPy over the student's names ``a_prev``, ``dz`` (CS231n's dout) and
``mask`` (the 0/1 mask, D1 in Ng's course), keep_prob written out.
"""

from __future__ import annotations

from dataclasses import replace

from ..layers.base import Kind
from ..problem import Layer, Problem
from . import KindMistake


def _drops(layer: Layer) -> bool:
    return layer.settings["keep_prob"] < 1


# -- the students' kinds ------------------------------------------------------------------------


def _unmasked(divide: bool):
    def student(right: Kind, layer: Layer) -> Kind:
        keep_prob = layer.settings["keep_prob"]

        def backward(dout, cache, need_dx=True):
            if not need_dx:
                return None, {}
            return (dout / keep_prob if divide else dout.copy()), {}

        return replace(right, backward=backward)

    student.__name__ = "mask_over_keep_prob_forgotten" if divide else "layer_passed_through"
    return student


def unscaled_backward(right: Kind, layer: Layer) -> Kind:
    """dx = dout * mask under the right (inverted) forward."""

    def backward(dout, cache, need_dx=True):
        scaled, _ = cache
        return (dout * (scaled != 0) if need_dx else None), {}

    return replace(right, backward=backward)


def unscaled_throughout(right: Kind, layer: Layer) -> Kind:
    """out = x * mask and dx = dout * mask: dropout without the inversion."""

    def forward(x, params, settings):
        _, (scaled, drawn) = right.forward(x, params, settings)
        mask = (scaled != 0).astype(x.dtype)
        return x * mask, (mask, drawn)

    return replace(right, forward=forward)


# -- their words ---------------------------------------------------------------------------------


def dropout_dx(problem: Problem, k: int) -> str:
    return f"dx = dz * mask / {problem.layers[k].settings['keep_prob']!r}"


def explain_mask_not_applied(problem: Problem, k: int, f) -> tuple[str, str]:
    p = problem.layers[k].settings["keep_prob"]
    return (
        f"dx was not multiplied by the dropout mask (`dx = dz / {p!r}` or `dx = dz`): the "
        "units the forward dropped played no part in the output, so their gradient is 0: the "
        "backward applies the forward's mask and its 1 / keep_prob (CS231n's dropout_backward, "
        "Ng's dA1 * D1 / keep_prob).",
        dropout_dx(problem, k),
    )


def explain_not_rescaled(problem: Problem, k: int, f) -> tuple[str, str]:
    p = problem.layers[k].settings["keep_prob"]
    return (
        f"the mask was applied without inverted dropout's 1 / keep_prob (`dx = dz * mask`, and "
        f"perhaps `z = a_prev * mask` in the forward): inverted dropout divides what it keeps "
        f"by keep_prob ({p!r}), so that the expected output is unchanged, in the forward and "
        "so in the backward.",
        dropout_dx(problem, k),
    )


DROPOUT_MISTAKES = (
    KindMistake(
        "mask_not_applied_in_backward",
        "dropout",
        _unmasked(divide=True),
        explain_mask_not_applied,
        applies=_drops,
        takes="flat",
    ),
    KindMistake(
        "mask_not_applied_in_backward",
        "dropout",
        _unmasked(divide=False),
        explain_mask_not_applied,
        applies=_drops,
        takes="flat",
    ),
    KindMistake(
        "dropout_not_rescaled",
        "dropout",
        unscaled_backward,
        explain_not_rescaled,
        applies=_drops,
        takes="flat",
    ),
    KindMistake(
        "dropout_not_rescaled",
        "dropout",
        unscaled_throughout,
        explain_not_rescaled,
        applies=_drops,
        takes="flat",
        changes_forward=True,
    ),
)
