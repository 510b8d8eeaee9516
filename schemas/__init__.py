"""marshmallow schemas: the boundary that parses JSON into canonical arrays."""

from .answers import GradientsResponseSchema
from .check import CheckRequest, CheckRequestSchema, CheckResponseSchema
from .conventions import CONVENTIONS, Convention
from .exercises import ExerciseRequest, ExerciseRequestSchema, ExerciseResponseSchema
from .fields import Array, Number
from .gradients import GradientsRequest, GradientsRequestSchema
from .grading_formats import GradescopeResultsSchema, PrairieLearnResultsSchema
from .health import HealthSchema, ReadinessSchema
from .neuron import NeuronRequestSchema, NeuronResponseSchema
from .problem import ProblemDetailsSchema

__all__ = [
    "CONVENTIONS",
    "Array",
    "CheckRequest",
    "CheckRequestSchema",
    "CheckResponseSchema",
    "Convention",
    "ExerciseRequest",
    "ExerciseRequestSchema",
    "ExerciseResponseSchema",
    "GradescopeResultsSchema",
    "GradientsRequest",
    "GradientsRequestSchema",
    "GradientsResponseSchema",
    "HealthSchema",
    "NeuronRequestSchema",
    "NeuronResponseSchema",
    "Number",
    "PrairieLearnResultsSchema",
    "ProblemDetailsSchema",
    "ReadinessSchema",
]
