"""The autograder: grade a student's submission field by field and name each mistake.

Grading happens in the client's own space (their convention, layout and bias shapes),
because that is where the student made the mistake and where the message must speak.  The
values come from the core: the correct backward pass, and the catalogue of mistaken ones in
``service.core.mistakes``.

    grader.py       Grader: the reference pass, the comparisons, the walk of the catalogue
    results.py      FieldResult, Report, and comparing two arrays entry by entry
    shapes.py       which shapes are accepted, and what a wrong one means
    shapes_norms.py, shapes_conv.py   the shape mistakes inside a layer kind
    reference.py    the mistakes found from the reference pass alone
"""

from .grader import SCALE_CODES, Grader
from .results import FIELD_ORDER, VECTORS, FieldResult, Report

__all__ = ["FIELD_ORDER", "SCALE_CODES", "VECTORS", "FieldResult", "Grader", "Report"]
