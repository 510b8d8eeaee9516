"""Mistakes students make inside a layer kind's own formulas: batchnorm, dropout, conv, ...

The activation and loss mistakes of service.core.mistakes change how a layer turns dL/da
into dz; these change the layer itself.  Each is the kind as the student wrote it: a
``Kind`` whose backward (and, for a mistake in the statistics, whose forward) is the
student's formula, used in place of the right one for the layers the mistake is made in.
The autograder recomputes the passes with it (``service.core.mistakes.plan``), so a
mistake inside layer k names itself on every field it corrupts, as the others do.

A kind's mistakes live in one module of this package each (norms, dropout, conv) and
are listed in ``KIND_MISTAKES`` in the order the grader tries them: the most specific
first.  Only mistakes that keep every array's shape are recomputed; a gradient of the
wrong shape (a dgamma not summed over the batch, a dx that still has its padding) is
recognised from its shape by the grader (service.grading).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..layers.base import Kind
from ..problem import Layer, Problem

#: (the right kind, the layer) -> the kind as the student wrote it
Student = Callable[[Kind, Layer], Kind]
#: (problem, the layer k the mistake is in, the client's formulas) -> (the mistake in words,
#: the statement that fixes layer k or None when no one line of NumPy does)
Explain = Callable[[Problem, int, object], tuple[str, str | None]]


@dataclass(frozen=True)
class KindMistake:
    code: str
    #: the layer kind it is made in (service.core.layers.KINDS)
    kind: str
    student: Student
    explain: Explain
    #: whether a layer of that kind can have the mistake (e.g. train mode only)
    applies: Callable[[Layer], bool] = lambda layer: True
    #: the student's forward differs too: the pass is recomputed from that layer's forward
    changes_forward: bool = False
    #: linear in dL/da: the reduction's 1/N inside dL/da or on dz gives the same numbers
    linear: bool = True
    #: the data it is written for: "flat" (batch, n) rows only (its formulas and words are
    #: the 2-D course functions', so a spatial batchnorm or dropout on images is not tried),
    #: or "any"
    takes: str = "any"


# each kind's module builds its KindMistakes from the class above
from .conv import CONV_MISTAKES  # noqa: E402
from .dropout import DROPOUT_MISTAKES  # noqa: E402
from .norms import NORM_MISTAKES  # noqa: E402

#: every kind's mistakes, in the order the grader tries them
KIND_MISTAKES: tuple[KindMistake, ...] = (*NORM_MISTAKES, *DROPOUT_MISTAKES, *CONV_MISTAKES)

CODES = tuple(dict.fromkeys(m.code for m in KIND_MISTAKES))

__all__ = ["CODES", "KIND_MISTAKES", "KindMistake"]
