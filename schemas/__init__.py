"""marshmallow schemas: the boundary that parses JSON into canonical arrays."""

from .conventions import CONVENTIONS, Convention
from .fields import Array, Number
from .gradients import GradientsRequest, GradientsRequestSchema, GradientsResponseSchema
from .neuron import NeuronRequestSchema, NeuronResponseSchema
from .problem import ProblemSchema

__all__ = [
    "CONVENTIONS",
    "Array",
    "Convention",
    "GradientsRequest",
    "GradientsRequestSchema",
    "GradientsResponseSchema",
    "NeuronRequestSchema",
    "NeuronResponseSchema",
    "Number",
    "ProblemSchema",
]
