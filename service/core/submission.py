"""What a student submits to /v1/check, how it is compared, and the diagnoses a field may get.

The vocabulary shared by the check schema (which builds a Submission and a
Tolerance from the request, and documents DIAGNOSES as an enum) and the grader
(service.grading, which fills them in): here, in the core, so the schemas never
import the grader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Every code a failed field may get (the OpenAPI enum of ``diagnosis``).  The grader tries
#: them most specific first: shapes (not_reduced_over_batch, summed_over_wrong_axis,
#: column_vector_shape, the layer kinds' shape mistakes, transposed, wrong_shape); then, for
#: values, the catalogue of mistaken passes in service.core.mistakes.plan's order (sign_flipped,
#: the scale mistakes, the labels and svm mistakes, the chain-rule mistakes,
#: missing_weights_in_chain, the mistakes inside a layer kind), then
#: wrong_layer_input, summed_over_wrong_axis, transposed, scaled_by_constant, wrong_values.
DIAGNOSES = (
    "not_reduced_over_batch",
    "averaged_instead_of_summed",
    "summed_instead_of_averaged",
    "reduced_over_batch_only",
    "transposed",
    "sign_flipped",
    "labels_not_one_hot",
    "margin_counted_for_correct_class",
    "derivative_of_preactivation",
    "derivative_of_error",
    "missing_activation_derivative",
    "missing_weights_in_chain",
    # inside a norm or dropout layer (service.core.kind_mistakes.norms, .dropout)
    "batchnorm_mean_variance_ignored",
    "variance_bias_mismatch",
    "layernorm_wrong_axis",
    "mask_not_applied_in_backward",
    "dropout_not_rescaled",
    "wrong_layer_input",
    "summed_over_wrong_axis",
    "scaled_by_constant",
    "column_vector_shape",
    "dgamma_not_reduced",  # a norm's shape mistake (service.grading.shapes_norms)
    # issue 15, conv and pooling: service.grading.shapes_conv, service.core.kind_mistakes.conv
    "dx_still_padded",
    "kernel_flipped",
    "stride_ignored_in_backward",
    "maxpool_gradient_to_all",
    "avgpool_not_divided",
    "wrong_shape",
    "wrong_values",
)


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-5
    atol: float = 1e-8

    def close(self, submitted: np.ndarray, expected: np.ndarray) -> bool:
        """np.allclose's answer in about a third of its time (a class is thousands of
        comparisons): |submitted - expected| <= atol + rtol * |expected| everywhere, as
        isclose computes it; only an infinity in ``expected`` (isclose calls equal
        infinities close) can change the answer, and then allclose gives it."""
        if np.isinf(expected).any():
            return bool(np.allclose(submitted, expected, rtol=self.rtol, atol=self.atol))
        with np.errstate(invalid="ignore", over="ignore"):
            within = np.abs(submitted - expected) <= self.atol + self.rtol * np.abs(expected)
        return bool(within.all())

    def within(self, submitted: np.ndarray, expected: np.ndarray) -> np.ndarray:
        """Entry by entry, what ``close`` answers for the whole: ``close`` is exactly
        ``within(...).all()``, so the entries a failed field reports as mismatched are the
        ones that failed it."""
        if np.isinf(expected).any():
            return np.isclose(submitted, expected, rtol=self.rtol, atol=self.atol)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.abs(submitted - expected) <= self.atol + self.rtol * np.abs(expected)


@dataclass(frozen=True)
class Submission:
    loss: float | None
    #: one entry per layer: field name -> array in the client's shapes, or None to skip
    layers: tuple[dict[str, np.ndarray] | None, ...]

    def fields(self) -> list[tuple[int, str]]:
        """(layer, name) of every submitted array."""
        return [(i, name) for i, fields in enumerate(self.layers) for name in fields or ()]

    def numbers(self) -> int:
        return sum(array.size for fields in self.layers for array in (fields or {}).values())
