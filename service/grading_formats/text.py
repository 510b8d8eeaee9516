"""How a scored field reads in plain text, and numbers as graders show them."""

from __future__ import annotations

from service.core.grading_options import GradingOptions
from service.core.shapes import shape_text
from service.grading import FieldResult

from .scoring import Scored


def propagated_note(options: GradingOptions) -> str:
    return (
        f"Wrong only because of a mistake made in a later layer: credited "
        f"{options.propagated_credit:g} of its points."
    )


def plain_message(s: Scored, options: GradingOptions) -> str:
    if s.result.passed:
        return s.result.message
    text = f"[{s.result.diagnosis}] {s.result.message}"
    mismatch = mismatch_text(s.result)
    if mismatch:
        text += f" {mismatch}"
    return f"{text} {propagated_note(options)}" if s.credit == "propagated" else text


def mismatch_text(result: FieldResult) -> str:
    """Which entries of a failed field are wrong, for one look: "3 of 12 entries differ;
    worst at [1, 2]: 0.5 submitted, 0.25 expected." (the values only with reveal).  '' for
    a passing field and for shapes that differ (nothing was compared entry by entry); for
    the loss, one number, only the revealed values."""
    if result.passed or result.mismatched is None or result.worst_index is None:
        return ""
    values = ""
    if result.submitted_value is not None and result.expected_value is not None:
        values = f"{result.submitted_value:.10g} submitted, {result.expected_value:.10g} expected"
    if not result.worst_index:  # the loss
        return f"The loss: {values}." if values else ""
    verb = "differs" if result.mismatched == 1 else "differ"
    text = f"{result.mismatched:,} of {result.entries:,} entries {verb}; worst at "
    text += f"[{', '.join(map(str, result.worst_index))}]"
    return f"{text}: {values}." if values else f"{text}."


def describe(path: str) -> str:
    if path == "loss":
        return "the loss"
    _, layer, name = path.split(".")
    return f"{name} of layer {layer}"


def measures(result: FieldResult) -> str:
    text = f"shape {shape_text(result.submitted_shape)}"
    if result.submitted_shape != result.expected_shape:
        text += f", expected {shape_text(result.expected_shape)}"
    if result.max_abs_error is not None:
        text += f"; max abs error {result.max_abs_error:.3g}"
    if result.max_rel_error is not None:
        text += f", max rel error {result.max_rel_error:.3g}"
    return text


def seconds(time: float) -> int:
    """Whole seconds, as Gradescope shows them: the same request answers the same bytes
    (in process and through a server, alone and in a batch) unless it took a second more."""
    return round(time)


def number(value: float) -> int | float:
    """Whole points as integers (5, not 5.0), as graders show them."""
    return int(value) if float(value).is_integer() else round(value, 6)


def points_text(value: float) -> str:
    return f"{number(value):g}"
