"""The grader: one problem's reference pass, the submissions compared with it, and one walk
of the catalogue of mistaken passes that names each failed field's mistake.

A failed field waits (``Waiting``) until ``explain`` walks the catalogue: each mistaken
pass is compared with every field still waiting and freed before the next is computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from service.core import Gradients, compute_gradients
from service.core.budget import NO_DEADLINE, Deadline
from service.core.messages import Messages
from service.core.mistakes import Variant, variants
from service.core.network import forward
from service.core.shapes import shape_text
from service.core.submission import Submission, Tolerance

from .reference import field_from_reference, loss_from_reference
from .results import FIELD_ORDER, FieldResult, Report, Waiting, compare, diagnosed
from .shapes import align, shape_result

if TYPE_CHECKING:
    from schemas.gradients import GradientsRequest


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
            self.fwd = forward(request.problem, deadline)  # shared by the mistaken passes
        self.keep_dx = "dx" in request.include
        self.reference: Gradients = compute_gradients(
            request.problem, self.fwd, deadline, keep_dx=self.keep_dx
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
        source = variants(self.request.problem, self.fwd, self.deadline, keep_dx=self.keep_dx)
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

    def _from_reference(self, w: Waiting) -> FieldResult:
        """The mistakes found from the reference pass alone, for a field no pass explains."""
        if w.name == "loss":
            return loss_from_reference(self, w.result, w.submitted, w.expected)
        return field_from_reference(self, w)

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
            diagnosed(w.result, variant.code, message)
            return True
        wrong = self.value(variant.result, w.layer, w.name)
        key = (w.layer, w.name)
        if key not in differs:
            differs[key] = not self.tolerance.close(wrong, w.expected)
        if not differs[key] or not self.tolerance.close(w.submitted, wrong):
            return False
        w.result.mistake_layers = variant.layers
        message = self._variant_message(w.result.field, w.layer, w.name, variant)
        diagnosed(w.result, variant.code, message)
        return True

    def grade_loss(self, submitted: float) -> FieldResult:
        """The loss against the reference; a wrong one waits for ``explain``."""
        expected = self.reference.loss
        result = self._compare("loss", np.float64(submitted), np.float64(expected))
        if not result.passed:
            self._waiting.append(Waiting(result, -1, "loss", submitted, expected))
        return result

    def grade_field(self, layer: int, name: str, submitted: np.ndarray) -> FieldResult:
        path = f"layers.{layer}.{name}"
        expected = self.value(self.reference, layer, name)
        aligned = align(self, name, submitted, expected)
        if aligned is None:
            return shape_result(self, path, layer, name, submitted, expected)

        result = self._compare(path, aligned, expected, submitted.shape)
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

    # -- results and messages ---------------------------------------------------

    def _compare(self, path, submitted, expected, submitted_shape=None) -> FieldResult:
        return compare(path, submitted, expected, self.tolerance, self.reveal, submitted_shape)

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
