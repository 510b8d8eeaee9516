"""Mistakes inside a batchnorm or layernorm layer, as students write CS231n's
batchnorm_backward / layernorm_backward (issue 13, item 4).

Each is the kind as the student wrote it (a ``Kind`` with their forward or backward), and
its words.  In the order the grader tries them:

- ``batchnorm_mean_variance_ignored``: dx = dout * gamma / std, the batch mean and variance
  treated as constants (train mode only: in eval mode that *is* dx).  Backward only.
- ``variance_bias_mismatch``: the other divisor of the batch variance, N - 1 where the
  problem's is N ("biased") or N where it is N - 1 ("unbiased").  Two forms, one code: in
  the backward only (a forward given, dx's N / D factor written for the other variance),
  then in the forward and the backward (``np.var`` where the problem's is ``ddof=1``, or the
  other way round: z differs too, and dx consistently with it).
- ``layernorm_wrong_axis``: a layernorm's mean and variance taken over the batch axis, as a
  batchnorm's (CS231n's layernorm reuses batchnorm on the transposed input; without the
  transpose this is it).  Forward and backward.

The wrong-shape mistake (dgamma or dbeta not summed over the batch) is recognised from
its shape: service.grading.shapes_norms.

Every backticked statement is NumPy over the student's names for the layer: ``a_prev``
(the layer's input, x), ``gamma``, ``dz`` (dL/d(the layer's output), CS231n's dout),
``x_hat`` and ``std`` (its normalised input and sqrt(var + eps)); the fix defines what it
needs from ``a_prev`` itself (tests/test_diagnoses_layers.py executes every one).
"""

from __future__ import annotations

from dataclasses import replace

from ..layers import batchnorm
from ..layers.base import Kind
from ..problem import Layer, Problem
from . import KindMistake


def _train(layer: Layer) -> bool:
    return batchnorm.setting(layer.settings, "mode") == "train"


def _other_variance(settings):
    bessel = batchnorm.setting(settings, "variance") == "unbiased"
    return {**settings, "variance": "biased" if bessel else "unbiased"}


# -- the students' kinds ------------------------------------------------------------------------


def ignores_batch_statistics(right: Kind, layer: Layer) -> Kind:
    """dx = dout * gamma / std: the eval-mode backward in train mode."""

    def backward(dout, cache, need_dx=True):
        _, grads = right.backward(dout, cache, False)
        if not need_dx:
            return None, grads
        _, gamma, inv_std, *_ = cache
        return dout * (gamma * inv_std), grads

    return replace(right, backward=backward)


def other_variance_in_backward(right: Kind, layer: Layer) -> Kind:
    """The right forward; dx written for the other divisor of the variance."""

    def backward(dout, cache, need_dx=True):
        return right.backward(dout, (*cache[:-1], _other_variance(cache[-1])), need_dx)

    return replace(right, backward=backward)


def other_variance_throughout(right: Kind, layer: Layer) -> Kind:
    """The other divisor in the forward's variance, and the backward consistent with it."""

    def forward(x, params, settings):
        return right.forward(x, params, _other_variance(settings))

    return replace(right, forward=forward)


def batch_statistics_in_layernorm(right: Kind, layer: Layer) -> Kind:
    """A layernorm normalising each feature over the batch: batchnorm's forward and backward."""

    def forward(x, params, settings):
        eps = settings.get("eps")
        own = {"eps": eps, "mode": "train", "variance": "biased"}
        return batchnorm.forward(x, params, own)

    return replace(right, forward=forward, backward=batchnorm.backward)


# -- their words ---------------------------------------------------------------------------------


def _eps(layer: Layer) -> float:
    eps = layer.settings.get("eps")
    return batchnorm.DEFAULTS["eps"] if eps is None else eps


def batchnorm_dx(problem: Problem, k: int, f) -> str:
    """CS231n's batchnorm_backward_alt in one statement, the statistics over the batch axis,
    from a_prev, gamma and dz in the client's layout."""
    layer = problem.layers[k]
    n = problem.inputs.shape[0]
    bessel = batchnorm.setting(layer.settings, "variance") == "unbiased"
    ax = f"axis={f.axis}"
    ddof = ", ddof=1" if bessel else ""
    return (
        f"mu = np.mean(a_prev, {ax}, keepdims=True); "
        f"std = np.sqrt(np.var(a_prev, {ax}{ddof}, keepdims=True) + {_eps(layer)!r}); "
        "x_hat = (a_prev - mu) / std; "
        f"dx = gamma / std * (dz - np.mean(dz, {ax}, keepdims=True) "
        f"- x_hat * np.sum(dz * x_hat, {ax}, keepdims=True) / {n - 1 if bessel else n})"
    )


def layernorm_dx(problem: Problem, k: int, f) -> str:
    """CS231n's layernorm_backward in one statement, the statistics over each sample's
    features, from a_prev, gamma and dz in the client's layout."""
    ax = f"axis={f.unit_axis}"
    return (
        f"mu = np.mean(a_prev, {ax}, keepdims=True); "
        f"std = np.sqrt(np.var(a_prev, {ax}, keepdims=True) + {_eps(problem.layers[k])!r}); "
        "x_hat = (a_prev - mu) / std; g = dz * gamma; "
        f"dx = (g - np.mean(g, {ax}, keepdims=True) "
        f"- x_hat * np.mean(g * x_hat, {ax}, keepdims=True)) / std"
    )


def explain_ignored_statistics(problem: Problem, k: int, f) -> tuple[str, str]:
    return (
        "dx was computed as `dx = dz * gamma / std`, as if the batch mean and variance were "
        "constants (they are only in eval mode, where the running statistics replace them). "
        "In train mode every sample's x moves the batch's mean and variance, so dx has two "
        f"more terms, the mean's and the variance's, sums over the batch (axis {f.axis}), "
        "as in CS231n's batchnorm_backward_alt.",
        batchnorm_dx(problem, k, f),
    )


def explain_variance(problem: Problem, k: int, f) -> tuple[str, str]:
    n = problem.inputs.shape[0]
    ax = f"axis={f.axis}"
    biased = (f"N ({n}, `np.var(a_prev, {ax})`, CS231n's and PyTorch's)", '"biased"')
    unbiased = (f"N - 1 ({n - 1}, `np.var(a_prev, {ax}, ddof=1)`, makemore's)", '"unbiased"')
    bessel = batchnorm.setting(problem.layers[k].settings, "variance") == "unbiased"
    (theirs, their_name), (ours, our_name) = (biased, unbiased) if bessel else (unbiased, biased)
    return (
        f"the batch variance was divided by {theirs} where the problem's "
        f'("variance": {our_name}) divides by {ours}, in the forward\'s x_hat, in the '
        "backward's dx (its x_hat * sum(dz * x_hat) term is over the same divisor), or in both "
        f'(send "variance": {their_name} if that is the one your course uses).',
        batchnorm_dx(problem, k, f),
    )


def explain_wrong_axis(problem: Problem, k: int, f) -> tuple[str, str]:
    return (
        "the layer norm's mean and variance were taken over the batch "
        f"(`np.mean(a_prev, axis={f.axis}, keepdims=True)`, a batch norm's statistics) instead "
        "of over each sample's own features "
        f"(`np.mean(a_prev, axis={f.unit_axis}, keepdims=True)`): a layer norm normalises "
        "every sample on its own, in the forward and so in the backward (CS231n's layernorm "
        "reuses batchnorm on the transposed input; the transpose was left out).",
        layernorm_dx(problem, k, f),
    )


NORM_MISTAKES = (
    KindMistake(
        "batchnorm_mean_variance_ignored",
        "batchnorm",
        ignores_batch_statistics,
        explain_ignored_statistics,
        applies=_train,
        takes="flat",
    ),
    KindMistake(
        "variance_bias_mismatch",
        "batchnorm",
        other_variance_in_backward,
        explain_variance,
        applies=_train,
        takes="flat",
    ),
    KindMistake(
        "variance_bias_mismatch",
        "batchnorm",
        other_variance_throughout,
        explain_variance,
        applies=_train,
        takes="flat",
        changes_forward=True,
    ),
    KindMistake(
        "layernorm_wrong_axis",
        "layernorm",
        batch_statistics_in_layernorm,
        explain_wrong_axis,
        changes_forward=True,
        takes="flat",
    ),
)
