"""POST /v1/exercises: a seeded problem in the requested layout, with its solution."""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from service.core import ALIASES, LOSSES, REDUCTIONS, Problem
from service.core.exercises import ExerciseSpec
from service.core.network import DZ_SCALES

from .answers import GradientsResponseSchema
from .base import StrictSchema
from .conventions import CONVENTIONS, Convention
from .fields import MAX_LAYERS, BoundedList, Choice, Whole, one_of
from .gradients import DZ_SCALE_TEXT, GradientsRequest, GradientsRequestSchema
from .layers import ACTIVATION_NAMES, WEIGHTS

BIAS_FORMS = {"flat": lambda n: (n,), "row": lambda n: (1, n)}
MAX_UNITS = 1024


@dataclass(frozen=True)
class ExerciseRequest:
    spec: ExerciseSpec
    convention: Convention
    bias_shape: str

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
        required=True,
        validate=validate.Length(min=2, error="give at least an input and an output size."),
        metadata={"example": [2, 3, 1]},
    )
    activations = BoundedList(
        fields.String(validate=Choice(ACTIVATION_NAMES, "activation")),
        MAX_LAYERS,
        "activations",
        required=True,
        metadata={"example": ["tanh", "sigmoid"]},
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

    @post_load
    def _to_request(self, data, **kwargs) -> ExerciseRequest:
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
