"""What every layer type provides at the boundary (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from marshmallow import Schema

from service.core import ACTIVATIONS, ALIASES, Layer

from ..conventions import Convention

#: How an answer's array goes back to the client: in the weights' layout (dW), in the data
#: layout of inputs and activations (z, a, dz, dx, a dropout mask), or reshaped to the shape
#: the client sent the parameter in (db, dgamma, running_mean: a tuple).
WEIGHTS = "weights"
DATA = "data"
#: a convolution's weights and dW: (F, C, HH, WW) in NCHW, (HH, WW, C, F) in NHWC
FILTERS = "filters"
Layout = str | tuple[int, ...]
ACTIVATION_NAMES = (*ACTIVATIONS, *ALIASES)


@dataclass(frozen=True)
class Chained:
    """One layer's shape rules: its errors (field -> messages), and its output width.

    ``n_out`` is None when the layer does not chain onto the one below (its input
    width is wrong): the layers above it cannot be checked.
    """

    errors: dict
    #: units out (a flat layer), or one sample's canonical (C, H, W) (an image layer)
    n_out: int | tuple[int, ...] | None


@dataclass(frozen=True)
class LayerType:
    name: str
    #: the fields this type accepts ("type" and "activation" included)
    schema: type[Schema]
    #: (layer, convention, batch, width in, what the width comes from) -> Chained
    chain: Callable[[dict, Convention, int, int, str], Chained]
    #: (layer, convention, width in) -> the core's canonical Layer
    to_core: Callable[[dict, Convention, int], Layer]
    #: (layer) -> answer name (dW, db, running_mean, mask, ...) -> its Layout
    layouts: Callable[[dict], Mapping[str, Layout]]
    #: the activation when the layer sends none
    default_activation: str | None = "identity"
    #: the data it takes: "flat" (batch, n) samples, whose width ``chain`` gets as an int,
    #: "image" (batch, C, H, W) samples, whose canonical (C, H, W) it gets as a tuple, or
    #: "any" of the two (batchnorm: per feature of rows, per channel of images)
    takes: str = "flat"


def vector_shape(array: np.ndarray | None) -> tuple[int, ...] | None:
    return None if array is None else array.shape
