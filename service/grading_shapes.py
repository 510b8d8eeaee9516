"""Mistakes inside a layer kind that give a gradient of the wrong shape.

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

from service.grading_shapes_conv import CONV_SHAPE_MISTAKES
from service.grading_shapes_norms import NORM_SHAPE_MISTAKES

#: service.grading.Grader (not imported: the grader imports this module): the matchers read
#: its request, reference, forward pass, tolerance and messages
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
