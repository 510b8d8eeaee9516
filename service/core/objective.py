"""The objective backward differentiates: the reduced loss plus l2, or sum(upstream * out).

The reduction's scale (1/N for "mean") is one factor of both the loss and dL/dz; the
autograder recomputes passes with it misplaced, so it is a function of its own.
"""

from __future__ import annotations

from math import prod

import numpy as np

from .layers import KINDS
from .losses import LOSSES
from .problem import Layer, Problem

Array = np.ndarray


def loss_scale(problem: Problem) -> float:
    """The factor the reduction applies to the summed loss and to dL/dz (1 with upstream)."""
    if problem.upstream is not None:
        return 1.0
    batch, n_out = output_shape(problem)
    return LOSSES[problem.loss].reduce_scale(problem.reduction, batch, n_out)


def output_shape(problem: Problem) -> tuple[int, int]:
    """(batch, n_out) of the last layer's output, whether the targets are dense or labels."""
    batch, shape = problem.inputs.shape[0], problem.inputs.shape[1:]
    for layer in problem.layers:
        shape = layer.sample_out(shape)
    return batch, prod(shape)


def l2_penalty(problem: Problem, layers: tuple[Layer, ...] | None = None) -> float:
    layers = problem.layers if layers is None else layers
    factor = 0.5 * problem.l2 if problem.l2_style == "half" else problem.l2
    return factor * sum(
        float(np.sum(layer.params[name] ** 2))
        for layer in layers
        for name in KINDS[layer.kind].regularised
        if name in layer.params
    )


def l2_gradient_factor(problem: Problem) -> float:
    return problem.l2 if problem.l2_style == "half" else 2.0 * problem.l2


def loss_value(
    problem: Problem,
    z_out: Array,
    a_out: Array,
    scale: float | None = None,
    layers: tuple[Layer, ...] | None = None,
) -> float:
    """The reduced loss plus the l2 penalty of ``layers`` (the problem's own by default).

    With upstream, the function whose gradient backward computes: sum(upstream * a_out)
    (what the gradient check differentiates; the answer's loss is null).
    """
    if problem.upstream is not None:
        loss = float(np.sum(problem.upstream * a_out))
    else:
        scale = loss_scale(problem) if scale is None else scale
        loss = scale * LOSSES[problem.loss].total(z_out, a_out, problem.targets)
    if problem.l2:
        loss += l2_penalty(problem, layers)
    return loss
