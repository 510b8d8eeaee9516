"""The three array conventions, and the one place that converts between them.

The core works in one canonical layout (samples are rows, weights are
(n_in, n_out), biases are flat).  A ``Convention`` knows how the client's
arrays map onto it, which bias shapes are legal, and what NumPy would have
done with an illegal one, so the error can say so.

The rule behind the bias shapes: a bias must broadcast against z along the
batch axis and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fields import shape_text


@dataclass(frozen=True)
class Convention:
    name: str
    #: inputs, targets and activations are (n, batch) rather than (batch, n)
    samples_are_columns: bool
    #: weights are (n_out, n_in) rather than (n_in, n_out)
    weights_out_by_in: bool
    #: the forward formula, as the client would write it
    formula: str

    # -- shapes ---------------------------------------------------------------

    def data_shape(self, batch: int | str, units: int | str) -> tuple:
        return (units, batch) if self.samples_are_columns else (batch, units)

    def weights_shape(self, n_in: int | str, n_out: int | str) -> tuple:
        return (n_out, n_in) if self.weights_out_by_in else (n_in, n_out)

    def batch_and_units(self, shape: tuple[int, int]) -> tuple[int, int]:
        return (shape[1], shape[0]) if self.samples_are_columns else shape

    def fan_in_and_out(self, shape: tuple[int, int]) -> tuple[int, int]:
        return (shape[1], shape[0]) if self.weights_out_by_in else shape

    def bias_shapes(self, n_out: int) -> list[tuple]:
        return [(n_out, 1)] if self.samples_are_columns else [(n_out,), (1, n_out)]

    # -- conversion: client <-> canonical (each is its own inverse) ------------

    def data(self, array: np.ndarray) -> np.ndarray:
        """inputs, targets, z, a, dz: client layout <-> canonical (batch, n)."""
        return array.T if self.samples_are_columns else array

    def weights(self, array: np.ndarray) -> np.ndarray:
        """weights and dW: client layout <-> canonical (n_in, n_out)."""
        return array.T if self.weights_out_by_in else array

    # -- explanations ---------------------------------------------------------

    def bias_problem(self, shape: tuple, n_out: int, batch: int) -> str | None:
        """None for a legal bias shape, else what is wrong and what NumPy would do."""
        legal = self.bias_shapes(n_out)
        if shape in legal:
            return None
        expected = " or ".join(shape_text(s) for s in legal)
        z_shape = self.data_shape(batch, n_out)
        fix = (
            f"send it as a column [[b1], [b2], ...] of shape {shape_text((n_out, 1))}"
            if self.samples_are_columns
            else f"send it as a flat list [b1, ..., b{n_out}] of shape ({n_out},) "
            f"or as one row [[b1, ..., b{n_out}]] of shape (1, {n_out})"
        )
        count = int(np.prod(shape))
        if len(shape) == 2 and 1 not in shape:
            return (
                f"got shape {shape_text(shape)}, expected {expected}: a bias holds one "
                f"value per unit, not a matrix; {fix}."
            )
        if count != n_out:
            return (
                f"got shape {shape_text(shape)}, expected {expected}: the layer has "
                f"{n_out} unit(s) (from its weights) but {count} bias value(s) were sent; "
                f"{fix}."
            )
        if n_out == 1:
            return (
                f"got shape {shape_text(shape)}, expected {expected}: the {self.name!r} "
                f"convention writes every bias that way, even for a single unit; {fix}."
            )
        return (
            f"got shape {shape_text(shape)}, expected {expected} in the {self.name!r} "
            f"convention, where z = {self.formula} has shape {shape_text(z_shape)}. "
            f"{self._what_numpy_does(shape, z_shape)} Fix: {fix}."
        )

    def _what_numpy_does(self, shape: tuple, z_shape: tuple) -> str:
        try:
            result = np.broadcast_shapes(z_shape, shape)
        except ValueError:
            return (
                f"This bias lines up with the wrong axis: NumPy would fail with 'operands "
                f"could not be broadcast together with shapes {shape_text(z_shape)} "
                f"{shape_text(shape)}'."
            )
        if result != z_shape:
            return (
                f"This bias lines up with the wrong axis: NumPy would silently broadcast z "
                f"to shape {shape_text(result)}, a matrix with the wrong number of samples."
            )
        return (
            "This bias lines up with the batch axis instead of the unit axis: NumPy would "
            "silently add the same bias to every unit of each sample, a different one per "
            "sample, and give a wrong z with no error."
        )


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention(
            "numpy", samples_are_columns=False, weights_out_by_in=False, formula="a_prev @ W + b"
        ),
        Convention(
            "torch", samples_are_columns=False, weights_out_by_in=True, formula="a_prev @ W.T + b"
        ),
        Convention(
            "columns", samples_are_columns=True, weights_out_by_in=True, formula="W @ a_prev + b"
        ),
    )
}
