"""The one error shape: RFC 9457 problem details, documented in OpenAPI."""

from marshmallow import Schema, fields


class ProblemDetailsSchema(Schema):
    # the four members service.http.errors.problem always writes
    type = fields.String(required=True, metadata={"example": "about:blank"})
    title = fields.String(
        required=True,
        metadata={"example": "Unprocessable Entity", "description": "the status code's phrase"},
    )
    status = fields.Integer(required=True, metadata={"example": 422})
    detail = fields.String(required=True)
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
