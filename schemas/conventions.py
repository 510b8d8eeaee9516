"""The three array conventions, and the one place that converts between them.

The core works in one canonical layout (samples are rows, weights are
(n_in, n_out), biases are flat).  A ``Convention`` knows how the client's
arrays map onto it, which bias shapes are legal, and what NumPy would have
done with an illegal one, so the error can say so.

The rule behind the bias shapes: a bias must broadcast against z along the
batch axis and nowhere else.

4-D data (images) is always batch first; the request's ``"layout"`` says where
the channels are: ``"NCHW"`` (canonical; CS231n, PyTorch) or ``"NHWC"`` (Andrew
Ng's course 4, TensorFlow).  A request's Convention carries it
(``convention_of``), so that every image array, and a convolution's filters,
converts here too, in one place.  2-D data ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    #: 4-D data is (batch, H, W, C) rather than (batch, C, H, W) ("layout": "NHWC")
    channels_last: bool = False

    @property
    def layout(self) -> str:
        return "NHWC" if self.channels_last else "NCHW"

    # -- shapes ---------------------------------------------------------------

    def data_shape(self, batch: int | str, units: int | str) -> tuple:
        return (units, batch) if self.samples_are_columns else (batch, units)

    def weights_shape(self, n_in: int | str, n_out: int | str) -> tuple:
        return (n_out, n_in) if self.weights_out_by_in else (n_in, n_out)

    def batch_and_units(self, shape: tuple[int, int]) -> tuple[int, int]:
        return (shape[1], shape[0]) if self.samples_are_columns else shape

    def batch_and_sample(self, shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
        """The batch and one sample's canonical shape: (n,) for 2-D data, (C, H, W) for 4-D."""
        if len(shape) == 4:
            n, *rest = shape
            return n, (rest[2], rest[0], rest[1]) if self.channels_last else tuple(rest)
        batch, units = self.batch_and_units(shape)
        return batch, (units,)

    def image_shape(self, batch: int | str, sample: tuple) -> tuple:
        """A 4-D array's shape in this layout, from the batch and a canonical (C, H, W)."""
        channels, height, width = sample
        if self.channels_last:
            return (batch, height, width, channels)
        return (batch, channels, height, width)

    def sample_shape(self, batch: int | str, sample: tuple) -> tuple:
        """A data array's shape in this convention: (batch, n) or (n, batch), or 4-D."""
        if len(sample) == 3:
            return self.image_shape(batch, sample)
        return self.data_shape(batch, sample[0])

    def fan_in_and_out(self, shape: tuple[int, int]) -> tuple[int, int]:
        return (shape[1], shape[0]) if self.weights_out_by_in else shape

    def bias_shapes(self, n_out: int) -> list[tuple]:
        return [(n_out, 1)] if self.samples_are_columns else [(n_out,), (1, n_out)]

    # -- conversion: client <-> canonical (each is its own inverse) ------------

    def data(self, array: np.ndarray, back: bool = False) -> np.ndarray:
        """inputs, targets, z, a, dz: client layout <-> canonical (batch, n).

        4-D: the client's layout -> canonical (batch, C, H, W), or ``back`` to the client's.
        """
        if array.ndim == 4:
            if not self.channels_last:
                return array
            return array.transpose((0, 2, 3, 1) if back else (0, 3, 1, 2))
        return array.T if self.samples_are_columns else array

    def filters_shape_of(self, shape: tuple) -> tuple:
        """A convolution's weights' shape read as canonical (F, C, HH, WW)."""
        return (shape[3], shape[2], shape[0], shape[1]) if self.channels_last else tuple(shape)

    def filters(self, array: np.ndarray, back: bool = False) -> np.ndarray:
        """A convolution's weights and dW: the client's -> canonical (F, C, HH, WW), or back.
        NHWC's are (HH, WW, C, F), Andrew Ng's W."""
        if not self.channels_last:
            return array
        return array.transpose((2, 3, 1, 0) if back else (3, 2, 0, 1))

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


#: the request's "layout" of 4-D data -> whether the channels come last
LAYOUTS = {"NCHW": False, "NHWC": True}


def convention_of(data: dict) -> Convention:
    """A request's convention, with the layout of its 4-D data."""
    c = CONVENTIONS[data["convention"]]
    channels_last = LAYOUTS[data.get("layout") or "NCHW"]
    return replace(c, channels_last=True) if channels_last else c


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
