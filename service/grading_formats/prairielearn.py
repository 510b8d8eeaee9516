"""PrairieLearn's external grader results.json: a 0-1 score, tests with points."""

from __future__ import annotations

from service.core.grading_options import GradingOptions, UngradableSubmission
from service.grading import Report

from .native import JSON
from .scoring import WITHHELD, Scores
from .text import describe, measures, number, plain_message, points_text


class PrairieLearn:
    @staticmethod
    def graded(report: Report, scores: Scores, options: GradingOptions, _time: float):
        tests = []
        for s in scores.fields:
            withheld = s.withheld(delays=False)
            tests.append(
                {
                    "name": s.result.field,
                    "description": describe(s.result.field),
                    "points": number(s.points),
                    "max_points": number(s.max_points),
                    "message": WITHHELD if withheld else plain_message(s, options),
                    "output": "" if withheld else measures(s.result),
                }
            )
        summary = (
            f"{report.correct} of {report.checked} checked fields are correct: "
            f"{points_text(scores.points)} of {points_text(scores.max_points)} points."
        )
        document = {
            "gradable": True,
            "score": scores.fraction,
            "message": summary,
            "output": "\n".join(f"{t['name']}: {t['points']:g}/{t['max_points']:g}" for t in tests),
            "format_errors": {},
            "tests": tests,
        }
        return document, JSON

    @staticmethod
    def ungradable(broken: UngradableSubmission, options: GradingOptions, _time: float):
        errors = {path: " ".join(messages) for path, messages in broken.errors.items()}
        lines = [f"{path}: {message}" for path, message in errors.items()]
        if broken.omitted:
            lines.append(f"and {broken.omitted:,} more")
        document = {
            "gradable": False,
            "score": 0.0,
            "message": broken.summary,
            "output": "\n".join(lines),
            "format_errors": errors,
            "tests": [],
        }
        return document, JSON
