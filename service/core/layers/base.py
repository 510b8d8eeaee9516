"""What every layer kind provides (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cost import LayerCost, LayerShape

Array = np.ndarray
Params = Mapping[str, Array]
#: what the kind reads but nothing differentiates: eps, mode, running statistics, a mask
Settings = Mapping[str, Any]
#: whatever forward keeps for backward: a value, never state on the layer
Cache = Any
#: one sample's shape: (n,) for flat data, (C, H, W) for an image (canonical NCHW)
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Kind:
    name: str
    #: parameter name -> its gradient's name in the answer, in answer order
    gradients: Mapping[str, str]
    #: the parameters l2 regularises
    regularised: tuple[str, ...]
    #: (n_in, its parameters) -> units out per sample
    units_out: Callable[[int, Params], int]
    #: (x, params, settings) -> (out, cache)
    forward: Callable[[Array, Params, Settings], tuple[Array, Cache]]
    #: (dout, cache, need_dx) -> (dx or None, {gradient name: array})
    backward: Callable[[Array, Cache, bool], tuple[Array | None, dict[str, Array]]]
    #: (batch, its shape) -> its cost, before it runs (service.core.cost.LAYER_COSTS)
    cost: Callable[[int, LayerShape], LayerCost]
    #: (cache, settings) -> arrays the answer carries besides the gradients, by name
    #: (batchnorm's updated running statistics, dropout's drawn mask)
    state: Callable[[Cache, Settings], dict[str, Array]] = lambda cache, settings: {}
    #: (batch, n_in, settings) -> {name: canonical shape} of what ``state`` will answer,
    #: known before anything runs (the cost model prices a mask drawn from a seed with it)
    state_shapes: Callable[[int, int, Settings], dict[str, tuple[int, ...]]] = (
        lambda batch, n_in, settings: {}
    )
    #: (per-sample shape in, its parameters, settings) -> per-sample shape out, for a kind
    #: whose data is not flat ((C, H, W) images: conv2d, the pools, flatten).  None: the kind
    #: takes flat (n,) samples and ``units_out`` says its width.
    sample_out: Callable[[Shape, Params, Settings], Shape] | None = None

    def out_shape(self, shape: Shape, params: Params, settings: Settings) -> Shape:
        """The per-sample shape this kind answers for a per-sample shape in."""
        if self.sample_out is not None:
            return self.sample_out(shape, params, settings)
        return (self.units_out(shape[0], params),)
