"""GET /healthz and GET /readyz: the small bodies orchestrators and monitors read."""

from marshmallow import fields

from .base import StrictSchema


class HealthSchema(StrictSchema):
    status = fields.String(required=True, metadata={"enum": ["ok"]})


class ReadinessSchema(StrictSchema):
    status = fields.String(required=True, metadata={"enum": ["ready"]})
