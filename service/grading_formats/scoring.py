"""Scoring a report: each field is worth its points, earns them when it passes, and with
partial credit "propagated" earns a fraction when it is wrong only because of a mistake made
in a later layer; a field whose visibility withholds it still counts."""

from __future__ import annotations

from dataclasses import dataclass

from service.core.grading_options import DELAYED, GradingOptions
from service.grading import FieldResult, Report

#: The text that stands for a withheld message.
WITHHELD = "Hidden: this field counts in the score; its result is not shown."


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
        layer = layer_of(result.field)
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


def layer_of(path: str) -> int | None:
    return int(path.split(".")[1]) if path.startswith("layers.") else None


def _propagated(result: FieldResult, layer: int | None) -> bool:
    """Wrong only through a mistake made in another (a later) layer: the grader matched it
    with a mistaken pass whose mistake is in layers that do not include this one."""
    layers = result.mistake_layers
    return bool(layers) and layer is not None and layer not in layers
