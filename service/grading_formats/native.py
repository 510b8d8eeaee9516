"""The service's own JSON answer: today's document, or with points, credit and visibility."""

from __future__ import annotations

from dataclasses import fields

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
                    mismatched=None,
                    entries=None,
                    worst_index=None,
                    exact=None,
                    submitted_value=None,
                    expected_value=None,
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
        """Score 0 and ``detail`` saying why; a broken submission's ``errors`` by path, a
        refused one's ``retry_after``.  /v1/check answers these as a 422 or a 429 in this
        format; a /v1/check/batch entry, which cannot, carries them."""
        document = {
            "passed": False,
            "score": 0.0,
            "checked": 0,
            "correct": 0,
            "results": [],
            "detail": broken.detail,
        }
        if broken.tag == "format_error" and broken.errors:
            document["errors"] = dict(broken.errors)
        if broken.retry_after is not None:
            document["retry_after"] = broken.retry_after
        return document, JSON


def _field_dict(result: FieldResult) -> dict:
    """A field's result as /v1/check answers it (what the grader keeps for partial credit,
    the layers its mistake was made in, is not shown)."""
    return {f.name: getattr(result, f.name) for f in fields(result) if f.name != "mistake_layers"}
