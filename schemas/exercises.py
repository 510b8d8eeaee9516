"""POST /v1/exercises: a seeded problem in the requested layout, with its solution."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from service.core import ALIASES, LOSSES, REDUCTIONS, Problem
from service.core.exercise_layers import LayeredSpec
from service.core.exercises import ExerciseSpec
from service.core.problem import DZ_SCALES

from .answers import GradientsResponseSchema
from .base import StrictSchema
from .conventions import CONVENTIONS, LAYOUTS, Convention, convention_of
from .exercise_layers import MAX_UNITS, LayerSpecField, lay_out, skeleton_errors
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
            "inputs": c.data(problem.inputs, back=True),
            "targets": targets if targets.ndim == 1 else c.data(targets),
            "layers": lay_out(problem.layers, spec.layers, c, self.vector, spec.samples()),
            "loss": problem.loss,
            "reduction": problem.reduction,
            "convention": c.name,
        }
        if problem.inputs.ndim == 4:
            document["layout"] = c.layout
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
        metadata={"description": "with layers: the inputs' features (or image_shape)"},
    )
    image_shape = BoundedList(
        Whole(validate=validate.Range(min=1, max=MAX_UNITS)),
        3,
        "sizes",
        load_default=None,
        validate=validate.Length(equal=3, error="give [channels, height, width]."),
        metadata={
            "example": [1, 6, 6],
            "description": (
                "with layers, instead of n_in: each input image's [channels, height, width] "
                "(in that order whatever the layout); the inputs are then 4-D, in the layout"
            ),
        },
    )
    layout = one_of(
        LAYOUTS,
        "layout",
        load_default="NCHW",
        metadata={
            "description": (
                "with image_shape: NCHW (CS231n, PyTorch) or NHWC (Andrew Ng's course 4), for "
                "the inputs and the convolutions' weights, as /v1/gradients' layout"
            )
        },
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
                "(dense with or without a bias, batchnorm on rows or images, layernorm, "
                "groupnorm, dropout by seed, conv2d, maxpool2d, avgpool2d, flatten), one "
                "object each, with n_in or image_shape"
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
        sent = [name for name in ("n_in", "image_shape") if data[name] is not None] + [
            name for name in ("targets", "layout") if data[name] != self.fields[name].load_default
        ]
        if sent:
            name = sent[0]
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
        """layers, with n_in or image_shape.  The problem's own rules are /v1/gradients': its
        shape rules and its loss's rule on the problem's skeleton before anything is drawn
        (skeleton_errors), all of its schema on the drawn problem (the route).  Here besides
        only what cannot be drawn well, and labels for a loss that takes none."""
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
        shapes = [name for name in ("n_in", "image_shape") if data[name] is not None]
        if not shapes:
            errors["n_in"] = [
                "missing: the number of input features (or image_shape, [channels, height, "
                "width] of each input image), required with layers."
            ]
        elif len(shapes) == 2:
            errors["image_shape"] = [
                "n_in and image_shape were both sent: send n_in for rows of features, or "
                "image_shape for images."
            ]
        if errors:
            raise ValidationError(errors)
        loss = LOSSES[data["loss"]]
        c = convention_of(data)
        errors = skeleton_errors(
            data["layers"],
            self._input_shape(data),
            data["batch_size"],
            c,
            self._vector(data),
            data["loss"],
        )
        if errors:
            raise ValidationError(errors)
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
        samples = self._samples(data)
        for i, spec in enumerate(data["layers"]):
            sample = samples[i]
            count = data["batch_size"] * prod(sample[1:])  # a batchnorm's statistics: N (*H*W)
            if spec.spreads(0) and count < 2 and spec.settings["variance"] == "biased":
                # (unbiased, batch 1 is /v1/gradients' own rule: its message comes from there)
                over = "a batch of 1" if len(sample) == 1 else "a batch of 1 image of 1x1"
                raise ValidationError(
                    {
                        "batch_size": [
                            f"layer {i} is a batchnorm in train mode: over {over} its "
                            "batch variance is 0 and it normalises every value to 0. Ask for "
                            'batch_size 2 or more, or mode "eval".'
                        ]
                    }
                )
            if spec.kind == "layernorm" and sample == (1,):
                raise ValidationError(
                    {
                        f"layers.{i}": [
                            "a layernorm over 1 feature normalises every value to 0 (the "
                            "variance of one number is 0). Put it after a layer of 2 units or "
                            "more (or n_in >= 2)."
                        ]
                    }
                )
            if spec.kind == "groupnorm" and prod(sample) == spec.groups:
                raise ValidationError(
                    {
                        f"layers.{i}.groups": [
                            f"{spec.groups} group(s) over {sample[0]} channel(s) of "
                            f"{sample[1]}x{sample[2]}: each group holds 1 number, which a "
                            "groupnorm normalises to 0 (the variance of one number is 0). "
                            "Use fewer groups, or larger images."
                        ]
                    }
                )

    @staticmethod
    def _input_shape(data: dict) -> tuple[int, ...]:
        """One input sample, canonical: (n_in,), or (C, H, W)."""
        return (data["n_in"],) if data["n_in"] is not None else tuple(data["image_shape"])

    @staticmethod
    def _vector(data: dict):
        c = CONVENTIONS[data["convention"]]
        return ExerciseRequest(None, c, data["bias_shape"]).vector

    def _samples(self, data: dict) -> list[tuple[int, ...]]:
        samples = [self._input_shape(data)]
        for spec in data["layers"]:
            samples.append(spec.sample_out(samples[-1]))
        return samples

    @post_load
    def _to_request(self, data, **kwargs) -> ExerciseRequest:
        if data["layers"] is not None:
            convention = convention_of(data)
            return ExerciseRequest(
                spec=LayeredSpec(
                    seed=data["seed"],
                    input_shape=self._input_shape(data),
                    layers=tuple(data["layers"]),
                    loss=data["loss"],
                    reduction=data["reduction"],
                    batch_size=data["batch_size"],
                    decimals=data["decimals"],
                    dz_scale=data["dz_scale"],
                    labels=data["targets"] == "labels",
                    columns=convention.samples_are_columns,
                    channels_last=convention.channels_last,
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
