"""marshmallow schemas: requests, responses, and the OpenAPI document built from them."""
