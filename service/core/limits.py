"""Bounds on the work one request may demand, checked before any math runs."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LimitExceeded
from .network import Problem


@dataclass(frozen=True)
class Limits:
    #: every number in the request's arrays, inputs and targets included
    max_elements: int = 4_000_000
    max_layers: int = 64
    #: forward and backward multiply-adds, estimated as 6 * batch * sum(n_in * n_out)
    max_flops: int = 20_000_000_000
    #: parameters a numerical gradient check may nudge (two forward passes each)
    max_check_parameters: int = 5_000


def estimated_flops(problem: Problem) -> int:
    """Forward (2 flops per weight per sample) plus backward (4): 6 * batch * weights."""
    batch = problem.inputs.shape[0]
    return 6 * batch * sum(layer.weights.size for layer in problem.layers)


def check_limits(
    problem: Problem, limits: Limits, gradient_check: bool = False, passes: int = 1
) -> None:
    """Raise LimitExceeded naming the bound when the problem is too large.

    ``passes`` counts the backward passes the request needs (the autograder
    recomputes one per mistake in its catalogue).
    """
    if len(problem.layers) > limits.max_layers:
        raise LimitExceeded(
            "layers",
            f"{len(problem.layers)} layers exceed this service's limit of "
            f"{limits.max_layers} (GRADIENT_MAX_LAYERS).",
        )
    elements = (
        problem.inputs.size
        + problem.targets.size
        + sum(layer.weights.size + layer.biases.size for layer in problem.layers)
    )
    if elements > limits.max_elements:
        raise LimitExceeded(
            "_request",
            f"the arrays hold {elements:,} numbers, over this service's limit of "
            f"{limits.max_elements:,} (GRADIENT_MAX_ELEMENTS); send a smaller batch.",
        )
    flops = estimated_flops(problem) * passes
    if flops > limits.max_flops:
        raise LimitExceeded(
            "_request",
            f"the forward and backward pass need about {flops:,} floating-point "
            f"operations, over this service's limit of {limits.max_flops:,} "
            "(GRADIENT_MAX_FLOPS); send a smaller batch or network.",
        )
    if gradient_check:
        parameters = sum(layer.weights.size + layer.biases.size for layer in problem.layers)
        if parameters > limits.max_check_parameters:
            raise LimitExceeded(
                "gradient_check",
                f"a numerical gradient check of {parameters:,} parameters is over this "
                f"service's limit of {limits.max_check_parameters:,} "
                "(GRADIENT_MAX_CHECK_PARAMETERS): each parameter costs two forward passes. "
                "Check a smaller network, or leave gradient_check off.",
            )
