"""The batchnorm layer at the boundary: CS231n's batchnorm_forward/backward, makemore's variant.

Its fields are canonical already except for shapes: gamma, beta and the running statistics
are flattened for the core (service.core.layers.batchnorm) and answered in the shapes sent.
The rules that need more than one field live in ``chain``: eval mode needs the running
statistics, they come in pairs, a variance is never negative, and the unbiased variance
needs two samples.

It takes both kinds of data: rows (batch, n), one vector entry per feature, and images
(spatial batchnorm, CS231n's spatial_batchnorm_forward), one per channel, each normalised
over N, H and W: the vectors are then (C,), or (1, C, 1, 1) in NCHW, (1, 1, 1, C) in NHWC.
"""

from __future__ import annotations

import numpy as np
from marshmallow import validate

from service.core import Layer
from service.core.layers.batchnorm import MODES, VARIANCES

from ..conventions import Convention
from ..fields import Number, one_of
from .base import Chained, LayerType
from .per_feature import (
    CHANNEL_SHAPES,
    SHAPES,
    NormLayerSchema,
    channel_errors,
    vector_errors,
    vector_field,
)

RUNNING = ("running_mean", "running_var")
#: rows or images: the vectors' shapes for each
BOTH = f"{SHAPES}; on images, one per channel, {CHANNEL_SHAPES}"


def both_field(name: str, required: bool = False, extra: str = "") -> object:
    return vector_field(name, required, extra, shapes=BOTH, ndims=(1, 2, 4))


class BatchnormLayerSchema(NormLayerSchema):
    type = one_of(("batchnorm",), "layer type", required=True)
    gamma = both_field("gamma", required=True, extra=" The answer's dgamma has its shape.")
    beta = both_field("beta", required=True, extra=" The answer's dbeta has its shape.")
    mode = one_of(
        MODES,
        "mode",
        load_default="train",
        metadata={
            "description": (
                "train: normalise with the batch's statistics; eval: with running_mean and "
                "running_var (then required)"
            )
        },
    )
    variance = one_of(
        VARIANCES,
        "variance",
        load_default="biased",
        metadata={
            "description": (
                "the batch variance: biased divides by batch (CS231n, PyTorch), unbiased by "
                "batch - 1 (makemore); also the one the running average takes"
            )
        },
    )
    momentum = Number(
        load_default=0.9,
        validate=validate.Range(min=0, max=1, error="must be in [0, 1] (got {input})."),
        metadata={
            "minimum": 0,
            "maximum": 1,
            "description": (
                "train mode with running statistics: running = momentum * running + "
                "(1 - momentum) * batch statistic, as CS231n"
            ),
        },
    )
    running_mean = both_field(
        "running_mean",
        extra=" Required in eval mode; in train mode, when sent with running_var, the answer "
        "holds it updated.",
    )
    running_var = both_field(
        "running_var",
        extra=" Not negative. Required in eval mode; in train mode, when sent with "
        "running_mean, the answer holds it updated.",
    )


def chain(layer: dict, c: Convention, batch: int, width: int | tuple, source: str) -> Chained:
    """Each feature's (or channel's) vectors must match the input; the settings must fit
    together.  A norm keeps its input's shape, so the layers above are checked whatever is
    wrong here."""
    names = ("gamma", "beta", *RUNNING)
    if isinstance(width, tuple):  # images: one value per channel, statistics over N, H, W
        channels, height, image_width = width
        errors = channel_errors(layer, names, c, channels, source)
        count = batch * height * image_width
        counted = f"batch x height x width = {batch} x {height} x {image_width} = {count}"
    else:
        errors = vector_errors(layer, names, c, batch, width, source)
        count, counted = batch, f"a batch of {batch}"
    sent = [name for name in RUNNING if layer[name] is not None]
    if layer["mode"] == "eval":
        for name in RUNNING:
            if name not in sent:
                errors[name] = [
                    'missing: mode "eval" normalises with the running statistics instead of the '
                    "batch's, so running_mean and running_var are both required, each shaped "
                    'like gamma. Send them, or use mode "train" (batch statistics).'
                ]
    elif len(sent) == 1:
        (missing,) = set(RUNNING) - set(sent)
        errors[missing] = [
            f"missing: {sent[0]} was sent without {missing}; in train mode the running "
            f"statistics are updated together (momentum * running + (1 - momentum) * batch "
            f"statistic). Send both, shaped like gamma, or neither."
        ]
    running_var = layer["running_var"]
    if running_var is not None and "running_var" not in errors:
        negative = np.argwhere(running_var < 0)
        if negative.size:
            index = tuple(int(k) for k in negative[0])
            where = "running_var" + "".join(f"[{k}]" for k in index)
            errors["running_var"] = [
                f"{where} is {float(running_var[index]):g}: a variance is never negative "
                f"(the square root of running_var + eps would not be a number). Send the "
                f"running variances, each >= 0."
            ]
    if layer["mode"] == "train" and layer["variance"] == "unbiased" and count < 2:
        errors["variance"] = [
            f'"unbiased" divides the sum of squares by batch - 1, which is 0 with {counted}. '
            f'Send at least 2 samples, or use variance "biased" (divides by batch).'
        ]
    return Chained(errors, width)


def to_core(layer: dict, c: Convention, width: int) -> Layer:
    settings = {name: layer[name] for name in ("eps", "mode", "variance", "momentum")}
    for name in RUNNING:
        settings[name] = None if layer[name] is None else layer[name].reshape(-1)
    return Layer(
        "batchnorm",
        {"gamma": layer["gamma"].reshape(-1), "beta": layer["beta"].reshape(-1)},
        layer["activation"],
        settings,
    )


def layouts(layer: dict) -> dict:
    """dgamma and dbeta in the shapes gamma and beta were sent; the updated running
    statistics (train mode, both sent) in theirs."""
    shapes = {"dgamma": layer["gamma"].shape, "dbeta": layer["beta"].shape}
    if layer["mode"] == "train" and all(layer[name] is not None for name in RUNNING):
        shapes |= {name: layer[name].shape for name in RUNNING}
    return shapes


BATCHNORM = LayerType(
    name="batchnorm",
    schema=BatchnormLayerSchema,
    chain=chain,
    to_core=to_core,
    layouts=layouts,
    takes="any",
)
