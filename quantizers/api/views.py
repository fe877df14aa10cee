"""HTTP endpoints: validate the request, call one service or selector, render the answer."""

from __future__ import annotations

from typing import Any

import numpy as np
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from engine import OpResult, QParams

from .. import health, selectors, services
from ..exceptions import BadRequest
from .documentation import documentation as documentation_body
from .parsers import NpyParser, NpyUploadParser, OctetStreamParser, OrjsonParser
from .renderers import NpyRenderer, OctetStreamRenderer, OrjsonRenderer
from .serializers import (
    ArrayResponse,
    CalibrationResponse,
    CalibrationSerializer,
    DequantizationSerializer,
    ErrorResponse,
    HealthResponse,
    ImportExportParamsSerializer,
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

MSG_CREATED = "Quantizer instance {instance_id} created successfully"
MSG_DELETED = "Quantizer instance {instance_id} deleted successfully"
MSG_CONFIG_UPDATED = "Configuration for quantizer instance {instance_id} updated successfully"
MSG_CALIBRATED = "Calibration successful"
MSG_CACHE_CLEARED = "Cache cleared successfully"
MSG_STATS_RESET = "Statistics reset successfully"
MSG_IMPORTED = "Parameters imported successfully"
MSG_UPLOAD = "File processed successfully"


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    descriptions = {400: "Invalid input", 403: "Forbidden", 404: "Instance not found", 409: "Conflict",
                    413: "Payload too large", 415: "Unsupported media type", 405: "Method not allowed"}
    return {code: OpenApiResponse(ErrorResponse, description=descriptions[code]) for code in codes}


INSTANCE_ERRORS = (400, 404, 405)
BODY_ERRORS = (400, 404, 405, 413, 415)
BINARY_QUERY = [
    OpenApiParameter("validate", bool, description="Binary bodies only (JSON bodies carry it in the body)."),
    OpenApiParameter("channel_dim", int, description="Binary bodies only."),
    OpenApiParameter("layer_name", str, description="Binary bodies only."),
    OpenApiParameter("X-Shape", str, OpenApiParameter.HEADER, description="application/octet-stream bodies: the "
                     "shape, e.g. 2000,2000 (1-4 dimensions)."),
    OpenApiParameter("X-Dtype", str, OpenApiParameter.HEADER, description="application/octet-stream bodies: "
                     "float32 (default), float64, float16, int8, uint8, int16, ..."),
]
SPEC_EXAMPLE = OpenApiExample("spec example", value={"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]], "validate": True},
                              request_only=True)


def _params_body(params: QParams) -> dict[str, Any]:
    d = params.to_dict()
    return {"scale": d["scale"], "zero_point": d["zero_point"]}


def _shape(arr: np.ndarray) -> list[int]:
    return [int(n) for n in arr.shape]


def _result_headers(response: Response, result: OpResult) -> Response:
    """Parameters and type in headers, for every format (binary answers have no JSON body to carry them)."""
    response["X-Quantization-Type"] = result.quantization_type.name
    if result.params is not None:
        params = result.params.to_dict()
        response["X-Scale"] = ",".join(str(v) for v in np.atleast_1d(params["scale"]).tolist())
        response["X-Zero-Point"] = ",".join(str(v) for v in np.atleast_1d(params["zero_point"]).tolist())
        if params["axis"] is not None:
            response["X-Channel-Dim"] = str(params["axis"])
    return response


def _binary_options(request: Request) -> dict[str, Any]:
    """Options of a binary (.npy / octet-stream) request come from the query string."""
    query = request.query_params
    # `format` is DRF's renderer override (?format=npy), which the schema documents on these routes.
    known = {"validate", "channel_dim", "layer_name", "operation", api_settings.URL_FORMAT_OVERRIDE}
    unknown = sorted(set(query) - known)
    if unknown:
        raise BadRequest(f"unknown query parameter: {unknown[0]}", field=unknown[0])
    return {
        "validate": _query_bool(query.get("validate"), "validate", default=True),
        "channel_dim": _query_int(query.get("channel_dim"), "channel_dim"),
        "layer_name": query.get("layer_name") or None,
    }


def _array_responses(json_answer: Any) -> dict[Any, Any]:
    binary = {(200, media_type): schema for media_type, schema in BINARY_BODY.items()}
    return {(200, "application/json"): json_answer, **binary, **_errors(*BODY_ERRORS, 409)}


JSON_ONLY = ([OrjsonParser], [OrjsonRenderer])
ARRAY_IO = ([OrjsonParser, NpyParser, OctetStreamParser], [OrjsonRenderer, NpyRenderer, OctetStreamRenderer])
ACTION_IO = {
    "quantize": ARRAY_IO,
    "dequantize": ARRAY_IO,
    "quantize_dequantize": ARRAY_IO,
    "upload_numpy": ([NpyUploadParser], ARRAY_IO[1]),
}
BINARY_BODY = {"application/x-npy": OpenApiTypes.BINARY, "application/octet-stream": OpenApiTypes.BINARY}


@extend_schema(summary="Health check", responses={200: HealthResponse}, tags=["health"], auth=[])
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def root(request: Request) -> Response:
    return Response({"status": "healthy", "service": "Quantizer API"})


@extend_schema(summary="Readiness: database reachable and migrations applied",
               responses={200: HealthResponse, 503: ErrorResponse}, tags=["health"], auth=[])
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def readyz(request: Request) -> Response:
    problem = health.readiness_problem()
    if problem:
        return Response({"detail": problem, "code": "not_ready"}, status=503)
    return Response({"status": "ready", "service": "Quantizer API"})


class InstanceViewSet(viewsets.ViewSet):
    """Quantizer instances and their operations; the id is the spec's instance_id."""

    lookup_field = "instance_id"

    def _io(self) -> tuple[list[type], list[type]]:
        # The view function of a viewset sets self.request and self.action_map before parsers are chosen.
        request = getattr(self, "request", None)
        action = getattr(self, "action", None)
        if action is None and request is not None:
            action = self.action_map.get(request.method.lower())
        return ACTION_IO.get(action or "", JSON_ONLY)

    def get_parsers(self) -> list[Any]:
        return [parser() for parser in self._io()[0]]

    def get_renderers(self) -> list[Any]:
        return [renderer() for renderer in self._io()[1]]

    # ------------------------------------------------------------------ instances
    @extend_schema(summary="List instance ids", tags=["instances"],
                   responses={200: serializers.ListSerializer(child=serializers.CharField())})
    def list(self, request: Request) -> Response:
        return Response(selectors.instance_list())

    @extend_schema(
        summary="Create an instance", request=QuantizerConfigModel, tags=["instances"],
        responses={200: MessageResponse, **_errors(400, 405, 409, 413, 415)},
        examples=[OpenApiExample("symmetric INT8", request_only=True,
                                 value={"quantization_type": "INT8", "num_bits": 8, "symmetric": True})],
    )
    def create(self, request: Request, instance_id: str) -> Response:
        services.instance_create(instance_id=instance_id, config=_json_object(request))
        return Response({"message": MSG_CREATED.format(instance_id=instance_id)})

    @extend_schema(summary="Delete an instance", tags=["instances"],
                   responses={200: MessageResponse, **_errors(400, 403, 404, 405)})
    def destroy(self, request: Request, instance_id: str) -> Response:
        services.instance_delete(instance_id=instance_id)
        return Response({"message": MSG_DELETED.format(instance_id=instance_id)})

    @extend_schema(summary="Get the configuration", tags=["config"],
                   responses={200: QuantizerConfigModel, **_errors(*INSTANCE_ERRORS)})
    def get_config(self, request: Request, instance_id: str) -> Response:
        return Response(selectors.instance_config(instance_id))

    @extend_schema(summary="Replace the configuration (absent fields take the defaults)", tags=["config"],
                   request=QuantizerConfigModel, responses={200: MessageResponse, **_errors(*BODY_ERRORS)})
    def put_config(self, request: Request, instance_id: str) -> Response:
        services.instance_update_config(instance_id=instance_id, config=_json_object(request))
        return Response({"message": MSG_CONFIG_UPDATED.format(instance_id=instance_id)})

    @extend_schema(summary="Change some configuration fields", tags=["config"],
                   request=QuantizerConfigModel, responses={200: MessageResponse, **_errors(*BODY_ERRORS)})
    def patch_config(self, request: Request, instance_id: str) -> Response:
        services.instance_update_config(instance_id=instance_id, config=_json_object(request), partial=True)
        return Response({"message": MSG_CONFIG_UPDATED.format(instance_id=instance_id)})

    # ------------------------------------------------------------------ operations
    def _run(self, request: Request, instance_id: str, operation: str) -> Response:
        selectors.check_instance_id(instance_id)
        payload = request.data
        options = _binary_options(request)  # checked whatever the body: a malformed query is a 400, never ignored
        if isinstance(payload, dict) and isinstance(payload.get("data"), np.ndarray) and len(payload) == 1:
            body = {"data": payload["data"], **options}  # a .npy or octet-stream body
        else:
            serializer_cls = DequantizationSerializer if operation == "dequantize" else QuantizationSerializer
            body = _valid(serializer_cls, request)
        result = services.instance_run(
            instance_id=instance_id, operation=operation, data=body["data"], validate=body.get("validate", True),
            channel_dim=body["channel_dim"], layer_name=body["layer_name"],
        )
        out: dict[str, Any] = {"data": result.data}
        if operation == "quantize":
            out["quantization_type"] = result.quantization_type.name
        out["original_shape"] = _shape(body["data"])
        return _result_headers(Response(out), result)

    @extend_schema(summary="Quantize data", tags=["operations"],
                   request={"application/json": QuantizationSerializer, **BINARY_BODY},
                   responses=_array_responses(QuantizationResponse),
                   parameters=BINARY_QUERY, examples=[SPEC_EXAMPLE])
    def quantize(self, request: Request, instance_id: str) -> Response:
        return self._run(request, instance_id, "quantize")

    @extend_schema(summary="Dequantize codes", tags=["operations"],
                   request={"application/json": DequantizationSerializer, **BINARY_BODY},
                   responses=_array_responses(ArrayResponse), parameters=BINARY_QUERY)
    def dequantize(self, request: Request, instance_id: str) -> Response:
        return self._run(request, instance_id, "dequantize")

    @extend_schema(summary="Quantize then dequantize (fake quantization)", tags=["operations"],
                   request={"application/json": QuantizationSerializer, **BINARY_BODY},
                   responses=_array_responses(ArrayResponse),
                   parameters=BINARY_QUERY, examples=[SPEC_EXAMPLE])
    def quantize_dequantize(self, request: Request, instance_id: str) -> Response:
        return self._run(request, instance_id, "quantize_dequantize")

    @extend_schema(summary="Calibrate from representative data (switches the instance to CALIBRATED mode)",
                   tags=["calibration"], request=CalibrationSerializer,
                   responses={200: CalibrationResponse, **_errors(*BODY_ERRORS)})
    def calibrate(self, request: Request, instance_id: str) -> Response:
        selectors.check_instance_id(instance_id)
        body = _valid(CalibrationSerializer, request)
        _, exported = services.instance_calibrate(instance_id=instance_id, batches=body["data"],
                                                       channel_dim=body["channel_dim"])
        return Response({
            "message": MSG_CALIBRATED,
            "scale": exported["global_scale"],
            "zero_point": exported["global_zero_point"],
            "per_channel_scales": exported["per_channel_scales"],
            "per_channel_zero_points": exported["per_channel_zero_points"],
        })

    @extend_schema(summary="Compute scale and zero point (changes nothing)", tags=["calibration"],
                   request=QuantizationParamsSerializer,
                   responses={200: ScaleZeroPointResponse, **_errors(*BODY_ERRORS)})
    def compute_params(self, request: Request, instance_id: str) -> Response:
        selectors.check_instance_id(instance_id)
        body = _valid(QuantizationParamsSerializer, request)
        params = services.instance_compute_params(
            instance_id=instance_id, data=body["data"], channel_idx=body["channel_idx"],
            channel_dim=body["channel_dim"], layer_name=body["layer_name"],
        )
        return Response(_params_body(params))

    # ------------------------------------------------------------------ stats, cache, parameters
    @extend_schema(summary="Statistics", tags=["statistics"],
                   responses={200: StatsResponse, **_errors(*INSTANCE_ERRORS)})
    def stats(self, request: Request, instance_id: str) -> Response:
        return Response(selectors.instance_stats(instance_id))

    @extend_schema(summary="Clear the dequantization cache (in every worker)", tags=["statistics"], request=None,
                   responses={200: MessageResponse, **_errors(*INSTANCE_ERRORS)})
    def clear_cache(self, request: Request, instance_id: str) -> Response:
        services.instance_clear_cache(instance_id=instance_id)
        return Response({"message": MSG_CACHE_CLEARED})

    @extend_schema(summary="Reset statistics", tags=["statistics"], request=None,
                   responses={200: MessageResponse, **_errors(*INSTANCE_ERRORS)})
    def reset_stats(self, request: Request, instance_id: str) -> Response:
        services.instance_reset_stats(instance_id=instance_id)
        return Response({"message": MSG_STATS_RESET})

    @extend_schema(summary="Export parameters", tags=["parameters"],
                   responses={200: OpenApiTypes.OBJECT, **_errors(*INSTANCE_ERRORS)})
    def export_parameters(self, request: Request, instance_id: str) -> Response:
        return Response(selectors.instance_parameters(instance_id))

    @extend_schema(summary="Import parameters (any subset of the exported keys)", tags=["parameters"],
                   request=ImportExportParamsSerializer, responses={200: MessageResponse, **_errors(*BODY_ERRORS)})
    def import_parameters(self, request: Request, instance_id: str) -> Response:
        selectors.check_instance_id(instance_id)
        body = _valid(ImportExportParamsSerializer, request)
        services.instance_import_parameters(instance_id=instance_id, parameters=body["parameters"])
        return Response({"message": MSG_IMPORTED})

    @extend_schema(summary="Parameters a layer gets", tags=["parameters"],
                   responses={200: OpenApiTypes.OBJECT, **_errors(*INSTANCE_ERRORS)})
    def layer_params(self, request: Request, instance_id: str, layer_name: str) -> Response:
        return Response(selectors.instance_layer_params(instance_id, layer_name))

    # ------------------------------------------------------------------ upload
    @extend_schema(
        summary="Upload a .npy array and quantize, dequantize or quantize_dequantize it", tags=["operations"],
        request={"multipart/form-data": UploadRequest},
        parameters=[
            OpenApiParameter("operation", str, enum=[*services.OPERATIONS], default="quantize"),
            OpenApiParameter("validate", bool, default=True),
            OpenApiParameter("channel_dim", int, required=False),
            OpenApiParameter("layer_name", str, required=False),
        ],
        responses=_array_responses(UploadResponse),
    )
    def upload_numpy(self, request: Request, instance_id: str) -> Response:
        selectors.check_instance_id(instance_id)
        query = request.query_params
        operation = query.get("operation", "quantize")
        if operation not in services.OPERATIONS:
            raise BadRequest(f"operation must be one of {', '.join(services.OPERATIONS)}; got {operation!r}",
                             field="operation")
        validate = _query_bool(query.get("validate"), "validate", default=True)
        channel_dim = _query_int(query.get("channel_dim"), "channel_dim")
        layer_name = query.get("layer_name") or None
        array = request.data["data"]
        result = services.instance_run(instance_id=instance_id, operation=operation, data=array, validate=validate,
                                       channel_dim=channel_dim, layer_name=layer_name)
        out = np.asarray(result.data)
        return _result_headers(Response({
            "message": MSG_UPLOAD, "operation": operation, "shape": _shape(out), "dtype": str(out.dtype),
            "original_shape": _shape(array), "quantization_type": result.quantization_type.name, "data": out,
        }), result)


def _json_object(request: Request) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code="request.not_object")
    return dict(data)


def _valid(serializer_cls: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_cls(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _query_bool(raw: str | None, name: str, *, default: bool) -> bool:
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false; got {raw!r}", field=name)


def _query_int(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer; got {raw!r}", field=name) from None


@extend_schema(summary="API documentation and examples, generated from the OpenAPI schema", tags=["health"],
               responses={200: OpenApiTypes.OBJECT})
@api_view(["GET"])
def documentation(request: Request) -> Response:
    return Response(documentation_body(request.build_absolute_uri("/")))
