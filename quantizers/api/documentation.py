"""GET /documentation: the routes and examples, generated from the OpenAPI schema."""

from __future__ import annotations

import functools
from typing import Any

from drf_spectacular.generators import SchemaGenerator


@functools.cache
def _schema_summary() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The OpenAPI schema and its routes, generated once per worker (the routes do not change while it runs)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    endpoints = [
        {"path": path, "method": method.upper(), "summary": op.get("summary", ""), "tags": op.get("tags", [])}
        for path, operations in schema.get("paths", {}).items()
        for method, op in operations.items()
    ]
    return schema, endpoints


def documentation(base_url: str) -> dict[str, Any]:
    """The documentation body, its links under `base_url` (the server's root URL)."""
    schema, endpoints = _schema_summary()
    base = base_url.rstrip("/")
    return {
        "title": schema["info"]["title"],
        "version": schema["info"]["version"],
        "description": schema["info"].get("description", ""),
        "endpoints": endpoints,
        "openapi_schema": f"{base}/api/schema/",
        "swagger_ui": f"{base}/api/docs/",
        "redoc": f"{base}/api/redoc/",
        "examples": {
            "create_instance": f"curl -X POST \"{base}/instances/custom_quantizer\" -H \"Content-Type: "
                               "application/json\" -d '{\"quantization_type\": \"INT8\", \"num_bits\": 8, "
                               "\"symmetric\": true}'",
            "quantize": f"curl -X POST \"{base}/instances/default/quantize\" -H \"Content-Type: application/json\" "
                        "-d '{\"data\": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]], \"validate\": true}'",
        },
    }
