"""What grading answers: one result per submitted field, and the report of a submission.

``compare`` is the one place a submitted array meets the expected one entry by entry: the
errors, which entries are outside the tolerance, the worst of them, and whether the two are
bit for bit the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.core.submission import Tolerance

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


def compare(
    path: str,
    submitted,
    expected,
    tolerance: Tolerance,
    reveal: bool,
    submitted_shape: tuple[int, ...] | None = None,
) -> FieldResult:
    """The field's result against the expected value (the same shape): passed or not, the
    errors, and for a failure which entries are wrong (at ``submitted_shape``'s indices)."""
    submitted = np.asarray(submitted, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    error = np.abs(submitted - expected)
    nonzero = expected != 0
    relative = float((error[nonzero] / np.abs(expected[nonzero])).max()) if nonzero.any() else None
    outside = ~tolerance.within(submitted, expected)
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
        expected=(float(expected) if expected.ndim == 0 else expected) if reveal else None,
        mismatched=int(np.count_nonzero(outside)),
        entries=int(expected.size),
        exact=bool(np.array_equal(submitted, expected)),
    )
    if not passed:
        position = _worst(error, outside)
        # an accepted (n,) for (1, n) keeps its entries' order: the index is the sent one's
        index = np.unravel_index(position, result.submitted_shape)
        result.worst_index = [int(i) for i in index]
        if reveal:
            result.submitted_value = float(submitted.flat[position])
            result.expected_value = float(expected.flat[position])
    return result


def diagnosed(result: FieldResult, code: str, message: str) -> FieldResult:
    result.passed = False
    result.diagnosis = code
    result.message = message
    return result


def _worst(error: np.ndarray, outside: np.ndarray) -> int:
    """The flat position of the largest error among the entries outside the tolerance (an
    error that is not a number, from an infinity in the answer, counts as the largest)."""
    ranked = np.where(outside, error, -1.0)
    ranked[np.isnan(ranked)] = np.inf
    return int(np.argmax(ranked))
