"""The formulas the autograder's messages quote: NumPy a student can paste, in their layout.

Every formula is a Python statement over the names a student's code has for one
layer: ``a_prev`` (the layer's input), ``W``, ``b``, ``z``, ``a``, ``y`` (the
targets as sent), ``da`` (dL/da, from the layer above or the loss), ``dz``,
and ``np``.  Numbers (the reduction's N, l2's factor) are written out, so a
statement needs nothing else.  Each builder returns the statement that computes
the right value in the client's convention, bias shape and ``dz_scale``
(tests/test_diagnoses.py executes every one and compares it with the answer).

Messages quote a formula in backticks; the fix is always ``Fix: `...` `` or
``Fix in layer k: `...` ``, the last statement's target being the corrected array.
"""

from __future__ import annotations

from dataclasses import dataclass

from .losses import LOSSES
from .objective import loss_scale, output_shape
from .problem import Problem


@dataclass(frozen=True)
class Formulas:
    """Statements for one problem in one convention (``name``, ``samples_are_columns``)."""

    problem: Problem
    convention: str
    samples_are_columns: bool

    @property
    def per_sample(self) -> bool:
        """dz_scale "per_sample": the reduction's 1/N lives in dW and db, not in dz."""
        return self.problem.dz_scale == "per_sample" and self.n != 1

    @property
    def axis(self) -> int:
        """The batch axis: what db sums over."""
        return 1 if self.samples_are_columns else 0

    @property
    def unit_axis(self) -> int:
        return 0 if self.samples_are_columns else 1

    @property
    def n(self) -> int:
        """The reduction's N (1 for "sum" and with upstream)."""
        return round(1 / loss_scale(self.problem))

    def divided(self, expression: str, here: bool) -> str:
        return f"{expression} / {self.n}" if here and self.n != 1 else expression

    # -- the output: the loss and its gradient -----------------------------------------------

    def targets(self) -> str:
        """y as a dense array: class labels become their one-hot rows (columns)."""
        y = self.problem.targets
        if y is None or y.ndim == 2:
            return "y"
        classes = output_shape(self.problem)[1]
        if self.samples_are_columns:
            return f"np.eye({classes})[y.ravel()].T"
        return f"np.eye({classes})[y]"

    def class_index(self) -> str:
        """Each sample's class as an index array: the labels as sent, or one-hot's argmax."""
        if self.problem.targets.ndim == 1:
            return "y.ravel()" if self.samples_are_columns else "y"
        return f"y.argmax(axis={self.unit_axis})"

    def _at_class(self) -> str:
        """The index of each sample's own class in a (batch, classes) or (classes, batch)."""
        samples = f"np.arange({self.problem.inputs.shape[0]})"
        i = self.class_index()
        return f"{i}, {samples}" if self.samples_are_columns else f"{samples}, {i}"

    def svm_margins(self) -> str:
        """CS231n's vectorised margins, max(0, s_j - s_y + 1), 0 at each sample's class."""
        at = self._at_class()
        correct = f"a[{at}][None, :]" if self.samples_are_columns else f"a[{at}][:, None]"
        return f"margins = np.maximum(0, a - {correct} + 1); margins[{at}] = 0"

    def svm_gradient(self, target: str) -> str:
        """CS231n's svm gradient, assigned to ``target``: 1 where a margin is positive, minus
        their count at the sample's own class, over N (none with dz_scale "per_sample")."""
        return (
            f"{self.svm_margins()}; binary = (margins > 0).astype(float); "
            f"binary[{self._at_class()}] = -binary.sum(axis={self.unit_axis}); "
            f"{target} = {self.divided('binary', not self.per_sample)}"
        )

    def loss(self) -> str | None:
        """`loss = ...`, or None where there is no short formula (l2, upstream)."""
        p = self.problem
        if p.upstream is not None or p.l2:
            return None
        if p.loss == "svm":
            return f"{self.svm_margins()}; loss = {self.divided('np.sum(margins)', True)}"
        y = self.targets()
        total = {
            "mse": f"np.sum((a - {y})**2)",
            "half_mse": f"0.5 * np.sum((a - {y})**2)",
            "bce": f"-np.sum({y} * np.log(a) + (1 - {y}) * np.log(1 - a))",
            "cross_entropy": f"-np.sum({y} * np.log(a))",
            "hinge": f"np.sum(np.maximum(0, 1 - {y} * a))",
        }[p.loss]
        return f"loss = {self.divided(total, True)}"

    def output_da(self) -> str | None:
        """dL/da at the output, in the client's dz_scale: an expression (None for upstream,
        and for the svm, whose gradient takes statements: svm_gradient)."""
        p = self.problem
        if p.upstream is not None or p.loss == "svm":
            return None
        y = self.targets()
        da = {
            "mse": f"2 * (a - {y})",
            "half_mse": f"(a - {y})",
            "bce": f"(a - {y}) / (a * (1 - a))",
            "cross_entropy": f"-{y} / a",
            "hinge": f"np.where(1 - {y} * a > 0, -{y}, 0.0)",
        }[p.loss]
        return self.divided(da, not self.per_sample)

    def output_fix(self) -> str | None:
        """Where the output's gradient starts: `dz = ...` for a loss fused with its
        activation (bce + sigmoid, cross_entropy + softmax), else `da = ...`."""
        if self.problem.loss and LOSSES[self.problem.loss].requires_activation is not None:
            error = self.divided(f"(a - {self.targets()})", not self.per_sample)
            return f"dz = {error}"
        if self.problem.loss == "svm" and self.problem.upstream is None:
            # the svm reads raw scores: dz is its gradient, unless an activation comes first
            last = len(self.problem.layers) - 1
            return self.svm_gradient("dz" if self.activation(last) == "identity" else "da")
        da = self.output_da()
        return None if da is None else f"da = {da}"

    # -- one layer ----------------------------------------------------------------------------

    def dz(self, layer: int, incoming: str = "da") -> str | None:
        """`dz = ...` of a layer; at the output, dL/da is spelled out first as ``dh``."""
        last = len(self.problem.layers) - 1
        if layer == last and self.problem.upstream is None:
            if self.problem.loss == "svm":
                if self.activation(layer) == "identity":  # raw scores: dz is the gradient
                    return self.svm_gradient("dz")
                return f"{self.svm_gradient('dh')}; {self.chain(layer, 'dh')}"
            da = self.output_da()
            if da is None:
                return None
            return f"dh = {da}; {self.chain(layer, 'dh')}"
        return self.chain(layer, incoming)

    def chain(self, layer: int, g: str) -> str:
        """dz = g * f'(z), f' written from a (sigmoid, tanh) or z (the others)."""
        activation = self.activation(layer)
        if activation == "softmax":
            return f"dz = a * ({g} - np.sum({g} * a, axis={self.unit_axis}, keepdims=True))"
        factor = {
            "identity": "",
            "sigmoid": " * a * (1 - a)",
            "tanh": " * (1 - a**2)",
            "relu": " * (z > 0)",
            "leaky_relu": " * np.where(z > 0, 1, 0.01)",
            "softplus": " / (1 + np.exp(-z))",
        }[activation]
        return f"dz = {g}{factor}"

    def activation(self, layer: int) -> str:
        name = self.problem.layers[layer].activation
        return "identity" if name == "linear" else name

    def dense(self, layer: int) -> bool:
        return self.problem.layers[layer].kind == "dense"

    def forward_z(self, layer: int) -> str | None:
        if not self.dense(layer):
            return None  # a norm's or dropout's z: no one line (service.core.messages says it)
        product = {"numpy": "a_prev @ W", "torch": "a_prev @ W.T", "columns": "W @ a_prev"}
        bias = " + b" if self.problem.layers[layer].biases is not None else ""
        return f"z = {product[self.convention]}{bias}"

    def forward_a(self, layer: int) -> str:
        return (
            "a = "
            + {
                "identity": "z",
                "sigmoid": "1 / (1 + np.exp(-z))",
                "tanh": "np.tanh(z)",
                "relu": "np.maximum(z, 0)",
                "leaky_relu": "np.where(z > 0, z, 0.01 * z)",
                "softplus": "np.logaddexp(0, z)",
                "softmax": (f"np.exp(z) / np.sum(np.exp(z), axis={self.unit_axis}, keepdims=True)"),
            }[self.activation(layer)]
        )

    def dW(self, layer: int) -> str | None:
        if not self.dense(layer):
            return None
        product = {"numpy": "a_prev.T @ dz", "torch": "dz.T @ a_prev", "columns": "dz @ a_prev.T"}
        return f"dW = {self.divided(product[self.convention], self.per_sample)}{self._l2()}"

    def db(self, shape: tuple[int, ...]) -> str:
        """The bias gradient in exactly ``shape``: keepdims only for a 2-D bias."""
        keep = ", keepdims=True" if len(shape) == 2 else ""
        return f"db = {self.divided(f'np.sum(dz, axis={self.axis}{keep})', self.per_sample)}"

    def dx(self, layer: int) -> str | None:
        if not self.dense(layer):
            return None
        return (
            "dx = "
            + {"numpy": "dz @ W.T", "torch": "dz @ W", "columns": "W.T @ dz"}[self.convention]
        )

    def _l2(self) -> str:
        p = self.problem
        if not p.l2:
            return ""
        factor = p.l2 if p.l2_style == "half" else 2.0 * p.l2
        return f" + {factor!r} * W"


def fix(statement: str | None, layer: int | None = None) -> str:
    """The machine-findable fix sentence, " Fix: `...`." ('' without a statement)."""
    if statement is None:
        return ""
    where = "" if layer is None else f" in layer {layer}"
    return f" Fix{where}: `{statement}`."
