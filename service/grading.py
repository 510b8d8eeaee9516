"""The autograder: grade a student's submission field by field and name each mistake.

Grading happens in the client's own space (their convention, layout and bias
shapes), because that is where the student made the mistake and where the
message must speak.  The values come from the core: the correct backward
pass, and the catalogue of mistaken ones in ``service.core.mistakes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from service.core import Gradients, compute_gradients
from service.core.budget import NO_DEADLINE, Deadline
from service.core.mistakes import Variant, variants
from service.core.network import forward
from service.core.shapes import shape_text
from service.core.submission import Submission, Tolerance

if TYPE_CHECKING:
    from schemas.gradients import GradientsRequest

FIELD_ORDER = ("z", "a", "dz", "dx", "dW", "db", "dgamma", "dbeta")
#: gradients of vector parameters: (n,) and (1, n) are the same to a row-sample convention
VECTORS = ("db", "dgamma", "dbeta")


@dataclass
class FieldResult:
    field: str
    passed: bool
    expected_shape: tuple[int, ...]
    submitted_shape: tuple[int, ...]
    max_abs_error: float | None
    max_rel_error: float | None
    diagnosis: str | None
    message: str
    expected: np.ndarray | float | None = None
    #: for a diagnosis by a mistaken pass: the layers the mistake was made in (service.core.
    #: mistakes.Variant; empty for a mistake in the loss), which partial credit reads
    mistake_layers: tuple[int, ...] | None = None


@dataclass
class Report:
    results: list[FieldResult] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return len(self.results)

    @property
    def correct(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def passed(self) -> bool:
        return self.correct == self.checked

    @property
    def score(self) -> float:
        return self.correct / self.checked if self.checked else 1.0


class Grader:
    """Grades one submission against one problem; mistaken passes are computed once, lazily."""

    def __init__(
        self,
        request: GradientsRequest,
        tolerance: Tolerance,
        strict_shapes: bool = False,
        reveal: bool = False,
        deadline: Deadline = NO_DEADLINE,
    ):
        self.request = request
        self.c = request.convention
        self.tolerance = tolerance
        self.strict_shapes = strict_shapes
        self.reveal = reveal
        self.deadline = deadline
        with np.errstate(all="ignore"):
            self._forward = forward(request.problem, deadline)  # shared by the mistaken passes
        self.keep_dx = "dx" in request.include
        self.reference: Gradients = compute_gradients(
            request.problem, self._forward, deadline, keep_dx=self.keep_dx
        )
        self._variants: list[Variant] = []
        self._variant_source: Iterator[Variant] | None = None

    # -- the client's view of a result ------------------------------------------

    def value(self, result: Gradients, layer: int, name: str) -> np.ndarray:
        return self.request.client_array(result.layers[layer], layer, name)

    def mistaken_passes(self) -> Iterator[Variant]:
        """The catalogue, computed on first use and remembered for the next field."""
        yield from self._variants
        if self._variant_source is None:
            self._variant_source = variants(
                self.request.problem, self._forward, self.deadline, keep_dx=self.keep_dx
            )
        while True:
            self.deadline.check()
            with np.errstate(all="ignore"):
                variant = next(self._variant_source, None)
            if variant is None:
                return
            self._variants.append(variant)
            yield variant

    # -- grading --------------------------------------------------------------

    def grade(self, submission: Submission) -> Report:
        report = Report()
        if submission.loss is not None:
            report.results.append(self.grade_loss(submission.loss))
        for i, fields in enumerate(submission.layers):
            for name in FIELD_ORDER:
                if fields and name in fields:
                    report.results.append(self.grade_field(i, name, fields[name]))
        return report

    def grade_loss(self, submitted: float) -> FieldResult:
        expected = self.reference.loss
        result = self._result("loss", np.float64(submitted), np.float64(expected))
        if result.passed:
            return result
        for variant in self.mistaken_passes():
            wrong = variant.result.loss
            if not self.tolerance.close(wrong, expected) and self.tolerance.close(submitted, wrong):
                return self._diagnosed(result, variant.code, self._scale_message("loss", variant))
        return self._diagnosed(
            result,
            "wrong_values",
            f"loss is {submitted:.10g}, expected {expected:.10g}; no common mistake explains the "
            f"difference. Check the {self.request.problem.loss} formula and the "
            f"{self.request.problem.reduction!r} reduction.",
        )

    def grade_field(self, layer: int, name: str, submitted: np.ndarray) -> FieldResult:
        path = f"layers.{layer}.{name}"
        expected = self.value(self.reference, layer, name)
        aligned = self._align(name, submitted, expected)
        if aligned is None:
            return self._shape_result(path, layer, name, submitted, expected)

        result = self._result(path, aligned, expected, submitted.shape)
        if result.passed:
            if aligned.shape != submitted.shape:
                sent = {"db": "biases", "dgamma": "gamma", "dbeta": "beta"}.get(name, "biases")
                result.message += (
                    f" Accepted in shape {shape_text(submitted.shape)}; the problem's {sent} "
                    f"{'is' if sent != 'biases' else 'are'} {shape_text(expected.shape)}."
                )
            return result
        for variant in self.mistaken_passes():
            wrong = self.value(variant.result, layer, name)
            if not self.tolerance.close(wrong, expected) and self.tolerance.close(aligned, wrong):
                result.mistake_layers = variant.layers
                return self._diagnosed(
                    result, variant.code, self._variant_message(path, layer, variant)
                )
        square = aligned.ndim == 2 and aligned.shape == aligned.T.shape
        if square and self.tolerance.close(aligned.T, expected):
            return self._diagnosed(result, "transposed", self._transposed_message(path, name))
        return self._diagnosed(
            result, "wrong_values", self._wrong_values_message(path, layer, name)
        )

    # -- shapes ---------------------------------------------------------------

    def _align(self, name: str, submitted: np.ndarray, expected: np.ndarray) -> np.ndarray | None:
        """The submission in the expected shape, if its shape is acceptable; else None."""
        if submitted.shape == expected.shape:
            return submitted
        n = expected.size
        interchangeable = {(n,), (1, n)}
        if (
            name in VECTORS
            and not self.strict_shapes
            and not self.c.samples_are_columns
            and {submitted.shape, expected.shape} <= interchangeable
        ):
            return submitted.reshape(expected.shape)
        return None

    def _shape_result(self, path, layer, name, submitted, expected) -> FieldResult:
        result = FieldResult(
            field=path,
            passed=False,
            expected_shape=expected.shape,
            submitted_shape=submitted.shape,
            max_abs_error=None,
            max_rel_error=None,
            diagnosis=None,
            message="",
            expected=expected if self.reveal else None,
        )
        got, want = shape_text(submitted.shape), shape_text(expected.shape)
        batch = self.request.problem.inputs.shape[0]
        n = expected.size
        per_sample = self.c.data_shape(batch, n)
        axis = 1 if self.c.samples_are_columns else 0
        sample_axis = "column" if self.c.samples_are_columns else "row"
        if name == "db" and submitted.shape == per_sample and batch > 1:
            return self._diagnosed(
                result,
                "not_reduced_over_batch",
                f"{path} has one {sample_axis} per sample (shape {got}): dL/dz was not summed "
                f"over the batch axis. The bias is added to every sample, so its gradient is the "
                f"sum of every sample's dz: db = np.sum(dz, axis={axis}, keepdims=True), shape "
                f"{want}.",
            )
        if name == "db" and not self.c.samples_are_columns and submitted.shape == (n, 1) and n > 1:
            return self._diagnosed(
                result,
                "column_vector_shape",
                f"{path} is a ({n}, 1) column, but in the {self.c.name!r} convention biases are "
                f"rows: a column bias broadcasts along the batch axis instead of the unit axis. "
                f"Use db = np.sum(dz, axis=0, keepdims=True), shape (1, {n}).",
            )
        if submitted.ndim == 2 and submitted.shape == expected.shape[::-1]:
            return self._diagnosed(result, "transposed", self._transposed_message(path, name))
        message = f"{path} has shape {got}, expected {want}."
        if name == "db" and self.c.samples_are_columns and submitted.shape == (n,):
            message += (
                f" Without keepdims=True the sum loses its axis, and b - lr * db would broadcast "
                f"({n}, 1) against ({n},) into ({n}, {n}). Use db = np.sum(dz, axis=1, "
                "keepdims=True)."
            )
        elif name == "db" and self.strict_shapes:
            message += " strict_shapes is on: only the exact shape of the problem's biases passes."
        return self._diagnosed(result, "wrong_shape", message)

    # -- results and messages ---------------------------------------------------

    def _result(self, path, submitted, expected, submitted_shape=None) -> FieldResult:
        submitted = np.asarray(submitted, dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        error = np.abs(submitted - expected)
        nonzero = expected != 0
        relative = (
            float((error[nonzero] / np.abs(expected[nonzero])).max()) if nonzero.any() else None
        )
        passed = self.tolerance.close(submitted, expected)
        return FieldResult(
            field=path,
            passed=passed,
            expected_shape=expected.shape,
            submitted_shape=submitted.shape if submitted_shape is None else submitted_shape,
            max_abs_error=float(error.max()),
            max_rel_error=relative,
            diagnosis=None,
            message="Correct." if passed else "",
            expected=(float(expected) if expected.ndim == 0 else expected) if self.reveal else None,
        )

    @staticmethod
    def _diagnosed(result: FieldResult, code: str, message: str) -> FieldResult:
        result.passed = False
        result.diagnosis = code
        result.message = message
        return result

    def _scale_message(self, what: str, variant: Variant) -> str:
        problem = self.request.problem
        if variant.code == "averaged_instead_of_summed":
            return (
                f"{what} is the right value divided by {variant.factor:g}: the problem's "
                "reduction is 'sum', so the loss adds every sample's term and nothing is "
                "averaged. Drop the division."
            )
        over = "batch * n_out" if problem.loss != "cross_entropy" else "the batch size"
        return (
            f"{what} is {variant.factor:g} times the right value: the problem's reduction is "
            f"'mean', so the loss, and so every gradient, is divided by {over} "
            f"({variant.factor:g})."
        )

    def _variant_message(self, path: str, layer: int, variant: Variant) -> str:
        if variant.code in ("averaged_instead_of_summed", "summed_instead_of_averaged"):
            return self._scale_message(path, variant)
        if variant.code == "sign_flipped":
            return (
                f"{path} has the right size but the wrong sign: the output error is a - y "
                "(prediction minus target), not y - a; every gradient inherits its sign."
            )
        where = _layers_text(variant.layers)
        activations = {self._activation(k) for k in variant.layers}
        act = activations.pop() if len(activations) == 1 else "each activation"
        explain = {
            "derivative_of_preactivation": (
                f"the derivative of {act} was computed from z with the formula meant for a "
                f"({_formula_in(act, 'z')} instead of {_formula_in(act, 'a')}); the formula needs "
                f"the activation a = {act}(z): dz = da * {_formula_in(act, 'a')}."
            ),
            "derivative_of_error": (
                f"the derivative formula of {act} was applied to the error instead of the "
                f"activation, as in dz = {_formula_in(act, 'dh')} with dh = a - y. The error "
                f"multiplies the derivative: dz = dh * {_formula_in(act, 'a')}."
            ),
            "missing_activation_derivative": (
                f"dz was taken equal to dL/da: the factor f'(z) of {act} is missing. "
                f"dz = da * f'(z)."
            ),
        }[variant.code]
        if layer in variant.layers:
            return f"In {where}, {explain}"
        return (
            f"This error comes from a mistake in {where}, propagated back to layer {layer}: "
            f"{explain}"
        )

    def _transposed_message(self, path: str, name: str) -> str:
        if name == "dW":
            formula = {
                "numpy": "a_prev.T @ dz, shape (n_in, n_out)",
                "torch": "dz.T @ a_prev, shape (n_out, n_in), like nn.Linear's weight",
                "columns": "dz @ a_prev.T, shape (n_out, n_in)",
            }[self.c.name]
            return (
                f"{path} is the transpose of the right answer. In the {self.c.name!r} "
                f"convention dW = {formula}."
            )
        batch_shape = shape_text(self.c.data_shape("batch", "n"))
        return (
            f"{path} is the transpose of the right answer: in the {self.c.name!r} convention "
            f"it is {batch_shape}."
        )

    def _wrong_values_message(self, path: str, layer: int, name: str) -> str:
        axis = 1 if self.c.samples_are_columns else 0
        hint = {
            "z": f"z = {self.c.formula}.",
            "a": f"a = {self._activation(layer)}(z).",
            "dz": "dz = da * f'(z), with da from the layer above (or the loss).",
            "dW": {
                "numpy": "dW = a_prev.T @ dz.",
                "torch": "dW = dz.T @ a_prev.",
                "columns": "dW = dz @ a_prev.T.",
            }[self.c.name],
            "db": f"db = np.sum(dz, axis={axis}, keepdims=True).",
            "dx": {
                "numpy": "dx = dz @ W.T for a dense layer",
                "torch": "dx = dz @ W for a dense layer",
                "columns": "dx = W.T @ dz for a dense layer",
            }[self.c.name]
            + "; each layer's dx is the dL/da of the layer below.",
            "dgamma": f"dgamma = np.sum(dout * x_hat, axis={axis}), x_hat the normalised input.",
            "dbeta": f"dbeta = np.sum(dout, axis={axis}).",
        }[name]
        hint = _norm_hint(self.request.problem.layers[layer], name, axis) or hint
        return (
            f"{path} has the right shape but wrong values, and no common mistake explains "
            f"them. Check layer {layer}'s chain rule: {hint}"
        )

    def _activation(self, layer: int) -> str:
        name = self.request.problem.layers[layer].activation
        return "identity" if name == "linear" else name


def _norm_hint(layer, name: str, axis: int) -> str | None:
    """z and dx of a norm layer (CS231n's batchnorm and layernorm); None for other kinds."""
    if layer.kind == "batchnorm":
        if layer.settings.get("mode") == "eval":
            return {
                "z": "z = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.",
                "dx": "dx = dz * gamma / sqrt(running_var + eps): the running statistics are "
                "constants in eval mode.",
            }.get(name)
        bessel = layer.settings.get("variance") == "unbiased"
        return {
            "z": f"z = gamma * x_hat + beta, x_hat = (x - mean) / sqrt(var + eps), mean and var "
            f"over the batch (axis {axis}){', var divided by N - 1' if bessel else ''}.",
            "dx": "dx = gamma / std / N * (N * dz - sum(dz) - "
            f"{'N / (N - 1) * ' if bessel else ''}x_hat * sum(dz * x_hat)), sums over the "
            f"batch (axis {axis}), as CS231n's batchnorm_backward_alt.",
        }.get(name)
    if layer.kind == "layernorm":
        features = 1 - axis
        return {
            "z": "z = gamma * x_hat + beta, x_hat = (x - mean) / sqrt(var + eps), mean and "
            f"(biased) var over each sample's features (axis {features}).",
            "dx": "dx = (1 / std) / D * (D * g - sum(g) - x_hat * sum(g * x_hat)), g = dz * "
            f"gamma, sums over each sample's D features (axis {features}).",
        }.get(name)
    return None


def _formula_in(activation: str, symbol: str) -> str:
    return {
        "sigmoid": f"{symbol} * (1 - {symbol})",
        "tanh": f"1 - {symbol}**2",
    }.get(activation, f"f'({symbol})")


def _layers_text(layers: tuple[int, ...]) -> str:
    if len(layers) == 1:
        return f"layer {layers[0]}"
    names = [str(k) for k in sorted(layers)]
    return "layers " + ", ".join(names[:-1]) + " and " + names[-1]


def gradescope_results(report: Report) -> dict:
    """Issue 16 replaced this minimal results.json with service.grading_formats.render; kept
    only until the batch route (quotabatch) renders with it too, then to be deleted."""
    return {
        "score": report.correct,
        "output": f"{report.correct} of {report.checked} checked fields are correct.",
        "visibility": "visible",
        "tests": [
            {
                "name": result.field,
                "score": int(result.passed),
                "max_score": 1,
                "status": "passed" if result.passed else "failed",
                "output": result.message
                if result.passed
                else f"[{result.diagnosis}] {result.message}",
            }
            for result in report.results
        ],
    }
