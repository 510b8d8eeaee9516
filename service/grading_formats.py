"""A graded report written as the document a grader reads: this service's JSON, Gradescope's
results.json, PrairieLearn's results.json, or JUnit XML.

One entry point, ``render(report, options)``, for /v1/check and every entry of a batch.
Scoring lives here too, since every format shows it: each field is worth its points
(``options.points``), earns them when it passes, and with partial credit "propagated" earns
a fraction when it is wrong only because of a mistake made in a later layer.  A field whose
visibility withholds it still counts, but its message never reaches student-facing text.
A submission that could not be read (UngradableSubmission) is a grade of 0 that says why.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from schemas import CheckResponseSchema
from service.core.grading_options import DELAYED, GradingOptions, UngradableSubmission
from service.core.shapes import shape_text
from service.grading import FieldResult, Report

JSON, XML = "application/json", "application/xml"
#: The text that stands for a withheld message.
WITHHELD = "Hidden: this field counts in the score; its result is not shown."
SUITE = "gradient-check"

_CHECK_RESPONSE = CheckResponseSchema()


@dataclass(frozen=True)
class Scored:
    """One checked field with its points, and what a student may be shown of it."""

    result: FieldResult
    #: "<layer + 1>.<k>" (Gradescope's test number); the loss is "0.1"
    number: str
    max_points: float
    points: float
    credit: str  # full, propagated or none
    visibility: str

    def withheld(self, delays: bool) -> bool:
        """Whether its message is kept from the student: hidden always, and after_due_date or
        after_published where the format cannot delay it (``delays`` False)."""
        return self.visibility == "hidden" or (not delays and self.visibility in DELAYED)


@dataclass(frozen=True)
class Scores:
    fields: list[Scored]
    points: float
    max_points: float

    @property
    def fraction(self) -> float:
        return self.points / self.max_points if self.max_points else 1.0

    @property
    def propagated(self) -> list[str]:
        return [s.result.field for s in self.fields if s.credit == "propagated"]


def score(report: Report, options: GradingOptions) -> Scores:
    scored, per_layer = [], {}
    for result in report.results:
        layer = _layer(result.field)
        if layer is None:
            number = "0.1"
        else:
            per_layer[layer] = per_layer.get(layer, 0) + 1
            number = f"{layer + 1}.{per_layer[layer]}"
        worth = float(options.points_for(result.field))
        if result.passed:
            credit, earned = "full", worth
        elif _propagated(result, layer) and options.partial_credit == "propagated":
            credit, earned = "propagated", worth * options.propagated_credit
        else:
            credit, earned = "none", 0.0
        visibility = options.visibility_for(result.field)
        scored.append(Scored(result, number, worth, earned, credit, visibility))
    return Scores(scored, sum(s.points for s in scored), sum(s.max_points for s in scored))


def _layer(path: str) -> int | None:
    return int(path.split(".")[1]) if path.startswith("layers.") else None


def _propagated(result: FieldResult, layer: int | None) -> bool:
    """Wrong only through a mistake made in another (a later) layer: the grader matched it
    with a mistaken pass whose mistake is in layers that do not include this one."""
    layers = result.mistake_layers
    return bool(layers) and layer is not None and layer not in layers


def render(
    report: Report | UngradableSubmission,
    options: GradingOptions,
    execution_time: float = 0.0,
) -> tuple[dict | str, str]:
    """The answer in ``options.format``: (a JSON document, or XML text; its media type)."""
    writer = _WRITERS[options.format]
    if isinstance(report, UngradableSubmission):
        return writer.ungradable(report, options, execution_time)
    return writer.graded(report, score(report, options), options, execution_time)


# -- the service's own JSON ------------------------------------------------------------------


class _Json:
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


# -- Gradescope ------------------------------------------------------------------------------


class _Gradescope:
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
                if s.credit == "propagated":
                    output += f"\n\n{_propagated_note(options)}"
            tests.append(
                {
                    "name": result.field,
                    "number": s.number,
                    "score": _number(s.points),
                    "max_score": _number(s.max_points),
                    "status": "passed" if result.passed else "failed",
                    "output": output,
                    "output_format": "md",
                    "tags": [] if result.passed or s.withheld(True) else [result.diagnosis],
                    "visibility": s.visibility,
                }
            )
        document = {
            "score": _number(scores.points),
            "execution_time": _seconds(time),
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
            "execution_time": _seconds(time),
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
        f"{_points(scores.points)} of {_points(scores.max_points)} points."
    )
    if scores.propagated:
        text += f"\n\n{_propagated_note(options)} Credited so: " + ", ".join(
            f"`{name}`" for name in scores.propagated
        )
    return text


def _propagated_note(options: GradingOptions) -> str:
    return (
        f"Wrong only because of a mistake made in a later layer: credited "
        f"{options.propagated_credit:g} of its points."
    )


def _extra(report: Report, scores: Scores) -> dict:
    return {
        "checked": report.checked,
        "correct": report.correct,
        "max_points": _number(scores.max_points),
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


# -- PrairieLearn ----------------------------------------------------------------------------


class _PrairieLearn:
    @staticmethod
    def graded(report: Report, scores: Scores, options: GradingOptions, _time: float):
        tests = []
        for s in scores.fields:
            withheld = s.withheld(delays=False)
            tests.append(
                {
                    "name": s.result.field,
                    "description": _describe(s.result.field),
                    "points": _number(s.points),
                    "max_points": _number(s.max_points),
                    "message": WITHHELD if withheld else _plain_message(s, options),
                    "output": "" if withheld else _measures(s.result),
                }
            )
        summary = (
            f"{report.correct} of {report.checked} checked fields are correct: "
            f"{_points(scores.points)} of {_points(scores.max_points)} points."
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


def _plain_message(s: Scored, options: GradingOptions) -> str:
    if s.result.passed:
        return s.result.message
    text = f"[{s.result.diagnosis}] {s.result.message}"
    return f"{text} {_propagated_note(options)}" if s.credit == "propagated" else text


def _describe(path: str) -> str:
    if path == "loss":
        return "the loss"
    _, layer, name = path.split(".")
    return f"{name} of layer {layer}"


def _measures(result: FieldResult) -> str:
    text = f"shape {shape_text(result.submitted_shape)}"
    if result.submitted_shape != result.expected_shape:
        text += f", expected {shape_text(result.expected_shape)}"
    if result.max_abs_error is not None:
        text += f"; max abs error {result.max_abs_error:.3g}"
    if result.max_rel_error is not None:
        text += f", max rel error {result.max_rel_error:.3g}"
    return text


# -- JUnit XML -------------------------------------------------------------------------------


class _JUnit:
    @staticmethod
    def graded(report: Report, scores: Scores, options: GradingOptions, time: float):
        return _xml(_graded_suite(report, scores, options, time)), XML

    @staticmethod
    def ungradable(broken: UngradableSubmission, options: GradingOptions, time: float):
        return _xml(_ungradable_suite(broken, time)), XML


def junit_testsuites(
    entries: list[tuple[str, Report | UngradableSubmission, float]], options: GradingOptions
) -> str:
    """One JUnit document for a class: a ``testsuite`` per (name, report, seconds), named
    after the student, inside ``testsuites`` (what /v1/check/batch answers for junit)."""
    suites = ET.Element("testsuites", name=SUITE)
    for name, report, time in entries:
        if isinstance(report, UngradableSubmission):
            suite = _ungradable_suite(report, time)
        else:
            suite = _graded_suite(report, score(report, options), options, time)
        suite.set("name", _xml_text(name))
        suites.append(suite)
    suites.set("tests", str(sum(int(s.get("tests")) for s in suites)))
    suites.set("failures", str(sum(int(s.get("failures")) for s in suites)))
    return _xml(suites)


def _graded_suite(report: Report, scores: Scores, options: GradingOptions, time: float):
    suite = _suite(report.checked, report.checked - report.correct, time)
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("score", scores.fraction),
        ("points", scores.points),
        ("max_points", scores.max_points),
    ):
        ET.SubElement(properties, "property", name=name, value=f"{value:g}")
    for s in scores.fields:
        case = ET.SubElement(
            suite, "testcase", name=s.result.field, classname=_classname(s.result.field)
        )
        case.set("time", "0")
        if s.result.passed:
            continue
        withheld = s.withheld(delays=False)
        message = WITHHELD if withheld else _plain_message(s, options)
        failure = ET.SubElement(
            case,
            "failure",
            message=_xml_text(message),
            type="hidden" if withheld else s.result.diagnosis or "wrong",
        )
        failure.text = _xml_text(message if withheld else f"{message}\n{_measures(s.result)}")
    return suite


def _ungradable_suite(broken: UngradableSubmission, time: float) -> ET.Element:
    suite = _suite(1, 1, time)
    case = ET.SubElement(suite, "testcase", name=_xml_text(broken.test_name), classname=SUITE)
    lines = [f"{path}: {' '.join(messages)}" for path, messages in broken.errors.items()]
    if broken.omitted:
        lines.append(f"and {broken.omitted:,} more")
    failure = ET.SubElement(
        case,
        "failure",
        message=_xml_text(f"{broken.summary} {lines[0]}"),
        type=broken.tag,
    )
    failure.text = _xml_text("\n".join(lines))
    return suite


def _suite(tests: int, failures: int, time: float) -> ET.Element:
    return ET.Element(
        "testsuite",
        name=SUITE,
        tests=str(tests),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=str(_seconds(time)),
    )


def _classname(path: str) -> str:
    layer = _layer(path)
    return SUITE if layer is None else f"{SUITE}.layer{layer}"


#: What XML 1.0 cannot hold, even escaped: the C0 controls but tab, newline and return.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _xml(element: ET.Element) -> str:
    return ET.tostring(element, encoding="unicode", xml_declaration=True) + "\n"


# -- numbers ---------------------------------------------------------------------------------


def _seconds(time: float) -> int:
    """Whole seconds, as Gradescope shows them: the same request answers the same bytes
    (in process and through a server, alone and in a batch) unless it took a second more."""
    return round(time)


def _number(value: float) -> int | float:
    """Whole points as integers (5, not 5.0), as graders show them."""
    return int(value) if float(value).is_integer() else round(value, 6)


def _points(value: float) -> str:
    return f"{_number(value):g}"


_WRITERS = {
    "json": _Json,
    "gradescope": _Gradescope,
    "prairielearn": _PrairieLearn,
    "junit": _JUnit,
}
