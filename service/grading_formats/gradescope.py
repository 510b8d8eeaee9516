"""Gradescope's results.json (its autograder specification), in Markdown."""

from __future__ import annotations

import re

from service.core.grading_options import GradingOptions, UngradableSubmission
from service.grading import Report

from .native import JSON
from .scoring import WITHHELD, Scores
from .text import mismatch_text, number, points_text, propagated_note, seconds


class Gradescope:
    @staticmethod
    def graded(report: Report, scores: Scores, options: GradingOptions, time: float):
        tests = []
        for s in scores.fields:
            result = s.result
            if s.withheld(delays=True):
                output = WITHHELD
            elif result.passed:
                output = _markdown(result.message)
            else:
                output = f"[{result.diagnosis}] {_markdown(result.message)}"
                mismatch = mismatch_text(result)
                if mismatch:
                    output += f"\n\n{mismatch}"
                if s.credit == "propagated":
                    output += f"\n\n{propagated_note(options)}"
            tests.append(
                {
                    "name": result.field,
                    "number": s.number,
                    "score": number(s.points),
                    "max_score": number(s.max_points),
                    "status": "passed" if result.passed else "failed",
                    "output": output,
                    "output_format": "md",
                    "tags": [] if result.passed or s.withheld(True) else [result.diagnosis],
                    "visibility": s.visibility,
                }
            )
        document = {
            "score": number(scores.points),
            "execution_time": seconds(time),
            "output": _summary_md(report, scores, options),
            "output_format": "md",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "extra_data": _extra(report, scores),
            "tests": tests,
        }
        return document, JSON

    @staticmethod
    def ungradable(broken: UngradableSubmission, options: GradingOptions, time: float):
        listing = _problems_md(broken)
        document = {
            "score": 0,
            "execution_time": seconds(time),
            "output": f"**{_markdown(broken.summary)}** (score 0)\n\n{listing}",
            "output_format": "md",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "extra_data": {"gradable": False, "format_errors": dict(broken.errors)},
            "tests": [
                {
                    "name": broken.test_name,
                    "score": 0,
                    "max_score": 0,
                    "status": "failed",
                    "output": listing,
                    "output_format": "md",
                    "tags": [broken.tag],
                    "visibility": "visible",
                }
            ],
        }
        return document, JSON


def _summary_md(report: Report, scores: Scores, options: GradingOptions) -> str:
    text = (
        f"**{report.correct} of {report.checked}** checked fields are correct: "
        f"{points_text(scores.points)} of {points_text(scores.max_points)} points."
    )
    if scores.propagated:
        text += f"\n\n{propagated_note(options)} Credited so: " + ", ".join(
            f"`{name}`" for name in scores.propagated
        )
    return text


def _extra(report: Report, scores: Scores) -> dict:
    return {
        "checked": report.checked,
        "correct": report.correct,
        "max_points": number(scores.max_points),
        "credited_as_propagated": scores.propagated,
    }


def _problems_md(broken: UngradableSubmission) -> str:
    lines = [
        f"- `{path}`: {_markdown(' '.join(messages))}" for path, messages in broken.errors.items()
    ]
    if broken.omitted:
        lines.append(f"- and {broken.omitted:,} more")
    return "\n".join(lines)


#: The only markup a message could start by accident: an HTML tag.  The messages are
#: written to read the same as Markdown (operators spaced, code in backticks).
_TAG = re.compile(r"<(?=[A-Za-z/!?])")


def _markdown(text: str) -> str:
    return _TAG.sub("&lt;", text)
