"""The autograder's messages: what went wrong, where, and the line that fixes it.

Each message names the mistake in words, quotes the student's formula and the
right one in backticks (service.core.formulas builds them, in the client's
convention, bias shape and dz_scale), and ends with the fix, found by
``Fix: `...` `` or ``Fix in layer k: `...` `` (k when the fix is in another
layer than the field graded).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .formulas import Formulas, fix
from .kind_mistakes import CODES as KIND_CODES
from .kind_mistakes import KIND_MISTAKES
from .mistakes import Variant
from .problem import Problem
from .shapes import shape_text


class Convention(Protocol):
    """What the messages read of the client's convention (schemas.conventions.Convention)."""

    name: str
    samples_are_columns: bool
    channels_last: bool

    def data_shape(self, batch, units) -> tuple: ...


#: the derivative formula written for a, as a student applies it to something else
OUTPUT_FORM = {"sigmoid": "{g} * (1 - {g})", "tanh": "1 - {g}**2"}
KIND_MISTAKES_BY_CODE = {(m.code, m.kind): m for m in KIND_MISTAKES}
PLACED = {
    "reduced": "holds the reduction's 1/N (PyTorch's and CS231n's dz)",
    "per_sample": "leaves the reduction's 1/N to dW and db (Andrew Ng's dZ)",
    "in_dz": "has the reduction's 1/N applied to the output's dz",
}


class Messages:
    def __init__(self, problem: Problem, convention: Convention):
        self.problem = problem
        self.c = convention
        self.f = Formulas(problem, convention.name, convention.samples_are_columns)
        self.last = len(problem.layers) - 1

    # -- one field's right formula ------------------------------------------------------------

    def field_fix(self, layer: int, name: str, shape: tuple[int, ...]) -> str | None:
        f = self.f
        return {
            "z": lambda: f.forward_z(layer),
            "a": lambda: f.forward_a(layer),
            "dz": lambda: f.dz(layer),
            "dW": lambda: f.dW(layer),
            "db": lambda: f.db(shape),
            "dx": lambda: f.dx(layer),
        }.get(name, lambda: None)()

    # -- shapes -------------------------------------------------------------------------------

    def not_reduced(self, path: str, got: tuple, want: tuple) -> str:
        sample_axis = "column" if self.c.samples_are_columns else "row"
        return (
            f"{path} has one {sample_axis} per sample (shape {shape_text(got)}): dL/dz was not "
            f"summed over the batch axis. The bias is added to every sample, so its gradient is "
            f"the sum of every sample's dz, shape {shape_text(want)}.{fix(self.f.db(want))}"
        )

    def column_bias(self, path: str, n: int, want: tuple) -> str:
        return (
            f"{path} is a ({n}, 1) column, but in the {self.c.name!r} convention biases are "
            f"rows: a column bias broadcasts along the batch axis instead of the unit axis; "
            f"db is {shape_text(want)}.{fix(self.f.db(want))}"
        )

    def flat_column_bias(self, n: int) -> str:
        return (
            f" Without keepdims=True the sum loses its axis, and b - lr * db would broadcast "
            f"({n}, 1) against ({n},) into ({n}, {n}).{fix(self.f.db((n, 1)))}"
        )

    def transposed(self, path: str, layer: int, name: str, shape: tuple) -> str:
        if name == "dW":
            like = ", like nn.Linear's weight" if self.c.name == "torch" else ""
            return (
                f"{path} is the transpose of the right answer. In the {self.c.name!r} "
                f"convention dW is {shape_text(shape)}{like}.{fix(self.f.dW(layer))}"
            )
        batch_shape = shape_text(self.c.data_shape("batch", "n"))
        return (
            f"{path} is the transpose of the right answer: in the {self.c.name!r} convention "
            f"it is {batch_shape}.{fix(self.field_fix(layer, name, shape))}"
        )

    # -- values -------------------------------------------------------------------------------

    def wrong_loss(self, submitted: float, expected: float) -> str:
        p = self.problem
        return (
            f"loss is {submitted:.10g}, expected {expected:.10g}; no common mistake explains the "
            f"difference. Check the {p.loss} formula and the {p.reduction!r} reduction."
            f"{fix(self.f.loss())}"
        )

    def wrong_values(self, path: str, layer: int, name: str, shape: tuple) -> str:
        text = (
            f"{path} has the right shape but wrong values, and no common mistake explains "
            f"them. Check layer {layer}'s {'forward pass' if name in ('z', 'a') else 'chain rule'}."
        )
        if name == "dx":
            text += " Each layer's dx is the dL/da of the layer below."
        kind = self.problem.layers[layer].kind
        axis = self._image_axes(layer) or self.f.axis
        prose = {
            "dgamma": f"dgamma = np.sum(dout * x_hat, axis={axis}), x_hat the normalised input.",
            "dbeta": f"dbeta = np.sum(dout, axis={axis}).",
        }
        if kind == "dropout":
            prose["dx"] = "dx = dz * mask / keep_prob for inverted dropout."
        statement = self.field_fix(layer, name, shape)
        if statement:
            return text + fix(statement)
        # no one-line NumPy for a norm layer's z and dx: the formula, in words
        hint = _norm_hint(self.problem.layers[layer], name, axis) or prose.get(name)
        return text + (f" {hint}" if hint else "")

    def _image_axes(self, layer: int) -> tuple[int, int, int] | None:
        """The axes a per-channel sum runs over when layer's input is images, in the client's
        layout ((0, 2, 3) NCHW, (0, 1, 2) NHWC); None for 2-D data."""
        shape = self.problem.inputs.shape[1:]
        for below in self.problem.layers[:layer]:
            shape = below.sample_out(shape)
        if len(shape) != 3:
            return None
        return (0, 1, 2) if self.c.channels_last else (0, 2, 3)

    def scale(
        self, what: str, variant: Variant, layer: int | None = None, name: str = "", shape=()
    ) -> str:
        problem = self.problem
        if variant.code == "reduced_over_batch_only":
            batch = round(self.f.n / variant.factor)
            text = (
                f"{what} is {variant.factor:g} times the right value: mse's 'mean' divides by "
                f"every element, batch * n_out ({self.f.n}), as PyTorch's MSELoss does, not by "
                f"the batch ({batch}) alone."
            )
        elif variant.code == "averaged_instead_of_summed":
            text = (
                f"{what} is the right value divided by {variant.factor:g}: the problem's "
                "reduction is 'sum', so the loss adds every sample's term and nothing is "
                "averaged. Drop the division."
            )
        else:
            over = "batch * n_out" if problem.loss not in ("cross_entropy", "svm") else "the batch"
            text = (
                f"{what} is {variant.factor:g} times the right value: the problem's reduction is "
                f"'mean', so the loss, and so every gradient, is divided by {over} "
                f"({variant.factor:g})."
            )
        return text + self._scale_fix(layer, name, shape)

    def _scale_fix(self, layer: int | None, name: str, shape: tuple) -> str:
        if layer is None:
            return fix(self.f.loss())
        if self.f.per_sample and name in ("dW", "db"):
            return fix(self.field_fix(layer, name, shape))
        return fix(self.f.output_fix(), self.last)

    def variant(self, path: str, layer: int, variant: Variant, name: str) -> str:
        note = self._placement_note(variant, name)
        if variant.code == "sign_flipped":
            return (
                f"{path} has the right size but the wrong sign: the output error is a - y "
                "(prediction minus target), not y - a; every gradient inherits its sign."
                f"{note}{fix(self.f.output_fix(), self.last)}"
            )
        where = _layers_text(variant.layers)
        if layer < 0 and variant.code not in KIND_CODES:
            # a mistake in the loss itself (the svm's margin at j = y adds 1 a sample); a
            # mistake inside a layer's forward is carried forward to the loss (below)
            text, _ = self._explain(variant, max(variant.layers))
            why = f"{path} is wrong for the same reason as the gradients"
            return f"{why}: {text}{fix(self.f.loss())}"
        k = layer if layer in variant.layers else max(variant.layers)
        text, statement = self._explain(variant, k)
        explain = text + note + fix(statement, k)
        if layer in variant.layers:
            return f"In {where}, {explain}"
        if layer < 0 or layer > max(variant.layers):  # a mistake that changes the forward pass
            reached = "the loss" if layer < 0 else f"layer {layer}"
            return (
                f"This error comes from a mistake in {where}, carried forward to {reached}: "
                f"{explain}"
            )
        return (
            f"This error comes from a mistake in {where}, propagated back to layer {layer}: "
            f"{explain}"
        )

    def _explain(self, variant: Variant, k: int) -> tuple[str, str | None]:
        """The mistake in words and quoted formulas, and the statement that fixes layer k."""
        code = variant.code
        mistake = KIND_MISTAKES_BY_CODE.get((code, self.problem.layers[k].kind))
        if mistake is not None:  # a mistake inside a layer kind brings its own words
            return mistake.explain(self.problem, k, self.f)
        if code == "labels_not_one_hot":
            wrong = "a - y.reshape(1, -1)" if self.c.samples_are_columns else "a - y[:, None]"
            return (
                f"the class labels were subtracted as numbers, as in `dz = {wrong}`: y holds "
                "class indices, and the softmax's gradient subtracts 1 at each sample's class "
                f"only (y's one-hot rows, `{self.f.targets()}`).",
                self.f.output_fix(),
            )
        if code == "margin_counted_for_correct_class":
            return (
                "the svm's margin was counted for each sample's own class: there "
                "max(0, s_y - s_y + 1) = 1 is positive, so that class's gradient has one -1 too "
                "many. Set the margin at j = y to 0 before counting, as CS231n's vectorised "
                "svm does.",
                self.f.output_fix(),
            )
        if code == "missing_weights_in_chain":
            return (
                f"layer {k}'s dz was handed to layer {k - 1} as its dL/da without the weights "
                "(dA_prev = dZ): the chain rule goes through the weights that made z.",
                self.f.dx(k),
            )
        act = self.f.activation(k)
        g = "dh" if k == self.last and self.problem.upstream is None else "da"
        right = self.f.chain(k, g)
        if code == "derivative_of_preactivation":
            wrong = right.replace("a * (1 - a)", "z * (1 - z)").replace("a**2", "z**2")
            text = (
                f"the derivative of {act} was computed from z with the formula meant for "
                f"a = {act}(z): `{wrong}` instead of `{right}`."
            )
        elif code == "derivative_of_error":
            wrong = f"dz = {OUTPUT_FORM[act].format(g=g)}"
            if variant.form == "derivative_of_raw_error" and k == self.last:
                wrong = f"dh = a - {self.f.targets()}; {wrong}"
            text = (
                f"the derivative formula of {act} was applied to the error instead of the "
                f"activation, as in `{wrong}`. The error multiplies the derivative: `{right}`."
            )
        else:  # missing_activation_derivative
            text = f"dz was taken equal to dL/da (`dz = {g}`): the f'(z) of {act} is missing."
        return text, self.f.dz(k)

    def scaled(self, path: str, k: float, layer: int | None, name: str, shape: tuple) -> str:
        """scaled_by_constant: every entry k times the right one."""
        p = self.problem
        n = self.f.n
        if p.loss == "mse" and np.isclose(k, 0.5):
            why = "mse's derivative is 2 * (a - y), over N for 'mean': the 2 is missing."
        elif p.loss == "half_mse" and np.isclose(k, 2.0):
            why = "half_mse is 0.5 * (a - y)**2, whose derivative is a - y: the 2 is mse's."
        elif n > 1 and np.isclose(k, 1 / n):
            why = f"the reduction's 1/N (N = {n}) was applied twice."
        elif n > 1 and np.isclose(k, n):
            why = f"the reduction's 1/N (N = {n}) is missing."
        else:
            why = "a constant factor on the output's gradient is wrong (a 2, a 0.5 or an N)."
        text = f"{path} is {k:.6g}x the right value, every entry alike: {why}"
        if layer is None:
            return text + fix(self.f.loss())
        if n > 1 and np.isclose(k, 1 / n) and name in ("dW", "db"):
            return text + fix(self.field_fix(layer, name, shape))
        return text + fix(self.f.output_fix(), self.last)

    def wrong_input(self, path: str, layer: int, which: str) -> str:
        right = "the inputs" if layer == 0 else f"layer {layer - 1}'s activation"
        return (
            f"{path} was built from {which}, but dW pairs dz with the layer's own input a_prev, "
            f"here {right}.{fix(self.f.dW(layer))}"
        )

    def wrong_axis(self, path: str, want: tuple) -> str:
        return (
            f"{path} is dz summed over the units (axis {self.f.unit_axis}): one value per sample. "
            f"The bias has one value per unit, added to every sample, so its gradient sums over "
            f"the samples (axis {self.f.axis}), shape {shape_text(want)}.{fix(self.f.db(want))}"
        )

    def _placement_note(self, variant: Variant, name: str) -> str:
        own = self.problem.dz_scale
        if name not in ("dz", "dx") or variant.placement in (own, "in_dz"):
            return ""
        return (
            f" Your {name} {PLACED[variant.placement]}; the problem's {PLACED[own]} "
            f'(send "dz_scale": "{variant.placement}" to grade dz that way).'
        )


def _layers_text(layers: tuple[int, ...]) -> str:
    if len(layers) == 1:
        return f"layer {layers[0]}"
    names = [str(k) for k in sorted(layers)]
    return "layers " + ", ".join(names[:-1]) + " and " + names[-1]


def _norm_hint(layer, name: str, axis) -> str | None:
    """z and dx of a norm layer (CS231n's batchnorm and layernorm, and on images spatial
    batchnorm and groupnorm: ``axis`` is then the layout's (N, H, W) axes); None for other
    kinds."""
    images = isinstance(axis, tuple)
    if layer.kind == "groupnorm":
        return {
            "z": "z = gamma * x_hat + beta, x_hat = (x - mean) / sqrt(var + eps), mean and "
            "(biased) var over each sample's group of C / G channels x H x W, as CS231n's "
            "spatial_groupnorm_forward (x.reshape(N * G, -1) in NCHW).",
            "dx": "dx is layernorm's on each row of x.reshape(N * G, -1) (NCHW): "
            "(1 / std) / D * (D * g - sum(g) - x_hat * sum(g * x_hat)), g = dz * gamma, "
            "D = C / G * H * W.",
        }.get(name)
    if layer.kind == "batchnorm" and images and layer.settings.get("mode") != "eval":
        bessel = layer.settings.get("variance") == "unbiased"
        return {
            "z": f"z = gamma * x_hat + beta, x_hat = (x - mean) / sqrt(var + eps), mean and "
            f"var per channel over N, H and W (axis {axis})"
            f"{', var divided by N*H*W - 1' if bessel else ''}, as CS231n's "
            "spatial_batchnorm_forward.",
            "dx": "dx is batchnorm's on the images as (N*H*W, C) rows, as CS231n's "
            "spatial_batchnorm_backward: gamma / std / M * (M * dz - sum(dz) - "
            f"{'M / (M - 1) * ' if bessel else ''}x_hat * sum(dz * x_hat)), M = N*H*W, sums "
            f"over axis {axis}.",
        }.get(name)
    if layer.kind == "batchnorm":
        if layer.settings.get("mode") == "eval":
            return {
                "z": "z = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.",
                "dx": "dx = dz * gamma / sqrt(running_var + eps): the running statistics are "
                "constants in eval mode.",
            }.get(name)
        bessel = layer.settings.get("variance") == "unbiased"
        return {
            "z": f"z = gamma * x_hat + beta, x_hat = (x - mean) / sqrt(var + eps), mean and var "
            f"over the batch (axis {axis}){', var divided by N - 1' if bessel else ''}.",
            "dx": "dx = gamma / std / N * (N * dz - sum(dz) - "
            f"{'N / (N - 1) * ' if bessel else ''}x_hat * sum(dz * x_hat)), sums over the "
            f"batch (axis {axis}), as CS231n's batchnorm_backward_alt.",
        }.get(name)
    if layer.kind == "layernorm":
        features = 1 - axis
        return {
            "z": "z = gamma * x_hat + beta, x_hat = (x - mean) / sqrt(var + eps), mean and "
            f"(biased) var over each sample's features (axis {features}).",
            "dx": "dx = (1 / std) / D * (D * g - sum(g) - x_hat * sum(g * x_hat)), g = dz * "
            f"gamma, sums over each sample's D features (axis {features}).",
        }.get(name)
    return None
