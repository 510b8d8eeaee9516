"""dgamma_not_reduced: a batchnorm's or layernorm's dgamma or dbeta not summed over the batch
(issue 13, item 4).

CS231n's students write ``dgamma = dout * x_hat`` (or ``dbeta = dout``) and forget the
``np.sum(..., axis=0)``: one row per sample ((N, D), (D, N) with samples as columns) where
gamma has one value per feature.  Recognised from the shape and the values: the submission
is the per-sample products of the reference pass, with the reduction's 1/N where the
client's dz_scale puts it (in dgamma with "per_sample") or without it.
"""

from __future__ import annotations

import numpy as np

from service.core.formulas import fix
from service.core.shapes import shape_text

from .reference import param_scale

#: the normalised input x_hat is the first thing both norms' forward caches
X_HAT = 0


def _per_sample_terms(grader, layer: int, name: str) -> np.ndarray:
    """dout * x_hat (dgamma) or dout (dbeta), one row per sample, canonical."""
    dz = grader.reference.layers[layer].dz
    return dz * grader.fwd.caches[layer][X_HAT] if name == "dgamma" else dz


def _matcher(name: str):
    def matches(grader, layer: int, submitted: np.ndarray, expected: np.ndarray) -> bool:
        batch = grader.request.problem.inputs.shape[0]
        if grader.reference.layers[layer].dz.ndim != 2:  # a spatial norm: not this mistake
            return False
        if batch < 2 or submitted.shape != grader.c.data_shape(batch, expected.size):
            return False
        terms = grader.request.convention.data(_per_sample_terms(grader, layer, name), back=True)
        return any(
            grader.tolerance.close(submitted, scale * terms)
            for scale in dict.fromkeys((param_scale(grader), 1.0))
        )

    return matches


def _explainer(name: str):
    term = "dz * x_hat" if name == "dgamma" else "dz"
    param = name[1:]

    def explain(grader, path: str, layer: int, got: tuple, want: tuple) -> str:
        f = grader.say.f
        axis = "column" if f.samples_are_columns else "row"
        keep = ", keepdims=True" if len(want) == 2 else ""
        statement = f"{name} = " + f.divided(f"np.sum({term}, axis={f.axis}{keep})", f.per_sample)
        return (
            f"{path} has one {axis} per sample (shape {shape_text(got)}): {term} was not summed "
            f"over the batch axis. {param} has one value per feature, applied to every sample, "
            f"so its gradient is the sum of every sample's {term} (axis {f.axis}), shape "
            f"{shape_text(want)}{', x_hat the normalised input' if name == 'dgamma' else ''}."
            f"{fix(statement)}"
        )

    return explain


#: service.grading.shapes.ShapeMistake's fields: (code, kind, field, matches, explain)
NORM_SHAPE_MISTAKES = tuple(
    ("dgamma_not_reduced", kind, name, _matcher(name), _explainer(name))
    for kind in ("batchnorm", "layernorm")
    for name in ("dgamma", "dbeta")
)
