"""A conv layer's dx that still has its padding (issue 15): the one conv mistake of shape.

The course loops accumulate dx into the padded input's gradient (CS231n's ``dx_pad``, Ng's
``da_prev_pad``) and crop the border at the end; a student who forgets the crop hands back
(N, C, H + 2 ph, W + 2 pw) in NCHW, (N, H + 2 ph, W + 2 pw, C) in NHWC, whose interior is
the right dx.  The grader (service.grading) tries it before "wrong_shape".

service.grading.shapes makes the ShapeMistake record of each entry (this module does not
import it: shapes imports this one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.core.formulas import fix
from service.core.shapes import shape_text

#: service.grading.Grader (not imported: the grader imports this module, through
#: service.grading.shapes): the matcher reads its request, tolerance and convention
Grader = Any


def _pad(grader: Grader, layer: int) -> tuple[int, int]:
    ph, pw = grader.request.problem.layers[layer].settings["pad"]
    return ph, pw


def _interior(grader: Grader, layer: int) -> tuple:
    """The index that crops the padding off a dx in the client's layout."""
    ph, pw = _pad(grader, layer)
    rows, cols = slice(ph, -ph or None), slice(pw, -pw or None)
    if grader.c.channels_last:
        return (slice(None), rows, cols, slice(None))
    return (slice(None), slice(None), rows, cols)


def padded_shape(grader: Grader, layer: int, expected: tuple) -> tuple:
    ph, pw = _pad(grader, layer)
    if grader.c.channels_last:
        n, h, w, c = expected
        return (n, h + 2 * ph, w + 2 * pw, c)
    n, c, h, w = expected
    return (n, c, h + 2 * ph, w + 2 * pw)


def still_padded(grader: Grader, layer: int, submitted: np.ndarray, expected: np.ndarray) -> bool:
    if expected.ndim != 4 or _pad(grader, layer) == (0, 0):
        return False
    if submitted.shape != padded_shape(grader, layer, expected.shape):
        return False
    return bool(grader.tolerance.close(submitted[_interior(grader, layer)], expected))


def crop_statement(grader: Grader, layer: int) -> str:
    """`dx = dx_pad[...]` with the pad written out: `1:-1` for a pad of 1, `:` for none."""
    ph, pw = _pad(grader, layer)
    rows, cols = (f"{p}:-{p}" if p else ":" for p in (ph, pw))
    index = f":, {rows}, {cols}, :" if grader.c.channels_last else f":, :, {rows}, {cols}"
    return f"dx = dx_pad[{index}]"


def explain_padded(grader: Grader, path: str, layer: int, got: tuple, want: tuple) -> str:
    ph, pw = _pad(grader, layer)
    border = f"{ph} row(s) and {pw} column(s)" if ph != pw else f"{ph}"
    ng = "da_prev_pad[pad:-pad, pad:-pad, :] for each sample" if grader.c.channels_last else ""
    return (
        f"{path} has shape {shape_text(got)}, the padded input's: it still has the zero "
        f"padding's border of {border} on every side, and its interior is the right dx "
        f"{shape_text(want)}. The padding is not part of the layer's input, so its gradient is "
        f"dropped: crop it{' (Andrew Ng: ' + ng + ')' if ng else ''}."
        f"{fix(crop_statement(grader, layer))}"
    )


#: (code, kind, field, matches, explain): service.grading.shapes.ShapeMistake's fields
CONV_SHAPE_MISTAKES = (("dx_still_padded", "conv2d", "dx", still_padded, explain_padded),)
