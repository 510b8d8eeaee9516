"""The service's own JSON answer: today's document, or with points, credit and visibility."""

from __future__ import annotations

from schemas import CheckResponseSchema
from service.core.grading_options import GradingOptions, UngradableSubmission
from service.grading import FieldResult, Report

from .scoring import WITHHELD, Scores

JSON = "application/json"
_CHECK_RESPONSE = CheckResponseSchema()


class NativeJson:
    @staticmethod
    def graded(report: Report, scores: Scores, options: GradingOptions, _time: float):
        if not options.detailed:
            return _CHECK_RESPONSE.dump(report), JSON
        results = []
        for s in scores.fields:
            result = _field_dict(s.result)
            if s.withheld(delays=False):
                result.update(
                    diagnosis=None,
                    message=WITHHELD,
                    max_abs_error=None,
                    max_rel_error=None,
                    expected=None,
                )
            result.update(
                points=s.points, max_points=s.max_points, credit=s.credit, visibility=s.visibility
            )
            results.append(result)
        document = {
            "passed": report.passed,
            "score": scores.fraction,
            "checked": report.checked,
            "correct": report.correct,
            "results": results,
            "points": scores.points,
            "max_points": scores.max_points,
            "credited_as_propagated": scores.propagated,
        }
        return _CHECK_RESPONSE.dump(document), JSON

    @staticmethod
    def ungradable(broken: UngradableSubmission, options: GradingOptions, _time: float):
        document = {
            "passed": False,
            "score": 0.0,
            "checked": 0,
            "correct": 0,
            "results": [],
            "format_errors": dict(broken.errors),
        }
        return _CHECK_RESPONSE.dump(document), JSON


def _field_dict(result: FieldResult) -> dict:
    names = (
        "field",
        "passed",
        "expected_shape",
        "submitted_shape",
        "max_abs_error",
        "max_rel_error",
        "diagnosis",
        "message",
        "expected",
    )
    return {name: getattr(result, name) for name in names}
