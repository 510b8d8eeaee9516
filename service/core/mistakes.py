"""The autograder's catalogue of backprop mistakes, each one a recomputed backward pass.

A submission is diagnosed by recomputing the backward pass with a mistake
made (in one layer, or in every layer) and seeing whether the submitted
values match it.  A mistake made in layer k changes dz, dW and db of layer k
and of every earlier layer, so fields far from the mistake are diagnosed with
its cause rather than as unexplained wrong values.

Students put the reduction's 1/N in one of three places, and a mistake made
before it (in dL/da) gives other numbers than one made after it, so every
mistake is recomputed in each placement that gives different numbers:

    "reduced"     inside dL/da, so in every dz (PyTorch, CS231n, this service's default)
    "in_dz"       on the output layer's dz, after its chain rule (dz2 = (...) / m)
    "per_sample"  in dW and db only (Andrew Ng's dW = 1/m * dZ @ A_prev.T, db likewise)

The client's own ``dz_scale`` placement is tried first.

Shape mistakes (a db not summed over the batch, a transposed dW, a column
bias) need no recomputation; the grader recognises them from the shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from .activations import ALIASES
from .budget import NO_DEADLINE, Deadline
from .losses import minus_targets
from .network import (
    Forward,
    Gradients,
    Problem,
    backward,
    loss_scale,
    loss_value,
    output_shape,
)

Array = np.ndarray

#: The derivative formulas written in terms of the activation's output a,
#: which students then evaluate at the wrong quantity.
OUTPUT_FORM_DERIVATIVES: dict[str, Callable[[Array], Array]] = {
    "sigmoid": lambda s: s * (1.0 - s),
    "tanh": lambda s: 1.0 - s**2,
}


PLACEMENTS = ("reduced", "per_sample", "in_dz")


@dataclass(frozen=True)
class Variant:
    """A backward pass with one mistake made."""

    code: str
    #: the layers the mistake was made in; empty for a mistake in the loss itself
    layers: tuple[int, ...]
    result: Gradients
    #: for the scale mistakes, the divisor or factor that was misapplied
    factor: float | None = None
    #: where the reduction's 1/N was put (PLACEMENTS)
    placement: str = "reduced"
    #: which form of the mistake, when a code has several (the rule's name)
    form: str = ""


def placements(problem: Problem, linear: bool) -> tuple[str, ...]:
    """The placements of 1/N that give different numbers for a mistake, the client's first.

    A mistake linear in dL/da (a sign, a missing factor) gives the same numbers with the
    1/N inside dL/da or on dz, so "in_dz" is only tried for the others."""
    if problem.upstream is not None or loss_scale(problem) == 1.0:
        return ("reduced",)
    own = problem.dz_scale
    found = (own, *(p for p in PLACEMENTS[:2] if p != own))
    return found if linear else (*found, "in_dz")


def passes_needed(problem: Problem) -> int:
    """An upper bound on the backward passes ``variants`` computes, for the work limits."""
    layers = len(problem.layers)
    per_layer_scopes = layers + (1 if layers > 1 else 0)
    rule_passes = sum(len(PLACEMENTS) - (1 if linear else 0) for *_, linear in LAYER_MISTAKES)
    return 1 + 2 + 2 + rule_passes * per_layer_scopes


def variants(
    problem: Problem, fwd: Forward, deadline: Deadline = NO_DEADLINE, keep_dx: bool = False
) -> Iterator[Variant]:
    """Every mistake in the catalogue that changes something for this problem
    (``keep_dx``: each pass keeps every layer's dx, for a submission that has one)."""
    last = len(problem.layers) - 1
    reduce = loss_scale(problem)

    def recompute(placement: str = "reduced", dz_rule=None, **mistake) -> Gradients:
        def run(**scales) -> Gradients:
            return backward(
                problem, fwd, dz_rule=dz_rule, deadline=deadline, keep_dx=keep_dx, **scales
            )

        if mistake:  # the scale mistakes: the 1/N itself is what is wrong
            return run(**mistake)
        if placement == "reduced":
            return run(scale=reduce, param_scale=1.0)
        if placement == "per_sample":
            return run(scale=1.0, param_scale=reduce)

        def on_output_dz(i, z, a, dL_da, dz):  # "in_dz": dz2 = (the chain rule) / m
            dz = dz if dz_rule is None else dz_rule(i, z, a, dL_da, dz)
            return reduce * dz if i == last else dz

        result = backward(
            problem,
            fwd,
            dz_rule=on_output_dz,
            scale=1.0,
            param_scale=1.0,
            deadline=deadline,
            keep_dx=keep_dx,
        )
        return replace(result, loss=loss_value(problem, fwd.zs[-1], fwd.outs[-1]))

    def flip_output(i, z, a, dL_da, dz):
        return -dz if i == last else dz

    if problem.upstream is None:  # with upstream there is no loss, error or reduction
        for placement in placements(problem, linear=True):
            result = recompute(placement, dz_rule=flip_output)
            yield Variant("sign_flipped", (), result, placement=placement)
        yield from _scale_variants(problem, recompute)

    activations = [_activation(problem, i) for i in range(last + 1)]
    for code, applies, rule, at_output, linear in LAYER_MISTAKES:
        if at_output and problem.upstream is not None:
            continue
        layers = [i for i, name in enumerate(activations) if applies(name, i == last, problem)]
        scopes = [(i,) for i in reversed(layers)]
        if len(layers) > 1:
            scopes.append(tuple(layers))
        for scope in scopes:
            if at_output and last not in scope:
                continue
            for placement in placements(problem, linear):
                result = recompute(placement, dz_rule=_in_layers(scope, rule, problem))
                yield Variant(code, scope, result, placement=placement, form=rule.__name__)


def _scale_variants(problem: Problem, recompute) -> Iterator[Variant]:
    batch, n_out = output_shape(problem)
    counts = sorted({batch, batch * n_out} - {1})
    if problem.reduction == "sum":
        for n in counts:
            result = recompute(scale=1 / n, param_scale=1.0)
            yield Variant("averaged_instead_of_summed", (), result, n)
    else:
        result = recompute(scale=1.0, param_scale=1.0)
        yield Variant("summed_instead_of_averaged", (), result, 1 / loss_scale(problem))


def _in_layers(scope: tuple[int, ...], rule, problem: Problem):
    def dz_rule(i, z, a, dL_da, dz):
        return rule(problem, i, z, a, dL_da, dz) if i in scope else dz

    return dz_rule


def _preactivation_derivative(problem, i, z, a, dL_da, dz):
    # sigmoid'(z) written as z (1 - z), tanh'(z) as 1 - z^2: the formula for a, fed z
    return dL_da() * OUTPUT_FORM_DERIVATIVES[_activation(problem, i)](z)


def _missing_derivative(problem, i, z, a, dL_da, dz):
    return dL_da()


def _derivative_of_error(problem, i, z, a, dL_da, dz):
    # dz2 = dh2 * (1 - dh2) with dh2 = h2 - y: the formula for a, fed the error
    return OUTPUT_FORM_DERIVATIVES[_activation(problem, i)](dL_da())


def _derivative_of_raw_error(problem, i, z, a, dL_da, dz):
    # the same, with the output's error taken as a - y whatever the loss and reduction
    # (the seed's dh2 = h2 - y), and the error coming back to a hidden layer as it is
    is_output = i == len(problem.layers) - 1
    error = minus_targets(a, problem.targets) if is_output else dL_da()
    return OUTPUT_FORM_DERIVATIVES[_activation(problem, i)](error)


def _activation(problem: Problem, i: int) -> str:
    name = problem.layers[i].activation
    return ALIASES.get(name, name)


def _has_output_form(name: str, is_output: bool, problem: Problem) -> bool:
    return name in OUTPUT_FORM_DERIVATIVES


def _has_a_derivative(name: str, is_output: bool, problem: Problem) -> bool:
    return name != "identity"


#: (diagnosis, which layers it can be made in, the mistaken dz rule, only in scopes that
#: include the output layer, linear in dL/da). Each is tried in every such layer alone,
#: then in all of them, in each placement of the 1/N that gives other numbers.
LAYER_MISTAKES = (
    ("derivative_of_preactivation", _has_output_form, _preactivation_derivative, False, True),
    ("derivative_of_error", _has_output_form, _derivative_of_error, False, False),
    ("derivative_of_error", _has_output_form, _derivative_of_raw_error, True, False),
    ("missing_activation_derivative", _has_a_derivative, _missing_derivative, False, True),
)
