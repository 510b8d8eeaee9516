"""Layer kinds: one module per kind, one registry.

A kind is a small record of pure functions; it keeps no state, so nothing can
leak between requests or threads.  Canonical shapes: x and out are
(batch, units), samples are rows, or images (batch, C, H, W) for the kinds
that take them (conv2d, the pools, flatten, groupnorm; batchnorm takes both):
their ``sample_out`` says the per-sample shape out.

    forward(x, params, settings)    -> (out, cache)
    backward(dout, cache, need_dx)  -> (dx or None, {gradient name: array})
    state(cache, settings)          -> {name: array} the answer carries besides gradients

The cache is a value forward returns and backward is handed, never state on
the layer.  ``need_dx`` is False for the first layer unless the client asked
for dL/d(inputs): it saves a (batch, n_in) x (n_in, n_out) product.

Adding a kind is adding its module and one line to ``KINDS``; the network loop
(service.core.network) and the cost model (service.core.cost.LAYER_COSTS) take
it from here.
"""

from __future__ import annotations

from ..cost import LAYER_COSTS
from .base import Kind
from .batchnorm import BATCHNORM
from .conv2d import CONV2D
from .dense import DENSE
from .dropout import DROPOUT
from .flatten import FLATTEN
from .groupnorm import GROUPNORM
from .layernorm import LAYERNORM
from .pool2d import AVGPOOL2D, MAXPOOL2D

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        DENSE,
        BATCHNORM,
        LAYERNORM,
        DROPOUT,
        CONV2D,
        MAXPOOL2D,
        AVGPOOL2D,
        FLATTEN,
        GROUPNORM,
    )
}

LAYER_COSTS.update({name: kind.cost for name, kind in KINDS.items()})

__all__ = ["KINDS", "Kind"]
