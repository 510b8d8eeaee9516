"""Shapes: which submitted shapes stand for the expected one, and what a wrong shape means.

A db not summed over the batch, summed over the units, or a column; then the mistakes inside
a layer kind that give a gradient of the wrong shape.

A dgamma not summed over the batch has one row per sample; a conv layer's dx that still
has its padding is (N, C, H + 2 pad, W + 2 pad).  No recomputed pass is needed: the grader
(service.grading) recognises them from the submitted array's shape and values, in the
client's own layout, before it falls back to "wrong_shape".  The mistakes that keep the
shapes are recomputed passes instead (service.core.kind_mistakes).

Each kind's shape mistakes live next to its value mistakes' words; they are listed here
in the order the grader tries them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core.formulas import fix
from service.core.shapes import shape_text

from .reference import summed_over_units
from .results import VECTORS, FieldResult, diagnosed
from .shapes_conv import CONV_SHAPE_MISTAKES
from .shapes_norms import NORM_SHAPE_MISTAKES

#: service.grading.grader.Grader (not imported: the grader imports this module): the
#: matchers read its request, reference, forward pass, tolerance and messages
Grader = Any


@dataclass(frozen=True)
class ShapeMistake:
    code: str
    #: the layer kind and the field it is made in
    kind: str
    field: str
    #: (grader, layer, submitted, expected) -> whether the submission is this mistake;
    #: both arrays in the client's layout, as submitted and as the answer would be
    matches: Callable[[Grader, int, np.ndarray, np.ndarray], bool]
    #: (grader, path, layer, submitted shape, expected shape) -> the message, fix included
    explain: Callable[[Grader, str, int, tuple, tuple], str]


#: every kind's shape mistakes, in the order the grader tries them (each kind's module lists
#: its own as (code, kind, field, matches, explain), and imports nothing of this one)
SHAPE_MISTAKES: tuple[ShapeMistake, ...] = tuple(
    ShapeMistake(*mistake) for mistake in (*NORM_SHAPE_MISTAKES, *CONV_SHAPE_MISTAKES)
)


def shape_mistake(
    grader: Grader, layer: int, name: str, submitted: np.ndarray, expected: np.ndarray
) -> ShapeMistake | None:
    """The first shape mistake of this layer's kind that explains the submission, or None."""
    kind = grader.request.problem.layers[layer].kind
    for mistake in SHAPE_MISTAKES:
        if mistake.kind == kind and mistake.field == name:
            with np.errstate(all="ignore"):
                if mistake.matches(grader, layer, submitted, expected):
                    return mistake
    return None


def align(
    grader: Grader, name: str, submitted: np.ndarray, expected: np.ndarray
) -> np.ndarray | None:
    """The submission in the expected shape, if its shape is acceptable; else None."""
    if submitted.shape == expected.shape:
        return submitted
    n = expected.size
    interchangeable = {(n,), (1, n)}
    if (
        name in VECTORS
        and not grader.strict_shapes
        and not grader.c.samples_are_columns
        and {submitted.shape, expected.shape} <= interchangeable
    ):
        return submitted.reshape(expected.shape)
    # a per-channel vector: (C,) and the layout's (1, C, 1, 1) or (1, 1, 1, C), as
    # CS231n's spatial batchnorm and groupnorm use one each
    per_channel = {(n,), (1, 1, 1, n) if grader.c.channels_last else (1, n, 1, 1)}
    if (
        name in VECTORS
        and not grader.strict_shapes
        and {submitted.shape, expected.shape} <= per_channel
    ):
        return submitted.reshape(expected.shape)
    return None


def shape_result(grader: Grader, path, layer, name, submitted, expected) -> FieldResult:
    """A field whose shape is not the expected one: the shape mistake that explains it."""
    result = FieldResult(
        field=path,
        passed=False,
        expected_shape=expected.shape,
        submitted_shape=submitted.shape,
        max_abs_error=None,
        max_rel_error=None,
        diagnosis=None,
        message="",
        expected=expected if grader.reveal else None,
        # shapes that differ are not compared entry by entry: which entry would be which?
        mismatched=None,
        entries=None,
        worst_index=None,
        exact=False,
    )
    got, want = shape_text(submitted.shape), shape_text(expected.shape)
    batch = grader.request.problem.inputs.shape[0]
    n = expected.size
    per_sample = grader.c.data_shape(batch, n)
    if name == "db" and submitted.shape == per_sample and batch > 1:
        message = grader.say.not_reduced(path, submitted.shape, expected.shape)
        return diagnosed(result, "not_reduced_over_batch", message)
    if name == "db" and summed_over_units(grader, layer, submitted, expected):
        message = grader.say.wrong_axis(path, expected.shape)
        return diagnosed(result, "summed_over_wrong_axis", message)
    if name == "db" and not grader.c.samples_are_columns and submitted.shape == (n, 1) and n > 1:
        message = grader.say.column_bias(path, n, expected.shape)
        return diagnosed(result, "column_vector_shape", message)
    mistake = shape_mistake(grader, layer, name, submitted, expected)
    if mistake is not None:
        message = mistake.explain(grader, path, layer, submitted.shape, expected.shape)
        return diagnosed(result, mistake.code, message)
    if submitted.ndim == 2 and submitted.shape == expected.shape[::-1]:
        message = grader.say.transposed(path, layer, name, expected.shape)
        return diagnosed(result, "transposed", message)
    message = f"{path} has shape {got}, expected {want}."
    if name == "db" and grader.c.samples_are_columns and submitted.shape == (n,):
        message += grader.say.flat_column_bias(n)
    else:
        if name == "db" and grader.strict_shapes:
            message += " strict_shapes is on: only the exact shape of the problem's biases "
            message += "passes."
        message += fix(grader.say.field_fix(layer, name, expected.shape))
    return diagnosed(result, "wrong_shape", message)
