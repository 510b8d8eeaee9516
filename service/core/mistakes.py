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

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from .budget import NO_DEADLINE, Deadline
from .kind_mistakes import KIND_MISTAKES, KindMistake
from .layers import KINDS, Kind
from .losses import LOSSES, is_labels
from .mistake_rules import (
    activation,
    at_output,
    chain_without_weights,
    derivative_of_error,
    derivative_of_raw_error,
    flip_output,
    has_a_derivative,
    has_output_form,
    labels_as_numbers,
    margin_of_correct_class,
    missing_derivative,
    preactivation_derivative,
    without_weights,
)
from .network import KindOf, backward, forward, own_kind
from .objective import loss_scale, loss_value, output_shape
from .problem import Forward, Gradients, Layer, Problem

Array = np.ndarray

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
    """The passes ``variants`` computes (a forward rerun counted as one more, once for the
    placements that share it) and the reference's, for the work limits: exact, so an upper
    bound."""
    planned = plan(problem)
    return 1 + len(planned) + len({p.kind_of for p in planned if p.changes_forward})


def reruns_forward(problem: Problem) -> bool:
    """Whether a mistaken pass of the catalogue reruns the forward pass (a mistake inside a
    kind's forward): the grader then holds that pass's forward beside the reference's."""
    return any(p.changes_forward for p in plan(problem))


@dataclass(frozen=True)
class Planned:
    """One mistaken pass to compute: its code, where, and how (``recompute``'s arguments)."""

    code: str
    layers: tuple[int, ...]
    placement: str = "reduced"
    dz_rule: object = None
    dx_rule: object = None
    scales: tuple[tuple[str, float], ...] = ()  # the scale mistakes set the 1/N themselves
    factor: float | None = None
    form: str = ""
    #: added to the reduced loss (the svm margin counted for the correct class adds 1 a sample)
    loss_shift: float = 0.0
    #: which Kind computes each layer (a mistake inside a kind: service.core.kind_mistakes)
    kind_of: KindOf = own_kind
    #: the mistake changes the layer's forward: the pass reruns forward from the inputs
    changes_forward: bool = False


def plan(problem: Problem) -> list[Planned]:
    """Every mistaken pass of the catalogue that changes something for this problem, in the
    order the grader tries them: the most specific explanation first."""
    last = len(problem.layers) - 1
    planned: list[Planned] = []
    if problem.upstream is None:  # with upstream there is no loss, error or reduction
        for placement in placements(problem, linear=True):
            planned.append(Planned("sign_flipped", (), placement, flip_output(last)))
        planned += _scale_plan(problem)
        planned += _output_plan(problem)

    activations = [activation(problem, i) for i in range(last + 1)]
    for code, applies, rule, only_output, linear in LAYER_MISTAKES:
        if only_output and problem.upstream is not None:
            continue
        layers = [i for i, name in enumerate(activations) if applies(name, i == last, problem)]
        for scope in _scopes(layers):
            if only_output and last not in scope:
                continue
            for placement in placements(problem, linear):
                dz_rule = in_layers(scope, rule, problem)
                planned.append(Planned(code, scope, placement, dz_rule, form=rule.__name__))

    for scope in _scopes([i for i in range(1, last + 1) if chain_without_weights(problem, i)]):
        for placement in placements(problem, linear=True):
            dx_rule = without_weights(scope)
            planned.append(Planned("missing_weights_in_chain", scope, placement, dx_rule=dx_rule))
    return planned + _kind_plan(problem)


def _kind_plan(problem: Problem) -> list[Planned]:
    """The mistakes made inside a layer kind, in every layer of that kind alone, then in
    all of them (service.core.kind_mistakes)."""
    planned = []
    flat = _flat_inputs(problem)
    for mistake in KIND_MISTAKES:
        layers = [
            i
            for i, layer in enumerate(problem.layers)
            if layer.kind == mistake.kind
            and mistake.applies(layer)
            and (mistake.takes == "any" or flat[i])
        ]
        for scope in _scopes(layers):
            kind_of = _student_kinds(scope, mistake)  # one per scope: its forward is shared
            for placement in placements(problem, mistake.linear):
                planned.append(
                    Planned(
                        mistake.code,
                        scope,
                        placement,
                        kind_of=kind_of,
                        changes_forward=mistake.changes_forward,
                        form=mistake.code,
                    )
                )
    return planned


def _flat_inputs(problem: Problem) -> list[bool]:
    """Whether each layer's input is (batch, n) rows, each kind saying what it answers for
    the samples it takes (Layer.sample_out: an image stays one until a flatten)."""
    flat, sample = [], problem.inputs.shape[1:]
    for layer in problem.layers:
        flat.append(len(sample) == 1)
        sample = layer.sample_out(sample)
    return flat


def _student_kinds(scope: tuple[int, ...], mistake: KindMistake) -> KindOf:
    def kind_of(i: int, layer: Layer) -> Kind:
        right = KINDS[layer.kind]
        return mistake.student(right, layer) if i in scope else right

    return kind_of


def variants(
    problem: Problem, fwd: Forward, deadline: Deadline = NO_DEADLINE, keep_dx: bool = False
) -> Iterator[Variant]:
    """Every mistake in the catalogue that changes something for this problem, computed one
    at a time (``keep_dx``: each pass keeps every layer's dx, for a submission that has one)."""
    last = len(problem.layers) - 1
    reduce = loss_scale(problem)
    #: the student's forward pass of the mistake last recomputed, shared by its placements
    #: (they differ in the backward only): one rerun a mistake, and their z and a held once
    reran: dict[KindOf, Forward] = {}

    def student_forward(kind_of: KindOf) -> Forward:
        if kind_of not in reran:
            reran.clear()
            reran[kind_of] = forward(problem, deadline, kind_of)
        return reran[kind_of]

    def recompute(p: Planned) -> Gradients:
        if not p.changes_forward:
            reran.clear()  # the placements sharing it are consecutive: its caches can go
        fwd_p = student_forward(p.kind_of) if p.changes_forward else fwd

        def run(**scales) -> Gradients:
            return backward(
                problem,
                fwd_p,
                dz_rule=p.dz_rule,
                dx_rule=p.dx_rule,
                deadline=deadline,
                keep_dx=keep_dx,
                kind_of=p.kind_of,
                **scales,
            )

        if p.scales:  # the scale mistakes: the 1/N itself is what is wrong
            return run(**dict(p.scales))
        if p.placement == "reduced":
            result = run(scale=reduce, param_scale=1.0)
        elif p.placement == "per_sample":
            result = run(scale=1.0, param_scale=reduce)
        else:

            def on_output_dz(i, z, a, dL_da, dz):  # "in_dz": dz2 = (the chain rule) / m
                dz = dz if p.dz_rule is None else p.dz_rule(i, z, a, dL_da, dz)
                return reduce * dz if i == last else dz

            result = backward(
                problem,
                fwd_p,
                dz_rule=on_output_dz,
                dx_rule=p.dx_rule,
                scale=1.0,
                param_scale=1.0,
                deadline=deadline,
                keep_dx=keep_dx,
                kind_of=p.kind_of,
            )
            result = replace(result, loss=loss_value(problem, fwd_p.zs[-1], fwd_p.outs[-1]))
        if p.loss_shift:
            result = replace(result, loss=result.loss + p.loss_shift)
        return result

    for p in plan(problem):
        yield Variant(p.code, p.layers, recompute(p), p.factor, p.placement, p.form)


def _scopes(layers: list[int]) -> list[tuple[int, ...]]:
    """Each layer alone (the last first), then all of them together."""
    scopes = [(i,) for i in reversed(layers)]
    return [*scopes, tuple(layers)] if len(layers) > 1 else scopes


def _scale_plan(problem: Problem) -> list[Planned]:
    batch, n_out = output_shape(problem)
    if problem.reduction == "sum":
        return [
            Planned(
                "averaged_instead_of_summed",
                (),
                scales=(("scale", 1 / n), ("param_scale", 1.0)),
                factor=n,
            )
            for n in sorted({batch, batch * n_out} - {1})
        ]
    summed = Planned(
        "summed_instead_of_averaged",
        (),
        scales=(("scale", 1.0), ("param_scale", 1.0)),
        factor=1 / loss_scale(problem),
    )
    planned = [summed]
    if LOSSES[problem.loss].mean_over_elements and n_out > 1 and batch > 1:
        # mse's mean divided by the batch only (PyTorch's and this service's: batch * n_out)
        for placement in placements(problem, linear=True):
            where = "scale" if placement == "reduced" else "param_scale"
            other = "param_scale" if where == "scale" else "scale"
            scales = ((where, 1 / batch), (other, 1.0))
            planned.append(
                Planned("reduced_over_batch_only", (), placement, scales=scales, factor=n_out)
            )
    return planned


def _output_plan(problem: Problem) -> list[Planned]:
    """Mistakes in the output's gradient that need class labels or the svm."""
    last = len(problem.layers) - 1
    reduce = loss_scale(problem)
    planned = []
    for placement in placements(problem, linear=True):
        scale = reduce if placement == "reduced" else 1.0
        if problem.loss == "cross_entropy" and is_labels(problem.targets):
            rule = at_output(last, labels_as_numbers, problem, scale)
            planned.append(Planned("labels_not_one_hot", (last,), placement, rule))
        if problem.loss == "svm":
            rule = at_output(last, margin_of_correct_class, problem, scale)
            shift = reduce * output_shape(problem)[0]
            planned.append(
                Planned(
                    "margin_counted_for_correct_class", (last,), placement, rule, loss_shift=shift
                )
            )
    return planned


def in_layers(scope: tuple[int, ...], rule, problem: Problem):
    def dz_rule(i, z, a, dL_da, dz):
        return rule(problem, i, z, a, dL_da, dz) if i in scope else dz

    return dz_rule


#: (diagnosis, which layers it can be made in, the mistaken dz rule, only in scopes that
#: include the output layer, linear in dL/da). Each is tried in every such layer alone,
#: then in all of them, in each placement of the 1/N that gives other numbers.
LAYER_MISTAKES = (
    ("derivative_of_preactivation", has_output_form, preactivation_derivative, False, True),
    ("derivative_of_error", has_output_form, derivative_of_error, False, False),
    ("derivative_of_error", has_output_form, derivative_of_raw_error, True, False),
    ("missing_activation_derivative", has_a_derivative, missing_derivative, False, True),
)
