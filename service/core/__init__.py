"""The pure NumPy core: no Flask, no marshmallow, no state between calls."""

from .activations import ACTIVATIONS, ALIASES, ELEMENTWISE, get_activation
from .errors import CoreError, LimitExceeded, NonFiniteResult
from .limits import Limits
from .losses import LOSSES, REDUCTIONS
from .network import (
    Gradients,
    Layer,
    LayerResult,
    Problem,
    compute_gradients,
    dense_layer,
    gradient_step,
)
from .neuron import NeuronProblem, NeuronTerms, neuron_terms

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
