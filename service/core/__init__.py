"""The pure NumPy core: no Flask, no marshmallow, no state between calls."""

from .activations import ACTIVATIONS, ALIASES, ELEMENTWISE, get_activation
from .errors import CoreError, LimitExceeded, NonFiniteResult
from .limits import Limits
from .losses import LOSSES, REDUCTIONS
from .network import compute_gradients, gradient_step
from .neuron import NeuronProblem, NeuronTerms, neuron_terms
from .problem import Gradients, Layer, LayerResult, Problem, dense_layer

__all__ = [
    "ACTIVATIONS",
    "ALIASES",
    "ELEMENTWISE",
    "LOSSES",
    "REDUCTIONS",
    "CoreError",
    "Gradients",
    "Layer",
    "LayerResult",
    "LimitExceeded",
    "Limits",
    "NeuronProblem",
    "NeuronTerms",
    "NonFiniteResult",
    "Problem",
    "compute_gradients",
    "dense_layer",
    "get_activation",
    "gradient_step",
    "neuron_terms",
]
