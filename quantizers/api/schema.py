"""The views' OpenAPI description, applied to them from here (`urls.py` imports this module before it builds the
routes). The query parameters are not written here: `AutoSchema` derives them from each view's `query_options`.
What the decoration cannot say is added by `schema_hooks.postprocess_schema`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers


class AutoSchema(openapi.AutoSchema):
    """DEFAULT_SCHEMA_CLASS: drf-spectacular's, plus the query options the view declares. (Defined before the
    decoration below, which resolves DEFAULT_SCHEMA_CLASS, so that it is there when this module is mid-import.)"""

    def get_override_parameters(self) -> list[Any]:
        declared = getattr(self.view, "query_options", None)
        return [*(declared.parameters() if declared else []), *super().get_override_parameters()]


from . import views  # noqa: E402
from .job_serializers import JobCreated, JobReport, JobResponse  # noqa: E402
from .serializers import (  # noqa: E402
    ArrayResponse,
    CalibrationResponse,
    CalibrationSerializer,
    DequantizationSerializer,
    ErrorResponse,
    EvaluationResponse,
    EvaluationSerializer,
    EvaluationUploadRequest,
    HealthResponse,
    ImportExportParamsSerializer,
    JobUploadRequest,
    MessageResponse,
    QuantizationParamsSerializer,
    QuantizationResponse,
    QuantizationSerializer,
    QuantizerConfigModel,
    ScaleZeroPointResponse,
    StatsResponse,
    UploadRequest,
    UploadResponse,
)

ERROR_DESCRIPTIONS = {400: "Invalid input", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
                      409: "Conflict", 413: "Payload too large", 415: "Unsupported media type"}
INSTANCE_ERRORS = (400, 404, 405)
BODY_ERRORS = (400, 404, 405, 413, 415)
BINARY_BODY = {"application/x-npy": OpenApiTypes.BINARY, "application/octet-stream": OpenApiTypes.BINARY}
# Answers may also be an .npz: the result with its scale, zero point and axis.
BINARY_ANSWER = {**BINARY_BODY, "application/x-npz": OpenApiTypes.BINARY}
BINARY_HEADERS = [
    OpenApiParameter("X-Shape", str, OpenApiParameter.HEADER, description="application/octet-stream bodies: the "
                     "shape, e.g. 2000,2000 (1-4 dimensions)."),
    OpenApiParameter("X-Dtype", str, OpenApiParameter.HEADER, description="application/octet-stream bodies: "
                     "float32 (default), float64, float16, int8, uint8, int16, ...; bfloat16, float8_e4m3fn, "
                     "float8_e5m2 (bit patterns, decoded to float32), int4, uint4 (packed two per byte)."),
]
SPEC_EXAMPLE = OpenApiExample("spec example", value={"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]], "validate": True},
                              request_only=True)
CREATE_EXAMPLE = OpenApiExample("symmetric INT8", request_only=True,
                                value={"quantization_type": "INT8", "num_bits": 8, "symmetric": True})


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorResponse, description=ERROR_DESCRIPTIONS[code]) for code in codes}


def _array_responses(json_answer: Any) -> dict[Any, Any]:
    binary = {(200, media_type): schema for media_type, schema in BINARY_ANSWER.items()}
    return {(200, "application/json"): json_answer, **binary, **_errors(*BODY_ERRORS, 409)}


def _array_operation(summary: str, request: type[serializers.Serializer], answer: type[serializers.Serializer],
                     examples: list[OpenApiExample]) -> Any:
    return extend_schema(summary=summary, tags=["operations"], request={"application/json": request, **BINARY_BODY},
                         responses=_array_responses(answer), parameters=BINARY_HEADERS, examples=examples)


# ---------------------------------------------------------------------------- health and documentation
extend_schema(summary="Health check", responses={200: HealthResponse}, tags=["health"], auth=[])(views.Root)
extend_schema(summary="Readiness: database reachable and migrations applied",
              responses={200: HealthResponse, 503: ErrorResponse}, tags=["health"], auth=[])(views.Readyz)
extend_schema(summary="Prometheus metrics (text format); the API's token unless QUANTIZER_METRICS_PUBLIC",
              tags=["health"], responses={(200, "text/plain"): OpenApiTypes.STR})(views.Metrics)
extend_schema(summary="API documentation and examples, generated from the OpenAPI schema", tags=["health"],
              responses={200: OpenApiTypes.OBJECT})(views.Documentation)

# ---------------------------------------------------------------------------- instances
extend_schema_view(
    list=extend_schema(summary="List instance ids", tags=["instances"],
                       responses={200: serializers.ListSerializer(child=serializers.CharField())}),
    create=extend_schema(summary="Create an instance", request=QuantizerConfigModel, tags=["instances"],
                         responses={200: MessageResponse, **_errors(400, 405, 409, 413, 415)},
                         examples=[CREATE_EXAMPLE]),
    destroy=extend_schema(summary="Delete an instance", tags=["instances"],
                          responses={200: MessageResponse, **_errors(400, 403, 404, 405)}),
    get_config=extend_schema(summary="Get the configuration", tags=["config"],
                             responses={200: QuantizerConfigModel, **_errors(*INSTANCE_ERRORS)}),
    # operations
    quantize=_array_operation("Quantize data", QuantizationSerializer, QuantizationResponse, [SPEC_EXAMPLE]),
    dequantize=_array_operation("Dequantize codes", DequantizationSerializer, ArrayResponse, []),
    quantize_dequantize=_array_operation("Quantize then dequantize (fake quantization)", QuantizationSerializer,
                                         ArrayResponse, [SPEC_EXAMPLE]),
    upload_numpy=extend_schema(
        summary="Upload a .npy array and quantize, dequantize or quantize_dequantize it",
        tags=["operations"], request={"multipart/form-data": UploadRequest},
        responses=_array_responses(UploadResponse),
    ),
    calibrate=extend_schema(summary="Calibrate from representative data (switches the instance to CALIBRATED mode)",
                            tags=["calibration"], request=CalibrationSerializer,
                            responses={200: CalibrationResponse, **_errors(*BODY_ERRORS)}),
    evaluate=extend_schema(
        summary="Compare configurations on data and recommend the smallest that meets a target (changes nothing)",
        tags=["calibration"],
        request={"application/json": EvaluationSerializer, "multipart/form-data": EvaluationUploadRequest},
        responses={200: EvaluationResponse, **_errors(*BODY_ERRORS)},
        examples=[OpenApiExample("two candidates and a target", request_only=True, value={
            "data": [[0.1, -0.5, 2.0], [1.5, 0.25, -1.0]],
            "candidates": [{"quantization_type": "INT8"}, {"quantization_type": "INT8", "num_bits": 4}],
            "target": {"min_sqnr_db": 30}})]),
    compute_params=extend_schema(summary="Compute scale and zero point (changes nothing)", tags=["calibration"],
                                 request=QuantizationParamsSerializer,
                                 responses={200: ScaleZeroPointResponse, **_errors(*BODY_ERRORS)}),
    # statistics, cache, parameters
    stats=extend_schema(summary="Statistics", tags=["statistics"],
                        responses={200: StatsResponse, **_errors(*INSTANCE_ERRORS)}),
    clear_cache=extend_schema(summary="Clear the dequantization cache (in every worker)", tags=["statistics"],
                              request=None, responses={200: MessageResponse, **_errors(*INSTANCE_ERRORS)}),
    reset_stats=extend_schema(summary="Reset statistics", tags=["statistics"], request=None,
                              responses={200: MessageResponse, **_errors(*INSTANCE_ERRORS)}),
    export_parameters=extend_schema(summary="Export parameters", tags=["parameters"],
                                    responses={200: OpenApiTypes.OBJECT, **_errors(*INSTANCE_ERRORS)}),
    layer_params=extend_schema(summary="Parameters a layer gets", tags=["parameters"],
                               responses={200: OpenApiTypes.OBJECT, **_errors(*INSTANCE_ERRORS)}),
    create_job=extend_schema(
        summary="Quantize a model checkpoint (.safetensors or .npz; several 'file' fields for shards) as a job",
        description="The body streams to storage (QUANTIZER_MAX_MODEL_MB, not QUANTIZER_MAX_BODY_MB). Answers 202 "
                    "with Location: /jobs/{job_id}; with no broker configured the job runs in the request and the "
                    "answer carries its final status. 400 for a file refused from its header alone (pickle-based "
                    "formats, lying or truncated headers, unknown dtypes, .npz members that are not plain .npy).",
        tags=["jobs"],
        request={"multipart/form-data": JobUploadRequest, "application/octet-stream": OpenApiTypes.BINARY},
        responses={(202, "application/json"): JobCreated, **_errors(*BODY_ERRORS)},
    ),
)(views.InstanceViewSet)

# ---------------------------------------------------------------------------- model jobs
JOB_ERRORS = (400, 404, 405)
extend_schema_view(
    list=extend_schema(summary="List jobs (newest first), DRF's page envelope", tags=["jobs"],
                       responses={200: JobResponse, **_errors(400, 404)}),
    retrieve=extend_schema(summary="A job: status, progress, error, summary", tags=["jobs"],
                           responses={200: JobResponse, **_errors(*JOB_ERRORS)}),
    destroy=extend_schema(summary="Delete a job (cancelled first if needed), its files and its record", tags=["jobs"],
                          responses={200: MessageResponse, **_errors(*JOB_ERRORS)}),
    report=extend_schema(summary="The per-layer report of a succeeded job (Accept: text/csv for CSV)", tags=["jobs"],
                         responses={(200, "application/json"): JobReport, (200, "text/csv"): OpenApiTypes.STR,
                                    **_errors(*JOB_ERRORS, 409)}),
    artifact=extend_schema(summary="The quantized checkpoint of a succeeded job (a streamed file)", tags=["jobs"],
                           responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                                      **_errors(*JOB_ERRORS, 409)}),
    cancel=extend_schema(summary="Cancel a queued or running job (the record stays, status cancelled)",
                         tags=["jobs"], request=None, responses={200: JobResponse, **_errors(*JOB_ERRORS, 409)}),
)(views.JobViewSet)

# Methods mapped onto an action's route (`@get_config.mapping.put`) are not actions of their own, which
# extend_schema_view only knows: they are decorated directly.
extend_schema(summary="Replace the configuration (absent fields take the defaults)", tags=["config"],
              request=QuantizerConfigModel,
              responses={200: MessageResponse, **_errors(*BODY_ERRORS)})(views.InstanceViewSet.put_config)
extend_schema(summary="Change some configuration fields", tags=["config"], request=QuantizerConfigModel,
              responses={200: MessageResponse, **_errors(*BODY_ERRORS)})(views.InstanceViewSet.patch_config)
extend_schema(summary="Import parameters (any subset of the exported keys)", tags=["parameters"],
              request=ImportExportParamsSerializer,
              responses={200: MessageResponse, **_errors(*BODY_ERRORS)})(views.InstanceViewSet.import_parameters)
