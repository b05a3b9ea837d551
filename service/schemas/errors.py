"""The JSON error envelope every error response uses."""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorDetailSchema(Schema):
    code = fields.String(
        required=True, metadata={"description": "Machine-readable, e.g. price_out_of_tolerance."}
    )
    message = fields.String(required=True, metadata={"description": "For humans."})
    details = fields.Dict(
        required=True, metadata={"description": "Context: field errors, market price …"}
    )


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)
