"""The autograder: grade a student's submission field by field and name each mistake.

Grading happens in the client's own space (their convention, layout and bias
shapes), because that is where the student made the mistake and where the
message must speak.  The values come from the core: the correct backward
pass, and the catalogue of mistaken ones in ``service.core.mistakes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from service.core import Gradients, compute_gradients
from service.core.budget import NO_DEADLINE, Deadline
from service.core.formulas import fix
from service.core.messages import Messages
from service.core.mistakes import Variant, variants
from service.core.network import forward
from service.core.objective import l2_gradient_factor, loss_scale
from service.core.shapes import shape_text
from service.core.submission import Submission, Tolerance
from service.grading_shapes import shape_mistake

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
    #: which entries are wrong (None when the shapes differ: nothing was compared entry by
    #: entry): how many are outside the tolerance, of how many compared
    mismatched: int | None = None
    entries: int | None = None
    #: the index, in the submitted array's own shape, of the mismatched entry with the
    #: largest absolute error ([] for the loss); None when no entry is mismatched
    worst_index: list[int] | None = None
    #: every entry the same float64 as the expected one (False when the shapes differ)
    exact: bool = False
    #: with reveal, the submitted and the expected value at worst_index
    submitted_value: float | None = None
    expected_value: float | None = None
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


@dataclass
class Waiting:
    """A failed field whose mistake is not named yet: its result, completed in place once the
    catalogue has been walked (``Grader.explain``); the loss's layer is -1."""

    result: FieldResult
    layer: int
    name: str
    submitted: np.ndarray | float  # in the expected shape
    expected: np.ndarray | float


class Grader:
    """Grades submissions against one problem.  The mistaken passes are computed when a failed
    field needs them, one at a time, each compared with every field waiting for an
    explanation and freed before the next: at most one is alive beside the reference."""

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
        self.say = Messages(request.problem, self.c)
        self._waiting: list[Waiting] = []
        self._together = False

    # -- the client's view of a result ------------------------------------------

    def value(self, result: Gradients, layer: int, name: str) -> np.ndarray:
        return self.request.client_array(result.layers[layer], layer, name)

    def mistaken_passes(self) -> Iterator[Variant]:
        """The catalogue in plan order, each pass computed when asked for and not remembered
        (the previous one is no longer referenced here when the next is computed)."""
        source = variants(self.request.problem, self._forward, self.deadline, keep_dx=self.keep_dx)
        while True:
            self.deadline.check()
            with np.errstate(all="ignore"):
                variant = next(source, None)
            if variant is None:
                return
            yield variant
            del variant

    # -- grading --------------------------------------------------------------

    def grade(self, submission: Submission) -> Report:
        report = Report()
        if submission.loss is not None:
            report.results.append(self.grade_loss(submission.loss))
        for i, fields in enumerate(submission.layers):
            for name in FIELD_ORDER:
                if fields and name in fields:
                    report.results.append(self.grade_field(i, name, fields[name]))
        if not self._together:
            self.explain()
        return report

    @contextmanager
    def together(self) -> Iterator[None]:
        """Grade several submissions (a class: service.batch) with one walk of the catalogue:
        the reports graded inside the block are complete when it ends."""
        self._together = True
        try:
            yield
        except BaseException:
            self._waiting.clear()
            raise
        finally:
            self._together = False
        self.explain()

    def explain(self) -> None:
        """Name the mistake of every failed field waiting.  The catalogue is walked once, in
        plan order; each mistaken pass is compared with every field not yet explained, and
        the first that explains a field is its diagnosis, as if each field walked the
        catalogue alone.  The walk stops once every field is explained; the fields left get
        the mistakes found from the reference pass alone."""
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        passes = self.mistaken_passes()
        for variant in passes:
            differs: dict[tuple[int, str], bool] = {}  # a field's pass value is not the right one
            waiting = [w for w in waiting if not self._explained_by(variant, w, differs)]
            del variant  # freed before the next pass is computed
            if not waiting:
                break
        passes.close()
        for w in waiting:
            self._from_reference(w)

    def _explained_by(self, variant: Variant, w: Waiting, differs: dict) -> bool:
        """Whether this mistaken pass gives the submitted values (and not the right ones); if
        so, the field's result names it."""
        if w.name == "loss":
            wrong = variant.result.loss
            if self.tolerance.close(wrong, w.expected) or not self.tolerance.close(
                w.submitted, wrong
            ):
                return False
            if variant.code in SCALE_CODES:
                message = self.say.scale("loss", variant)
            else:
                message = self.say.variant("loss", -1, variant, "loss")
            self._diagnosed(w.result, variant.code, message)
            return True
        wrong = self.value(variant.result, w.layer, w.name)
        key = (w.layer, w.name)
        if key not in differs:
            differs[key] = not self.tolerance.close(wrong, w.expected)
        if not differs[key] or not self.tolerance.close(w.submitted, wrong):
            return False
        w.result.mistake_layers = variant.layers
        message = self._variant_message(w.result.field, w.layer, w.name, variant)
        self._diagnosed(w.result, variant.code, message)
        return True

    def _from_reference(self, w: Waiting) -> FieldResult:
        """The mistakes found from the reference pass alone, for a field no pass explains."""
        if w.name == "loss":
            return self._loss_from_reference(w.result, w.submitted, w.expected)
        return self._field_from_reference(w)

    def grade_loss(self, submitted: float) -> FieldResult:
        """The loss against the reference; a wrong one waits for ``explain``."""
        expected = self.reference.loss
        result = self._result("loss", np.float64(submitted), np.float64(expected))
        if not result.passed:
            self._waiting.append(Waiting(result, -1, "loss", submitted, expected))
        return result

    def _loss_from_reference(self, result: FieldResult, submitted, expected) -> FieldResult:
        k = submitted / expected if expected else None
        if k is not None and _recognisable(k) and self.tolerance.close(submitted, k * expected):
            message = self.say.scaled("loss", k, None, "loss", ())
            return self._diagnosed(result, "scaled_by_constant", message)
        return self._diagnosed(result, "wrong_values", self.say.wrong_loss(submitted, expected))

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
        self._waiting.append(Waiting(result, layer, name, aligned, expected))
        return result

    def _field_from_reference(self, w: Waiting) -> FieldResult:
        result, layer, name, aligned, expected = w.result, w.layer, w.name, w.submitted, w.expected
        path = result.field
        if name == "dW":
            which = self._wrong_input(layer, aligned, expected)
            if which is not None:
                message = self.say.wrong_input(path, layer, which)
                return self._diagnosed(result, "wrong_layer_input", message)
        if name == "db" and self._summed_over_units(layer, aligned, expected):
            message = self.say.wrong_axis(path, expected.shape)
            return self._diagnosed(result, "summed_over_wrong_axis", message)
        square = aligned.ndim == 2 and aligned.shape == aligned.T.shape
        if square and self.tolerance.close(aligned.T, expected):
            message = self.say.transposed(path, layer, name, expected.shape)
            return self._diagnosed(result, "transposed", message)
        k = self._scale_of(layer, name, aligned, expected)
        if k is not None:
            message = self.say.scaled(path, k, layer, name, expected.shape)
            return self._diagnosed(result, "scaled_by_constant", message)
        message = self.say.wrong_values(path, layer, name, expected.shape)
        return self._diagnosed(result, "wrong_values", message)

    # -- mistakes found from the reference pass alone ---------------------------------

    def _param_scale(self) -> float:
        """The factor on dW and db beyond dz: the 1/N with dz_scale "per_sample"."""
        problem = self.request.problem
        return loss_scale(problem) if problem.dz_scale == "per_sample" else 1.0

    def _l2_term(self, layer: int) -> np.ndarray | None:
        """l2's share of dW, in the client's layout (None without l2)."""
        problem = self.request.problem
        if not problem.l2 or problem.layers[layer].kind != "dense":
            return None
        term = l2_gradient_factor(problem) * problem.layers[layer].weights
        return self.request.to_client(term, self.request.layouts[layer]["dW"])

    def _wrong_input(self, layer: int, aligned, expected) -> str | None:
        """wrong_layer_input: dW = x.T @ dz with x another layer's activations (or the
        inputs) than this layer's own input; recomputed for each x of the right width."""
        problem = self.request.problem
        if problem.layers[layer].kind != "dense":
            return None
        dz = self.reference.layers[layer].dz
        n_in = problem.layers[layer].weights.shape[0]
        candidates = [("the inputs", problem.inputs)] if layer > 0 else []
        candidates += [
            (f"layer {j}'s activation", out)
            for j, out in enumerate(self._forward.outs)
            if j != layer - 1
        ]
        l2 = self._l2_term(layer)
        for which, x in candidates:
            if x.ndim != 2 or x.shape[1] != n_in:  # an image is no dense layer's input
                continue
            wrong = self.request.to_client(
                self._param_scale() * (x.T @ dz), self.request.layouts[layer]["dW"]
            )
            if l2 is not None:
                wrong = wrong + l2
            if not self.tolerance.close(wrong, expected) and self.tolerance.close(aligned, wrong):
                return which
        return None

    def _summed_over_units(self, layer: int, submitted, expected) -> bool:
        """summed_over_wrong_axis: db = np.sum(dz, axis=<the units>), one value a sample."""
        batch = self.request.problem.inputs.shape[0]
        if submitted.size != batch or submitted.ndim > 2 or max(submitted.shape) != batch:
            return False
        dz = self.value(self.reference, layer, "dz")
        wrong = self._param_scale() * dz.sum(axis=0 if self.c.samples_are_columns else 1)
        if submitted.shape == expected.shape and self.tolerance.close(
            wrong.reshape(expected.shape), expected
        ):
            return False
        return self.tolerance.close(submitted.reshape(-1), wrong)

    def _scale_of(self, layer: int, name: str, aligned, expected) -> float | None:
        """scaled_by_constant: the k for which the submission is k times the right values
        (l2's share of dW left out: a constant on the output's gradient does not scale it),
        or None.  Only a k a student plausibly multiplied by counts (a whole number or its
        inverse: a lost 2, a 1/N twice); 1.1 times the right values stays unexplained, and a
        field of one number, some multiple of anything, is not over-explained."""
        if name not in ("dz", "dx", "dW", "db", "dgamma", "dbeta"):
            return None
        l2 = self._l2_term(layer) if name == "dW" else None
        got, want = (aligned, expected) if l2 is None else (aligned - l2, expected - l2)
        want = np.asarray(want, dtype=np.float64).ravel()
        got = np.asarray(got, dtype=np.float64).ravel()
        norm = float(want @ want)
        if norm == 0.0 or not np.isfinite(norm):
            return None
        k = float(got @ want) / norm
        if not np.isfinite(k) or k == 0.0 or np.isclose(k, 1.0, rtol=self.tolerance.rtol):
            return None
        if not _recognisable(k):
            return None
        return k if self.tolerance.close(got, k * want) else None

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
        # a per-channel vector: (C,) and the layout's (1, C, 1, 1) or (1, 1, 1, C), as
        # CS231n's spatial batchnorm and groupnorm use one each
        per_channel = {(n,), (1, 1, 1, n) if self.c.channels_last else (1, n, 1, 1)}
        if (
            name in VECTORS
            and not self.strict_shapes
            and {submitted.shape, expected.shape} <= per_channel
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
            # shapes that differ are not compared entry by entry: which entry would be which?
            mismatched=None,
            entries=None,
            worst_index=None,
            exact=False,
        )
        got, want = shape_text(submitted.shape), shape_text(expected.shape)
        batch = self.request.problem.inputs.shape[0]
        n = expected.size
        per_sample = self.c.data_shape(batch, n)
        if name == "db" and submitted.shape == per_sample and batch > 1:
            message = self.say.not_reduced(path, submitted.shape, expected.shape)
            return self._diagnosed(result, "not_reduced_over_batch", message)
        if name == "db" and self._summed_over_units(layer, submitted, expected):
            message = self.say.wrong_axis(path, expected.shape)
            return self._diagnosed(result, "summed_over_wrong_axis", message)
        if name == "db" and not self.c.samples_are_columns and submitted.shape == (n, 1) and n > 1:
            message = self.say.column_bias(path, n, expected.shape)
            return self._diagnosed(result, "column_vector_shape", message)
        mistake = shape_mistake(self, layer, name, submitted, expected)
        if mistake is not None:
            message = mistake.explain(self, path, layer, submitted.shape, expected.shape)
            return self._diagnosed(result, mistake.code, message)
        if submitted.ndim == 2 and submitted.shape == expected.shape[::-1]:
            message = self.say.transposed(path, layer, name, expected.shape)
            return self._diagnosed(result, "transposed", message)
        message = f"{path} has shape {got}, expected {want}."
        if name == "db" and self.c.samples_are_columns and submitted.shape == (n,):
            message += self.say.flat_column_bias(n)
        else:
            if name == "db" and self.strict_shapes:
                message += " strict_shapes is on: only the exact shape of the problem's biases "
                message += "passes."
            message += fix(self.say.field_fix(layer, name, expected.shape))
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
        outside = ~self.tolerance.within(submitted, expected)
        passed = not outside.any()  # what Tolerance.close answers, entry by entry
        result = FieldResult(
            field=path,
            passed=passed,
            expected_shape=expected.shape,
            submitted_shape=submitted.shape if submitted_shape is None else submitted_shape,
            max_abs_error=float(error.max()),
            max_rel_error=relative,
            diagnosis=None,
            message="Correct." if passed else "",
            expected=(float(expected) if expected.ndim == 0 else expected) if self.reveal else None,
            mismatched=int(np.count_nonzero(outside)),
            entries=int(expected.size),
            exact=bool(np.array_equal(submitted, expected)),
        )
        if not passed:
            position = _worst(error, outside)
            # an accepted (n,) for (1, n) keeps its entries' order: the index is the sent one's
            index = np.unravel_index(position, result.submitted_shape)
            result.worst_index = [int(i) for i in index]
            if self.reveal:
                result.submitted_value = float(submitted.flat[position])
                result.expected_value = float(expected.flat[position])
        return result

    @staticmethod
    def _diagnosed(result: FieldResult, code: str, message: str) -> FieldResult:
        result.passed = False
        result.diagnosis = code
        result.message = message
        return result

    def _variant_message(self, path: str, layer: int, name: str, variant: Variant) -> str:
        if variant.code in SCALE_CODES:
            expected_shape = self.value(self.reference, layer, name).shape
            return self.say.scale(path, variant, layer, name, expected_shape)
        return self.say.variant(path, layer, variant, name)


SCALE_CODES = (
    "averaged_instead_of_summed",
    "summed_instead_of_averaged",
    "reduced_over_batch_only",
)


def _worst(error: np.ndarray, outside: np.ndarray) -> int:
    """The flat position of the largest error among the entries outside the tolerance (an
    error that is not a number, from an infinity in the answer, counts as the largest)."""
    ranked = np.where(outside, error, -1.0)
    ranked[np.isnan(ranked)] = np.inf
    return int(np.argmax(ranked))


def _recognisable(k: float) -> bool:
    """A constant a student plausibly multiplied by: a whole number, its inverse, or 0.5."""
    for value in (abs(k), 1 / abs(k)):
        if 2 <= round(value) <= 1_000_000 and np.isclose(value, round(value), rtol=1e-9):
            return True
    return False
