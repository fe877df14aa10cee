"""OpenAPI postprocessing: what the views and serializers cannot say on their own.

Registered in SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] after drf-spectacular's enum hook. It makes the schema
describe what the server really enforces, so that a client (or schemathesis) generating requests from it is not
surprised:

- `instance_id` path parameters carry the id pattern the services check (1-64 of A-Z a-z 0-9 _ -), `job_id` ones
  are UUIDs;
- request bodies reject unknown keys (`additionalProperties: false`), as `StrictSerializer` and the engine's
  config validation do, and a body with required fields is a required body;
- array values are float32: their JSON numbers are bounded by the float32 range;
- custom_quantization_config entries take the per-layer fields only;
- every error response is `application/json` (binary renderers fall back to JSON for errors);
- 401 on every operation that needs a token (QUANTIZER_REQUIRE_AUTH) and 406 on every operation (an Accept header
  no renderer satisfies) are documented;
- OpenAPI links from `POST /instances/{id}` to the operations on that instance and to its deletion, and from the
  deletion to the reads that then answer 404: create -> use -> delete, the path a stateful test walks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..models import INSTANCE_ID_PATTERN

# The largest number that still rounds to a finite float32 (2^128 - 2^103 is the midpoint to infinity, which
# rounds to even: to infinity): what the JSON parsers accept, so the schema says exactly that.
F32_ROUNDING_MAX = float(np.nextafter(np.float64(2.0**128 - 2.0**103), 0.0))
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
EXTRA_ERRORS = {
    401: "Authentication credentials were not provided or are invalid (QUANTIZER_REQUIRE_AUTH is on): send "
         "`Authorization: Token <key>`",
    406: "No renderer satisfies the Accept header",
    503: "The database is unavailable (code database.unavailable); retry after the Retry-After seconds",
}
# Request components whose `data` holds float32 values.
FLOAT_DATA_COMPONENTS = ("QuantizationRequest", "QuantizationParamsRequest", "CalibrationRequest", "EvaluationRequest")
# The operation that creates an instance, and where its id leads.
CREATE_OPERATION = "instances_create"
DELETE_OPERATION = "instances_destroy"
USE_OPERATIONS = {
    "GetConfig": "instances_config_retrieve",
    "ReplaceConfig": "instances_config_update",
    "ChangeConfig": "instances_config_partial_update",
    "Quantize": "instances_quantize_create",
    "Dequantize": "instances_dequantize_create",
    "QuantizeDequantize": "instances_quantize_dequantize_create",
    "Calibrate": "instances_calibrate_create",
    "ComputeParams": "instances_compute_params_create",
    "Evaluate": "instances_evaluate_create",
    "GetStats": "instances_stats_retrieve",
    "ClearCache": "instances_clear_cache_create",
    "ResetStats": "instances_reset_stats_create",
    "ExportParameters": "instances_parameters_retrieve",
    "ImportParameters": "instances_parameters_create",
    "UploadNumpy": "instances_upload_numpy_create",
}
# After a delete these answer 404 for the deleted id.
GONE_AFTER_DELETE = {"GetConfig": "instances_config_retrieve", "GetStats": "instances_stats_retrieve",
                     "ExportParameters": "instances_parameters_retrieve"}
SAME_ID = {"instance_id": "$request.path.instance_id"}


def postprocess_schema(result: dict[str, Any], generator: Any = None, request: Any = None, public: bool = True,
                       **kwargs: Any) -> dict[str, Any]:
    schemas = result.get("components", {}).get("schemas", {})
    operations = {op["operationId"]: op for op in _operations(result)}
    _strict_json_bodies(operations.values(), schemas)
    _float32_data(schemas)
    _layer_overrides(schemas)
    for op in operations.values():
        _instance_id_pattern(op)
        _job_id_format(op)
        _body_required(op, schemas)
        _json_errors(op)
        _extra_errors(op, result)
    _links(operations)
    _report_headers(operations)
    return result


def _operations(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in result.get("paths", {}).values() for method, op in item.items()
            if method in ("get", "put", "post", "patch", "delete") and "operationId" in op]


def _strict_json_bodies(operations: Any, schemas: dict[str, Any]) -> None:
    """JSON bodies reject unknown keys (multipart forms ignore extra fields, so they stay open)."""
    for op in operations:
        media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        ref = media.get("schema", {}).get("$ref", "")
        schema = schemas.get(ref.rsplit("/", 1)[-1]) if ref else None
        if schema and schema.get("type") == "object" and "properties" in schema:
            schema["additionalProperties"] = False


def _float32_data(schemas: dict[str, Any]) -> None:
    for name in FLOAT_DATA_COMPONENTS:
        node = schemas.get(name, {}).get("properties", {}).get("data")
        while isinstance(node, dict) and node.get("type") == "array":
            node = node.get("items")
        if isinstance(node, dict) and node.get("type") == "number":
            node.update({"minimum": -F32_ROUNDING_MAX, "maximum": F32_ROUNDING_MAX})


def _layer_overrides(schemas: dict[str, Any]) -> None:
    """custom_quantization_config maps a layer name to the fields engine.LayerOverride takes, and nothing else."""
    for schema in schemas.values():
        prop = schema.get("properties", {}).get("custom_quantization_config")
        if prop is not None and prop.get("type") == "object":
            # null (or an absent key) keeps the instance's own value.
            prop["additionalProperties"] = {"type": "object", "additionalProperties": False, "properties": {
                "quantization_type": {"allOf": [{"$ref": "#/components/schemas/QuantizationTypeEnum"}],
                                      "nullable": True},
                "num_bits": {"type": "integer", "minimum": 2, "maximum": 16, "nullable": True},
                "symmetric": {"type": "boolean", "nullable": True},
                "per_channel": {"type": "boolean", "nullable": True},
            }}


def _instance_id_pattern(op: dict[str, Any]) -> None:
    for param in op.get("parameters", []):
        if param.get("in") == "path" and param.get("name") == "instance_id":
            param["schema"] = {"type": "string", "pattern": INSTANCE_ID_PATTERN, "minLength": 1, "maxLength": 64}
            param.setdefault("description", "1-64 characters of A-Z a-z 0-9 _ -")


def _job_id_format(op: dict[str, Any]) -> None:
    for param in op.get("parameters", []):
        if param.get("in") == "path" and param.get("name") == "job_id":
            param["schema"] = {"type": "string", "format": "uuid"}
            param.setdefault("description", "The job's id, as POST /instances/{instance_id}/jobs answered it")


def _body_required(op: dict[str, Any], schemas: dict[str, Any]) -> None:
    body = op.get("requestBody")
    if not body:
        return
    for media in body.get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        component = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else {}
        if component.get("required"):
            body["required"] = True


def _json_errors(op: dict[str, Any]) -> None:
    for status, response in op.get("responses", {}).items():
        if str(status).startswith(("4", "5")) and "content" in response:
            response["content"] = {"application/json": {"schema": ERROR_REF}}


def _extra_errors(op: dict[str, Any], result: dict[str, Any]) -> None:
    responses = op.setdefault("responses", {})
    security = op.get("security", result.get("security"))
    for status, description in EXTRA_ERRORS.items():
        if status == 401 and not any(requirement for requirement in security or []):
            continue
        responses.setdefault(str(status), {"description": description,
                                           "content": {"application/json": {"schema": ERROR_REF}}})


REPORTING_OPERATIONS = ("instances_quantize_create", "instances_quantize_dequantize_create")


def _report_headers(operations: dict[str, dict[str, Any]]) -> None:
    """The X-Report-* headers of an answer to a call with report (binary answers have no body to carry it)."""
    from .views import REPORT_HEADERS  # the views import this package's schema module: import when generating

    for op_id in REPORTING_OPERATIONS:
        ok = operations.get(op_id, {}).get("responses", {}).get("200")
        if ok is None:
            continue
        headers = ok.setdefault("headers", {})
        for header, figure in REPORT_HEADERS.items():
            number = {"type": "integer"} if figure == "clipped" else {"type": "string", "description": "a number"}
            headers[header] = {"description": f"With report: the report's {figure}"
                               + (" (`null` when the SQNR is null: exact reconstruction or an all-zero input)"
                                  if figure == "sqnr_db" else ""), "schema": number}


def _links(operations: dict[str, dict[str, Any]]) -> None:
    create, delete = operations.get(CREATE_OPERATION), operations.get(DELETE_OPERATION)
    if create is None or delete is None:
        return
    uses = {name: op_id for name, op_id in USE_OPERATIONS.items() if op_id in operations}
    _add_links(create, {**uses, "Delete": DELETE_OPERATION})
    for op_id in uses.values():
        _add_links(operations[op_id], {"Delete": DELETE_OPERATION})
    _add_links(delete, {name: op_id for name, op_id in GONE_AFTER_DELETE.items() if op_id in operations})


def _add_links(op: dict[str, Any], targets: dict[str, str]) -> None:
    ok = op.get("responses", {}).get("200")
    if ok is None:
        return
    links = ok.setdefault("links", {})
    for name, op_id in targets.items():
        links[name] = {"operationId": op_id, "parameters": dict(SAME_ID)}
