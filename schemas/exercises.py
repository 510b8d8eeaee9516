"""POST /v1/exercises: a seeded problem in the requested layout, with its solution."""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from service.core import ALIASES, LOSSES, REDUCTIONS, Problem
from service.core.exercise_layers import LayeredSpec
from service.core.exercises import ExerciseSpec
from service.core.problem import DZ_SCALES

from .answers import GradientsResponseSchema
from .base import StrictSchema
from .conventions import CONVENTIONS, Convention
from .exercise_layers import MAX_UNITS, LayerSpecField, lay_out
from .fields import MAX_LAYERS, BoundedList, Choice, Whole, one_of
from .gradients import DZ_SCALE_TEXT, GradientsRequest, GradientsRequestSchema
from .layers import ACTIVATION_NAMES, WEIGHTS

BIAS_FORMS = {"flat": lambda n: (n,), "row": lambda n: (1, n)}
TARGET_FORMS = ("dense", "labels")


@dataclass(frozen=True)
class ExerciseRequest:
    #: layer_sizes and activations (dense layers only, as before the layer kinds), or layers
    spec: ExerciseSpec | LayeredSpec
    convention: Convention
    bias_shape: str

    def vector(self, n: int) -> tuple[int, ...]:
        """A bias's (and a norm's per-feature vector's) shape in the client's convention."""
        return (n, 1) if self.convention.samples_are_columns else BIAS_FORMS[self.bias_shape](n)

    def layered_document(self, problem: Problem) -> dict:
        """A problem drawn from ``layers`` as a /v1/gradients request body, in the client's
        shapes (class labels as a flat list, whatever the convention)."""
        c, spec = self.convention, self.spec
        targets = problem.targets
        document = {
            "inputs": c.data(problem.inputs),
            "targets": targets if targets.ndim == 1 else c.data(targets),
            "layers": lay_out(problem.layers, spec.layers, c, self.vector),
            "loss": problem.loss,
            "reduction": problem.reduction,
            "convention": c.name,
        }
        if problem.dz_scale != "reduced":
            document["dz_scale"] = problem.dz_scale
        return document

    def lay_out(self, problem: Problem) -> GradientsRequest:
        """The generated canonical problem in the requested convention and bias shape."""
        c = self.convention
        shapes = tuple(
            (n, 1) if c.samples_are_columns else BIAS_FORMS[self.bias_shape](n)
            for n in self.spec.layer_sizes[1:]
        )
        layouts = tuple({"dW": WEIGHTS, "db": shape} for shape in shapes)
        return GradientsRequest(
            problem=problem, convention=c, layouts=layouts, include=("a",), learning_rate=None
        )

    def problem_document(self, request: GradientsRequest) -> dict:
        """The problem as a /v1/gradients request body, in the client's shapes."""
        c, problem = self.convention, request.problem
        document = {
            "inputs": c.data(problem.inputs),
            "targets": c.data(problem.targets),
            "layers": [
                {
                    "weights": c.weights(layer.weights),
                    "biases": layer.biases.reshape(layout["db"]),
                    "activation": layer.activation,
                }
                for layer, layout in zip(problem.layers, request.layouts)
            ],
            "loss": problem.loss,
            "reduction": problem.reduction,
            "convention": c.name,
        }
        if problem.dz_scale != "reduced":  # absent: the default, as every exercise before it
            document["dz_scale"] = problem.dz_scale
        return document


class ExerciseRequestSchema(StrictSchema):
    seed = Whole(
        required=True,
        validate=validate.Range(min=0, max=2**63 - 1),
        metadata={"description": "for example a hash of the student id"},
    )
    layer_sizes = BoundedList(
        Whole(validate=validate.Range(min=1, max=MAX_UNITS)),
        MAX_LAYERS + 1,
        "sizes",
        load_default=None,
        validate=validate.Length(min=2, error="give at least an input and an output size."),
        metadata={
            "example": [2, 3, 1],
            "description": "dense layers: (n_in, n_1, ..., n_out). Required unless layers is sent.",
        },
    )
    activations = BoundedList(
        fields.String(validate=Choice(ACTIVATION_NAMES, "activation")),
        MAX_LAYERS,
        "activations",
        load_default=None,
        metadata={
            "example": ["tanh", "sigmoid"],
            "description": "one per dense layer of layer_sizes. Required unless layers is sent.",
        },
    )
    n_in = Whole(
        load_default=None,
        validate=validate.Range(min=1, max=MAX_UNITS),
        metadata={"description": "with layers: the inputs' features (required with layers)"},
    )
    layers = BoundedList(
        LayerSpecField(
            metadata={"description": "one layer to generate; its type (absent: dense) says which"}
        ),
        MAX_LAYERS,
        "layers",
        load_default=None,
        validate=validate.Length(min=1, error="at least one layer is needed."),
        metadata={
            "description": (
                "instead of layer_sizes and activations: the layers to generate, of any kind "
                "(dense with or without a bias, batchnorm, layernorm, dropout by seed), "
                "one object each, with n_in"
            )
        },
    )
    targets = one_of(
        TARGET_FORMS,
        "targets form",
        load_default="dense",
        metadata={
            "description": (
                "with layers: dense (batch, n_out) targets, or class labels (batch,) for a loss "
                "that takes them (cross_entropy, svm); labels cover every class when the batch "
                "has room"
            )
        },
    )
    loss = one_of(LOSSES, "loss", required=True)
    reduction = one_of(REDUCTIONS, "reduction", load_default="mean")
    batch_size = Whole(load_default=4, validate=validate.Range(min=1, max=MAX_UNITS))
    convention = one_of(CONVENTIONS, "convention", load_default="numpy")
    bias_shape = one_of(
        BIAS_FORMS,
        "bias shape",
        load_default="row",
        metadata={"description": "ignored in columns: always (n, 1)"},
    )
    dz_scale = one_of(
        DZ_SCALES, "dz_scale", load_default="reduced", metadata={"description": DZ_SCALE_TEXT}
    )
    decimals = Whole(
        load_default=None,
        validate=validate.Range(min=0, max=15),
        metadata={"description": "round every generated number to this many decimals"},
    )

    @validates_schema(skip_on_field_errors=True)
    def _check(self, data, **kwargs):
        if data["layers"] is not None or data["layer_sizes"] is None:
            return self._check_layered(data)
        if data["activations"] is None:
            raise ValidationError({"activations": ["missing: one activation per layer."]})
        if data["n_in"] is not None or data["targets"] != "dense":
            name = "n_in" if data["n_in"] is not None else "targets"
            raise ValidationError(
                {
                    name: [
                        f"{name} goes with layers: send n_in and layers (any layer kind) "
                        "instead of layer_sizes and activations, or leave it out."
                    ]
                }
            )
        layers = len(data["layer_sizes"]) - 1
        if len(data["activations"]) != layers:
            raise ValidationError(
                {
                    "activations": [
                        f"got {len(data['activations'])} activations, expected {layers}: one per "
                        f"layer ({len(data['layer_sizes'])} sizes make {layers} layers)."
                    ]
                }
            )
        required = LOSSES[data["loss"]].requires_activation
        last = ALIASES.get(data["activations"][-1], data["activations"][-1])
        if required and last != required:
            raise ValidationError(
                {
                    "loss": [
                        f"{data['loss']} needs a {required} output layer, but the last "
                        f"activation is {last!r}."
                    ]
                }
            )

    def _check_layered(self, data: dict) -> None:
        """layers, with n_in; the rules of the problem itself are /v1/gradients' (the route
        loads the generated problem with its schema).  Here only what cannot be drawn well."""
        errors = {}
        for name in ("layer_sizes", "activations"):
            if data[name] is not None:
                errors[name] = [
                    f"{name} was sent with layers: send layers (with n_in), or layer_sizes and "
                    "activations (dense layers only), not both."
                ]
        if data["layers"] is None:  # neither form: the dense-only one's fields, as before
            missing = "Missing data for required field."
            raise ValidationError(
                {"layer_sizes": [missing]}
                | ({} if data["activations"] else {"activations": [missing]})
            )
        if data["n_in"] is None:
            errors["n_in"] = ["missing: the number of input features, required with layers."]
        if errors:
            raise ValidationError(errors)
        loss = LOSSES[data["loss"]]
        if data["targets"] == "labels" and not loss.takes_labels:
            takes = [name for name, other in LOSSES.items() if other.takes_labels]
            raise ValidationError(
                {
                    "targets": [
                        f"class labels need a loss over classes ({', '.join(takes)}); "
                        f"{data['loss']} compares every output with a dense target. Use "
                        f'"targets": "dense", or one of those losses.'
                    ]
                }
            )
        for i, spec in enumerate(data["layers"]):
            if spec.spreads(0) and data["batch_size"] < 2 and spec.settings["variance"] == "biased":
                # (unbiased, batch 1 is /v1/gradients' own rule: its message comes from there)
                raise ValidationError(
                    {
                        "batch_size": [
                            f"layer {i} is a batchnorm in train mode: over a batch of 1 its "
                            "batch variance is 0 and it normalises every value to 0. Ask for "
                            'batch_size 2 or more, or mode "eval".'
                        ]
                    }
                )
            if spec.spreads(1) and self._widths(data)[i] < 2:
                raise ValidationError(
                    {
                        f"layers.{i}": [
                            "a layernorm over 1 feature normalises every value to 0 (the "
                            "variance of one number is 0). Put it after a layer of 2 units or "
                            "more (or n_in >= 2)."
                        ]
                    }
                )

    @staticmethod
    def _widths(data: dict) -> list[int]:
        widths = [data["n_in"]]
        for spec in data["layers"]:
            widths.append(spec.units if spec.kind == "dense" else widths[-1])
        return widths

    @post_load
    def _to_request(self, data, **kwargs) -> ExerciseRequest:
        if data["layers"] is not None:
            convention = CONVENTIONS[data["convention"]]
            return ExerciseRequest(
                spec=LayeredSpec(
                    seed=data["seed"],
                    n_in=data["n_in"],
                    layers=tuple(data["layers"]),
                    loss=data["loss"],
                    reduction=data["reduction"],
                    batch_size=data["batch_size"],
                    decimals=data["decimals"],
                    dz_scale=data["dz_scale"],
                    labels=data["targets"] == "labels",
                    columns=convention.samples_are_columns,
                ),
                convention=convention,
                bias_shape=data["bias_shape"],
            )
        return ExerciseRequest(
            spec=ExerciseSpec(
                seed=data["seed"],
                layer_sizes=tuple(data["layer_sizes"]),
                activations=tuple(data["activations"]),
                loss=data["loss"],
                reduction=data["reduction"],
                batch_size=data["batch_size"],
                decimals=data["decimals"],
                dz_scale=data["dz_scale"],
            ),
            convention=CONVENTIONS[data["convention"]],
            bias_shape=data["bias_shape"],
        )


class ExerciseResponseSchema(StrictSchema):
    problem = fields.Nested(GradientsRequestSchema, required=True)
    solution = fields.Nested(
        GradientsResponseSchema,
        required=True,
        metadata={"description": "exactly the /v1/gradients answer to the problem"},
    )
