"""Seeded exercises with any layer kind: dense (with or without a bias), batchnorm (rows, or
spatial on images), layernorm, groupnorm, dropout (rows or images), conv2d, the pools and
flatten, a loss over dense targets or class labels.

The same spec gives the same numbers on every call and every replica: one NumPy
``default_rng(seed)`` drawn in a fixed order, no global state.  Dense layers and
inputs are drawn as service.core.exercises draws them (weights N(0, 1/n_in), biases
N(0, 0.5^2), inputs N(0, 1)); a norm's gamma is drawn from U(0.6, 1.6) and beta from
N(0, 0.5^2), running means from N(0, 0.5^2) and running variances from U(0.6, 2)
(never 0 however ``decimals`` rounds them); a dropout layer gets a seed, never a mask.

Well conditioned: the generator runs the forward pass as it draws.  A feature that
reaches a train-mode batchnorm with a batch variance under ``MIN_VARIANCE`` (a relu
unit dead on every sample, a column dropout emptied) would be divided by about
sqrt(eps) and its gradient blown up ~300 times: the layer below is redrawn (a dense
layer's offending columns, the inputs' columns, a dropout's seed), at most ``REDRAWS``
times, deterministically.  A sample whose features reach a layernorm nearly alike
(two relu units both 0) has its inputs' row redrawn and the layers below replayed.
On images the same, per channel and per group: a channel reaching a train-mode spatial
batchnorm nearly constant over N, H and W has its convolution's filter (or the inputs'
channel, or the dropout's seed) redrawn; a group reaching a groupnorm nearly constant in a
sample has the filters of its channels nearly constant there redrawn (a convolution's just
below; dead filters, which no redrawn image revives), then the sample's input image redrawn
and replayed.
Class labels cover every class when the batch has room: ``arange(batch) % n_out``, shuffled.

The problem is canonical; schemas.exercise_layers lays it out in the client's
convention, and /v1/gradients' schema validates it before it is solved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np

from .activations import get_activation
from .budget import NO_DEADLINE, Deadline
from .cost import LayerShape, NetworkShape
from .exercises import _targets
from .layers import KINDS
from .layers.conv2d import output_size
from .layers.dropout import dropout_layer
from .layers.pool2d import pooled_size
from .problem import Layer, Problem, dense_layer

#: the smallest batch variance of a feature entering a train-mode batchnorm (and of a
#: sample's features entering a layernorm) that the generator leaves as drawn
MIN_VARIANCE = 0.01
#: how many times the layer below a norm is redrawn, at most, to get there
REDRAWS = 32
#: the units (samples) redrawn below one norm add up to at most BUDGET times the layer's
#: width (the batch): at most BUDGET more forward passes, which the cost model prices
BUDGET = 4
#: the kinds an exercise can generate
GENERATED_KINDS = (
    *("dense", "batchnorm", "layernorm", "dropout"),
    *("conv2d", "maxpool2d", "avgpool2d", "flatten", "groupnorm"),
)
#: the normalisations: each may have the layers below it redrawn (priced as BUDGET passes)
NORMS = ("batchnorm", "layernorm", "groupnorm")

Array = np.ndarray


@dataclass(frozen=True)
class LayerSpec:
    """One layer to generate: its kind and activation, and what is not drawn."""

    kind: str
    activation: str = "identity"
    units: int | None = None  # dense: units out; conv2d: filters
    bias: bool = True  # dense, conv2d: with a bias
    #: batchnorm: mode, variance, momentum, eps, running (send running statistics in train
    #: mode); layernorm: eps; groupnorm: groups, eps; dropout: keep_prob; conv2d: size,
    #: stride, pad (pairs); the pools: pool, stride (a pair, or None: the pool),
    #: maxpool2d's ties
    settings: Mapping[str, Any] = field(default_factory=dict)

    def sample_out(self, sample: tuple[int, ...]) -> tuple[int, ...]:
        """One sample's shape out, for one sample's shape in (canonical (C, H, W) images)."""
        s = self.settings
        if self.kind == "dense":
            return (self.units,)
        if self.kind == "flatten":
            return (prod(sample),)
        if self.kind == "conv2d":
            (_, height, width), sizes = sample, zip(s["size"], s["stride"], s["pad"])
            h, w = (output_size(n, *size)[0] for n, size in zip((height, width), sizes))
            return (self.units, h, w)
        if self.kind in ("maxpool2d", "avgpool2d"):
            channels, height, width = sample
            (ph, pw), (sh, sw) = s["pool"], s["stride"] or s["pool"]
            return (channels, pooled_size(height, ph, sh), pooled_size(width, pw, sw))
        return sample

    def spreads(self, axis: int) -> bool:
        """Its input must not be nearly constant along ``axis``: 0 over the batch (a
        train-mode batchnorm; on images over N, H and W), 1 over the features (a layernorm;
        a groupnorm over each of its groups)."""
        if axis == 0:
            return self.kind == "batchnorm" and self.settings.get("mode", "train") == "train"
        return self.kind in ("layernorm", "groupnorm")

    @property
    def groups(self) -> int:
        """The groups a sample's features are normalised in (a groupnorm's G; else 1)."""
        return self.settings.get("groups", 1)


@dataclass(frozen=True)
class LayeredSpec:
    seed: int
    #: one sample: (n_in,), or an image's canonical (C, H, W)
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    loss: str
    reduction: str = "mean"
    batch_size: int = 4
    decimals: int | None = None
    dz_scale: str = "reduced"
    labels: bool = False  # class labels (batch,) rather than dense targets
    #: the client's data is (n, batch): a dropout mask is drawn in that layout
    columns: bool = False
    #: the request's layout is NHWC: a flatten takes the pixels in that order
    channels_last: bool = False

    def samples(self) -> list[tuple[int, ...]]:
        """One sample's shape into each layer, and out of the last."""
        samples = [self.input_shape]
        for layer in self.layers:
            samples.append(layer.sample_out(samples[-1]))
        return samples


def tiny(out: Array, axis: int, groups: int = 1) -> Array:
    """Indices whose variance is under MIN_VARIANCE: for axis 0 the features (channels) over
    the batch (and H and W), for axis 1 the samples over their features (images: over any
    one of their ``groups`` groups of contiguous channels)."""
    if out.ndim == 2:
        return np.flatnonzero(out.var(axis=axis) < MIN_VARIANCE)
    if axis == 0:
        return np.flatnonzero(out.var(axis=(0, 2, 3)) < MIN_VARIANCE)
    per_group = out.reshape(out.shape[0], groups, -1).var(axis=2)
    return np.flatnonzero(per_group.min(axis=1) < MIN_VARIANCE)


def generate_layered(spec: LayeredSpec, deadline: Deadline = NO_DEADLINE) -> Problem:
    """A canonical problem drawn from the seed, conditioned as the module says.

    Priced from the spec alone (service.core.request_costs.layered_exercise_cost) before
    this runs.
    """
    rng = np.random.default_rng(spec.seed)

    def rounded(array: Array) -> Array:
        return array if spec.decimals is None else np.round(array, spec.decimals)

    batch, following = spec.batch_size, spec.layers[0]
    inputs = rounded(rng.normal(size=(batch, *spec.input_shape)))
    for axis in (0, 1):
        if following.spreads(axis):
            inputs = _respread(inputs, axis, following.groups, rng, rounded)
    layers: list[Layer] = []
    x = inputs
    for i, layer_spec in enumerate(spec.layers):
        deadline.check()
        following = spec.layers[i + 1] if i + 1 < len(spec.layers) else None
        layer, x = _drawn_and_conditioned(rng, rounded, layer_spec, x, following, spec)
        layers.append(layer)
        if following is not None and following.spreads(1):
            inputs, x = _respread_samples(inputs, x, following.groups, layers, rng, rounded)
    n_out = x.shape[1]
    if spec.labels or spec.loss in ("cross_entropy", "svm"):
        labels = rng.permutation(np.arange(batch) % n_out)  # every class, when batch >= n_out
        targets = labels.astype(np.int64) if spec.labels else np.eye(n_out)[labels]
    else:
        targets = _targets(rng, spec.loss, batch, n_out, rounded)
    return Problem(
        inputs=inputs,
        targets=targets,
        layers=tuple(layers),
        loss=spec.loss,
        reduction=spec.reduction,
        dz_scale=spec.dz_scale,
    )


def _respread(x: Array, axis: int, groups: int, rng, rounded) -> Array:
    """The inputs with their nearly constant features or channels (axis 0) or samples
    (axis 1) redrawn, at most BUDGET times as many as there are."""
    x, budget = x.copy(), BUDGET * x.shape[1 - axis]
    for _ in range(REDRAWS):
        bad = tiny(x, axis, groups)[:budget]
        if not bad.size:
            break
        budget -= bad.size
        if axis == 0:
            x[:, bad] = rounded(rng.normal(size=(x.shape[0], bad.size, *x.shape[2:])))
        else:
            x[bad, :] = rounded(rng.normal(size=(bad.size, *x.shape[1:])))
    return x


def _respread_samples(
    inputs: Array, out: Array, groups: int, layers: list[Layer], rng, rounded
) -> tuple[Array, Array]:
    """The samples whose features reach a layernorm (a group of a groupnorm) nearly alike,
    redrawn from the inputs up, only those rows (images) replayed through the layers below
    (a dropout keeps its mask's rows); at most BUDGET * batch rows in all.  Not below a
    train-mode batchnorm, which mixes the samples: there it is left as drawn."""
    if any(layer.kind == "batchnorm" and _trains(layer) for layer in layers):
        return inputs, out
    inputs, out, budget = inputs.copy(), out.copy(), BUDGET * inputs.shape[0]
    for _ in range(REDRAWS):
        bad = tiny(out, 1, groups)[:budget]
        if not bad.size:
            break
        budget -= bad.size
        inputs[bad] = rounded(rng.normal(size=(bad.size, *inputs.shape[1:])))
        rows = inputs[bad]
        for layer in layers:
            if layer.kind == "dropout":
                rows = _activate(layer, rows * layer.settings["cache"].scaled[bad])
            else:
                rows = _forward(layer, rows)
        out[bad] = rows
    return inputs, out


def _trains(layer: Layer) -> bool:
    return layer.settings.get("mode") in (None, "train")


def generation_passes(spec: LayeredSpec) -> int:
    """Forward passes the generator runs at most: one as it draws, and BUDGET more below
    each norm (the redrawn units, filters, samples or dropout seeds never add up to more),
    twice for a groupnorm (its convolution's filters, then its samples).  The cost model
    prices them as whole passes of the network."""
    norms = sum((layer.kind in NORMS) + (layer.kind == "groupnorm") for layer in spec.layers)
    return 1 + BUDGET * norms


def _activate(layer: Layer, z: Array) -> Array:
    with np.errstate(all="ignore"):
        return get_activation(layer.activation).forward(z)


def _forward(layer: Layer, x: Array) -> Array:
    """The layer's output, only to see how spread it is: a problem /v1/gradients refuses
    (an unbiased variance over a batch of 1 divides by 0) is refused after it is drawn,
    by that endpoint's schema, so a NaN here is no error (it is never "tiny")."""
    with np.errstate(all="ignore"):
        z, _ = KINDS[layer.kind].forward(x, layer.params, layer.settings)
    return _activate(layer, z)


def _drawn_and_conditioned(
    rng, rounded, spec: LayerSpec, x: Array, following: LayerSpec | None, whole: LayeredSpec
) -> tuple[Layer, Array]:
    """One layer drawn, and its output; redrawn while a train-mode batchnorm next would see
    a feature (a channel) nearly constant over the batch (see the module's docstring): a
    dense layer's offending units, a convolution's offending filters (at most BUDGET times
    as many as it has), a dropout's seed (at most once).  Below a groupnorm, a convolution's
    filters whose channel is nearly constant in a sample in which its group is (a filter
    dead there; the samples still nearly constant are then redrawn, generate_layered)."""
    layer = _draw(rng, rounded, spec, x.shape[1:], whole)
    out = _forward(layer, x)
    if following is None or spec.kind not in ("dense", "conv2d", "dropout"):
        return layer, out
    if following.spreads(0):

        def culprits(out: Array) -> Array:
            return tiny(out, 0)

    elif following.kind == "groupnorm" and spec.kind == "conv2d":

        def culprits(out: Array) -> Array:
            return _dead_in_tiny_groups(out, following.groups)

    else:
        return layer, out
    if spec.kind == "dropout":
        if culprits(out).size:
            layer = _draw(rng, rounded, spec, x.shape[1:], whole)
            out = _forward(layer, x)
        return layer, out
    elementwise = get_activation(spec.activation) is not get_activation("softmax")
    params = {name: value.copy() for name, value in layer.params.items()}
    budget = BUDGET * spec.units
    for _ in range(REDRAWS):
        bad = culprits(out)[:budget]
        if not bad.size or (not elementwise and budget < spec.units):
            break
        budget -= bad.size if elementwise else spec.units
        fresh = _draw(rng, rounded, spec, x.shape[1:], whole, units=bad.size)
        if spec.kind == "dense":  # (n_in, units): the columns
            params["weights"][:, bad] = fresh.params["weights"]
        else:  # (F, C, HH, WW): the filters
            params["weights"][bad] = fresh.params["weights"]
        if "biases" in params:
            params["biases"][bad] = fresh.params["biases"]
        layer = layer.with_params(**params)
        if not elementwise:
            out = _forward(layer, x)
        elif spec.kind == "conv2d":  # only the redrawn filters' channels
            out[:, bad] = _forward(fresh, x)
        else:  # only the redrawn units' columns
            z = x @ fresh.params["weights"]
            if "biases" in params:
                z += fresh.params["biases"]
            out[:, bad] = _activate(layer, z)
    return layer, out


def _dead_in_tiny_groups(out: Array, groups: int) -> Array:
    """The channels of (N, C, H, W) images that are nearly constant in a sample in which
    their group (of ``groups`` groups of contiguous channels) is nearly constant."""
    n, channels = out.shape[:2]
    tiny_groups = out.reshape(n, groups, -1).var(axis=2) < MIN_VARIANCE  # (N, G)
    flat_channels = out.reshape(n, channels, -1).var(axis=2) < MIN_VARIANCE  # (N, C)
    in_tiny_group = np.repeat(tiny_groups, channels // groups, axis=1)
    return np.flatnonzero((in_tiny_group & flat_channels).any(axis=0))


def _draw(
    rng,
    rounded,
    spec: LayerSpec,
    sample: tuple[int, ...],
    whole: LayeredSpec,
    units: int | None = None,
) -> Layer:
    """One layer of ``spec``'s kind over one sample's shape in (``units``: only that many of
    a dense layer's columns, of a convolution's filters).  A norm's vectors hold one value
    per feature of rows, per channel of images."""
    s = spec.settings
    if spec.kind == "dense":
        (n_in,), n_out = sample, spec.units if units is None else units
        weights = rounded(rng.normal(scale=1 / np.sqrt(n_in), size=(n_in, n_out)))
        biases = rounded(rng.normal(scale=0.5, size=n_out)) if spec.bias else None
        return dense_layer(weights, biases, spec.activation)
    if spec.kind == "conv2d":  # canonical (F, C, HH, WW), scaled by the fan-in as dense
        shape = (spec.units if units is None else units, sample[0], *s["size"])
        params = {"weights": rounded(rng.normal(scale=1 / np.sqrt(prod(shape[1:])), size=shape))}
        if spec.bias:
            params["biases"] = rounded(rng.normal(scale=0.5, size=shape[0]))
        settings = {"stride": s["stride"], "pad": s["pad"]}
        return Layer("conv2d", params, spec.activation, settings)
    if spec.kind in ("maxpool2d", "avgpool2d"):
        settings = {"pool": s["pool"], "stride": s["stride"] or s["pool"]}
        if "ties" in s:
            settings["ties"] = s["ties"]
        return Layer(spec.kind, {}, spec.activation, settings)
    if spec.kind == "flatten":
        return Layer("flatten", {}, spec.activation, {"channels_last": whole.channels_last})
    if spec.kind == "dropout":
        seed = int(rng.integers(0, 2**31))
        return dropout_layer(
            s["keep_prob"],
            seed=seed,
            columns=whole.columns,
            activation=spec.activation,
            channels_last=whole.channels_last,
        )
    n_in = sample[0]  # a norm's vectors: one value per feature of rows, per channel of images
    params = {
        "gamma": rounded(rng.uniform(0.6, 1.6, size=n_in)),
        "beta": rounded(rng.normal(scale=0.5, size=n_in)),
    }
    settings: dict[str, Any] = {"eps": s.get("eps")}
    if spec.kind == "groupnorm":
        settings = {"groups": s["groups"]} | settings
    if spec.kind == "batchnorm":
        settings |= {name: s.get(name) for name in ("mode", "variance", "momentum")}
        running = s.get("mode") == "eval" or s.get("running")
        settings["running_mean"] = rounded(rng.normal(scale=0.5, size=n_in)) if running else None
        settings["running_var"] = rounded(rng.uniform(0.6, 2.0, size=n_in)) if running else None
    return Layer(spec.kind, params, spec.activation, settings)


def network_shape(spec: LayeredSpec) -> NetworkShape:
    """The spec's shapes, before anything is drawn (what NetworkShape.of would read of the
    generated problem): a dropout answers its drawn mask; a batchnorm with running statistics
    holds them; a convolution, a pool or a groupnorm is sized by its settings; a norm's
    vectors hold one value per feature (rows) or per channel (images)."""
    batch, shapes, samples = spec.batch_size, [], spec.samples()
    for layer, sample, out in zip(spec.layers, samples, samples[1:]):
        s, parameters, held, state, settings = layer.settings, (), (), (), ()
        if layer.kind == "dense":
            parameters = ((sample[0], layer.units), (layer.units,))[: 1 + layer.bias]
        elif layer.kind == "conv2d":
            filters = (layer.units, sample[0], *s["size"])
            parameters = (filters, (layer.units,))[: 1 + layer.bias]
            settings = (("stride", s["stride"]), ("pad", s["pad"]))
        elif layer.kind in ("maxpool2d", "avgpool2d"):
            settings = (("pool", s["pool"]), ("stride", s["stride"] or s["pool"]))
        elif layer.kind == "dropout":
            state = (("mask", (batch, prod(sample))),)
        elif layer.kind in NORMS:
            vector = (sample[0],)
            parameters = (vector, vector)
            if layer.kind == "batchnorm" and (s.get("mode") == "eval" or s.get("running")):
                held = (vector, vector)
            if layer.kind == "groupnorm":
                settings = (("groups", s["groups"]),)
        shapes.append(
            LayerShape(
                layer.kind,
                prod(sample),
                prod(out),
                parameters,
                layer.activation,
                held=held,
                state=state,
                in_shape=sample,
                out_shape=out,
                settings=settings,
            )
        )
    return NetworkShape(batch, prod(spec.input_shape), tuple(shapes), labels=spec.labels)
