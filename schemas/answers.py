"""The answer of POST /v1/gradients (and of an exercise's solution), for the OpenAPI document.

The view writes the answer straight from GradientsRequest.present; these schemas
describe it, field by field, so that the document says exactly what comes back.
"""

from __future__ import annotations

from marshmallow import fields

from .base import StrictSchema
from .fields import Array, Number


class LayerGradientsSchema(StrictSchema):
    z = Array(ndims=(2, 4), metadata={"description": "the layer's output before its activation"})
    a = Array(ndims=(2, 4), metadata={"description": "activation (included by default)"})
    dz = Array(ndims=(2, 4), metadata={"description": "dL/dz, when included"})
    dx = Array(
        ndims=(2, 4),
        metadata={"description": "dL/d(the layer's input), in the inputs' layout, when included"},
    )
    dW = Array(
        ndims=(2, 4),
        metadata={"description": "dense, conv2d: in the client's weights layout"},
    )
    db = Array(
        ndims=(1, 2, 4),
        metadata={
            "description": "dense, conv2d: in the client's bias shape; absent without a bias"
        },
    )
    dgamma = Array(ndims=(1, 2, 4), metadata={"description": "norms: in the shape gamma was sent"})
    dbeta = Array(ndims=(1, 2, 4), metadata={"description": "norms: in the shape beta was sent"})
    running_mean = Array(
        ndims=(1, 2, 4),
        metadata={"description": "batchnorm in train mode, when sent: updated, in the shape sent"},
    )
    running_var = Array(
        ndims=(1, 2, 4),
        metadata={"description": "batchnorm in train mode, when sent: updated, in the shape sent"},
    )
    mask = Array(
        ndims=(2, 4),
        metadata={"description": "dropout with a seed: the mask drawn, in the inputs' layout"},
    )


class UpdatedLayerSchema(StrictSchema):
    """A layer's parameters after one step of gradient descent, in the shapes sent."""

    weights = Array(ndims=(2, 4), metadata={"description": "dense, conv2d"})
    biases = Array(
        ndims=(1, 2, 4), metadata={"description": "dense, conv2d; absent without a bias"}
    )
    gamma = Array(ndims=(1, 2, 4), metadata={"description": "norms"})
    beta = Array(ndims=(1, 2, 4), metadata={"description": "norms"})


class LayerCheckSchema(StrictSchema):
    """The largest relative error over each of the layer's gradients."""

    dW = Number(metadata={"description": "dense"})
    db = Number(allow_none=True, metadata={"description": "dense; null without a bias"})
    dgamma = Number(metadata={"description": "norms"})
    dbeta = Number(metadata={"description": "norms"})
    dx = Number(metadata={"description": 'when "dx" is included'})


class GradientCheckSchema(StrictSchema):
    epsilon = Number(required=True, metadata={"description": "the central difference's step"})
    max_relative_error = Number(required=True)
    layers = fields.List(fields.Nested(LayerCheckSchema), required=True)


class GradientsResponseSchema(StrictSchema):
    loss = Number(
        required=True, allow_none=True, metadata={"description": "null when upstream was sent"}
    )
    layers = fields.List(fields.Nested(LayerGradientsSchema), required=True)
    updated_layers = fields.List(fields.Nested(UpdatedLayerSchema))
    gradient_check = fields.Nested(GradientCheckSchema)
