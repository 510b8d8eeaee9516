"""How a message writes an array's shape, the way NumPy prints it: (3,) and (4, 1).

Here, in the core, because both the schemas (refusing a request) and the grader
(explaining a submission) speak of shapes, and neither should import the other.
"""

from __future__ import annotations

from collections.abc import Iterable


def shape_text(shape: Iterable[int]) -> str:
    """(3,) and (4, 1), the way NumPy prints shapes."""
    shape = tuple(shape)
    return f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"
