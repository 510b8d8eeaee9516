"""JUnit XML, which CodeGrade, GitHub Actions and most CI read: a testcase per field."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from service.core.grading_options import GradingOptions, UngradableSubmission
from service.grading import Report

from .scoring import WITHHELD, Scores, layer_of, score
from .text import measures, plain_message, seconds

XML = "application/xml"
SUITE = "gradient-check"


class JUnit:
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
        message = WITHHELD if withheld else plain_message(s, options)
        failure = ET.SubElement(
            case,
            "failure",
            message=_xml_text(message),
            type="hidden" if withheld else s.result.diagnosis or "wrong",
        )
        failure.text = _xml_text(message if withheld else f"{message}\n{measures(s.result)}")
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
        time=str(seconds(time)),
    )


def _classname(path: str) -> str:
    layer = layer_of(path)
    return SUITE if layer is None else f"{SUITE}.layer{layer}"


#: What XML 1.0 cannot hold, even escaped: the C0 controls but tab, newline and return.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _xml(element: ET.Element) -> str:
    return ET.tostring(element, encoding="unicode", xml_declaration=True) + "\n"
