"""The one error shape: RFC 9457 problem details, documented in OpenAPI."""

from marshmallow import Schema, fields


class ProblemDetailsSchema(Schema):
    type = fields.String(metadata={"example": "about:blank"})
    title = fields.String(metadata={"example": "Unprocessable Content"})
    status = fields.Integer(metadata={"example": 422})
    detail = fields.String()
    errors = fields.Dict(
        keys=fields.String(metadata={"example": "layers.1.biases"}),
        values=fields.List(fields.String()),
        metadata={
            "description": (
                "field path -> messages, for validation errors: at most 50 paths, each path "
                "and message bounded (client text is quoted up to 200 characters)"
            )
        },
    )
    errors_omitted = fields.Integer(
        metadata={
            "description": "how many more field errors there were than `errors` lists",
            "example": 99950,
        }
    )
    request_id = fields.String(
        metadata={"description": "the X-Request-ID of the request, to find it in the logs"}
    )
