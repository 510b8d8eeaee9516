"""Bounds on the work one request may demand, checked before any math runs.

Two kinds: counts of what the request sends (layers, numbers, parameters to
check), and its cost (service.core.cost): the bytes it would hold at its peak
and the floating-point operations it would run, priced from its shapes alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cost import Cost, NetworkShape
from .errors import LimitExceeded
from .neuron import NeuronProblem
from .request_costs import neuron_cost

MiB = 2**20
#: A hard cap on a batch's list, checked by the schema before any entry is read (as
#: schemas.fields.MAX_LAYERS is); the configured max_batch_submissions may not exceed it.
MAX_BATCH_SUBMISSIONS = 20_000


@dataclass(frozen=True)
class Limits:
    #: every number in the request's arrays, inputs and targets included
    max_elements: int = 4_000_000
    max_layers: int = 64
    #: forward and backward multiply-adds, estimated as 6 * batch * sum(n_in * n_out)
    max_flops: int = 20_000_000_000
    #: parameters a numerical gradient check may nudge (two forward passes each)
    max_check_parameters: int = 5_000
    #: bytes one request may hold at its peak: arrays, activations, gradients, its answer
    max_request_bytes: int = 256 * MiB
    #: submissions one POST /v1/check/batch may grade
    max_batch_submissions: int = 2_000


def check_request(
    net: NetworkShape,
    cost: Cost,
    limits: Limits,
    gradient_check: bool = False,
    layers_field: str = "layers",
    smaller: str = "send a smaller batch",
) -> None:
    """Every limit of a network request, cheapest first; nothing has been computed yet."""
    check_counts(net, limits, gradient_check, layers_field, smaller)
    work = "the forward and backward pass need"
    if gradient_check:
        work = (
            "the forward and backward pass and the gradient check "
            "(two forward passes for each parameter) need"
        )
    check_cost(cost, limits, work)


def check_neuron(problem: NeuronProblem, limits: Limits, body: int = 0) -> None:
    """x and w count against the numbers a request may hold; their cost against the rest."""
    check_elements(problem.x.size + problem.w.size, limits, "send fewer inputs")
    cost = neuron_cost(problem.x.size, problem.curve_points, problem.steps, body)
    check_cost(cost, limits, "the terms, the loss curve and the descent steps need")


def check_counts(
    net: NetworkShape,
    limits: Limits,
    gradient_check: bool = False,
    layers_field: str = "layers",
    smaller: str = "send a smaller batch",
) -> None:
    """Layers, numbers, and the parameters a gradient check would nudge."""
    if len(net.layers) > limits.max_layers:
        raise LimitExceeded(
            layers_field,
            f"{len(net.layers)} layers exceed this service's limit of "
            f"{limits.max_layers} (GRADIENT_MAX_LAYERS).",
        )
    check_elements(net.elements(), limits, smaller)
    if gradient_check:
        parameters = net.parameters()
        if parameters > limits.max_check_parameters:
            raise LimitExceeded(
                "gradient_check",
                f"a numerical gradient check of {parameters:,} parameters is over this "
                f"service's limit of {limits.max_check_parameters:,} "
                "(GRADIENT_MAX_CHECK_PARAMETERS): each parameter costs two forward passes. "
                "Check a smaller network, or leave gradient_check off.",
            )


def check_batch_size(submissions: int, limits: Limits) -> None:
    """POST /v1/check/batch: how many submissions one call grades."""
    if submissions > limits.max_batch_submissions:
        raise LimitExceeded(
            "submissions",
            f"got {submissions:,} submissions, over this service's limit of "
            f"{limits.max_batch_submissions:,} per call (GRADIENT_MAX_BATCH_SUBMISSIONS); "
            "split the class over several calls.",
        )


def check_elements(elements: int, limits: Limits, fix: str = "send a smaller batch") -> None:
    if elements > limits.max_elements:
        raise LimitExceeded(
            "_request",
            f"the arrays hold {elements:,} numbers, over this service's limit of "
            f"{limits.max_elements:,} (GRADIENT_MAX_ELEMENTS); {fix}.",
        )


def check_cost(
    cost: Cost, limits: Limits, work: str = "the forward and backward pass need"
) -> None:
    """The bytes the request would hold at its peak, then its FLOPs."""
    if cost.bytes > limits.max_request_bytes:
        part = cost.largest
        ratio = cost.bytes / limits.max_request_bytes
        times = f"{ratio:,.1f}" if ratio >= 1.1 else f"{ratio:.2f}"
        raise LimitExceeded(
            "_request",
            f"the computation would hold about {size_text(cost.bytes)} (the largest part: "
            f"{part.what}, {size_text(part.bytes)}), {times}x this service's limit of "
            f"{size_text(limits.max_request_bytes)} (GRADIENT_MAX_REQUEST_BYTES); {part.fix}.",
        )
    check_flops(cost.flops, limits, work)


def check_flops(
    flops: int, limits: Limits, work: str = "the forward and backward pass need"
) -> None:
    if flops > limits.max_flops:
        raise LimitExceeded(
            "_request",
            f"{work} about {flops:,} floating-point operations, over this service's limit of "
            f"{limits.max_flops:,} (GRADIENT_MAX_FLOPS); send a smaller batch or network.",
        )


def size_text(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= MiB:
        return f"{n / MiB:,.0f} MiB"
    return f"{n / 1024:,.0f} KiB"
