"""HTTP endpoints: parse the request, call one service or selector, render the answer.

Their OpenAPI description is in `schema.py`; the query options each route takes are declared in `options.py`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import FileResponse, HttpResponse
from django.http.multipartparser import MultiPartParserError
from rest_framework import exceptions as drf_exceptions
from rest_framework import pagination, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from engine import OpResult, QParams, QualityReport, QuantizationType, wire_codes

from .. import health, jobs, metrics, selectors, services
from ..exceptions import DATABASE_RETRY_AFTER_S, BadRequest
from ..permissions import MetricsAccess
from ..request_body import stream_from_socket
from . import options
from .documentation import documentation
from .parsers import MSG_NO_FILE, EvaluateUploadParser, NpyParser, NpyUploadParser, OctetStreamParser, OrjsonParser
from .renderers import CheckpointRenderer, CsvRenderer, NpyRenderer, NpzRenderer, OctetStreamRenderer, OrjsonRenderer
from .serializers import (
    CalibrationSerializer,
    DequantizationSerializer,
    EvaluationSerializer,
    EvaluationSpecSerializer,
    ImportExportParamsSerializer,
    QuantizationParamsSerializer,
    QuantizationSerializer,
    StrictSerializer,
)

SERVICE = "Quantizer API"
MSG_CREATED = "Quantizer instance {instance_id} created successfully"
MSG_DELETED = "Quantizer instance {instance_id} deleted successfully"
MSG_CONFIG_UPDATED = "Configuration for quantizer instance {instance_id} updated successfully"
MSG_CALIBRATED = "Calibration successful"
MSG_CACHE_CLEARED = "Cache cleared successfully"
MSG_STATS_RESET = "Statistics reset successfully"
MSG_IMPORTED = "Parameters imported successfully"
MSG_UPLOAD = "File processed successfully"
MSG_JOB_DELETED = "Job {job_id} deleted successfully"

# Array operations take JSON, .npy or raw bytes, and answer in any of these or as .npz with the parameters
# (Accept or ?format=).
ARRAY_PARSERS = [OrjsonParser, NpyParser, OctetStreamParser]
ARRAY_RENDERERS = [OrjsonRenderer, NpyRenderer, OctetStreamRenderer, NpzRenderer]
ARRAY_IO: dict[str, Any] = {"parser_classes": ARRAY_PARSERS, "renderer_classes": ARRAY_RENDERERS,
                            "query_options": options.ARRAY_BODY}
# Per-channel parameters ride in headers up to this many channels (all headers then stay well under nginx's 8 KB
# default buffer, which answers 502 beyond it); above, X-Parameters-Omitted points to the .npz answer.
MAX_HEADER_CHANNELS = 64
MSG_PARAMETERS_OMITTED = "{channels} channels; send Accept: application/x-npz to get the parameters with the data"
MSG_BLOCKS_OMITTED = "{blocks} blocks; send Accept: application/x-npz to get the parameters with the data"


# Parses the query string against the view's `query_options` before anything else; the result is `self.query`.
# Every route has a set (by default, none), so an unknown option is never silently ignored. (A comment, not a
# docstring: drf-spectacular would show a docstring as the description of every operation.)
class QueryOptionsMixin:
    query_options: options.Options = options.NONE
    query: dict[str, Any]

    # drf-spectacular puts an annotated action's schema *class* in the action's kwargs, which DRF passes to every
    # view it builds; assigning it made the class-level schema descriptor store that view on the class (`cls.view
    # = view`), so each action's last request -- its body (83 MB for a 2000x2000 JSON array), its answer -- stayed
    # referenced until the action's next request. Schema generation takes the class from the action itself.
    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("schema", None)
        super().__init__(**kwargs)

    # Then DRF's APIView.initial, less the versioning and throttling the API does not configure (both would be
    # no-ops; DRF's own runs if either is ever set). An empty query string is not parsed into a QueryDict.
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        renderers = len(self.renderer_classes)  # type: ignore[attr-defined]
        query = request.query_params if request._request.META.get("QUERY_STRING") else {}
        self.query = self.query_options.parse(query, renderers=renderers)
        if self.versioning_class is not None or self.throttle_classes:  # type: ignore[attr-defined]
            super().initial(request, *args, **kwargs)  # type: ignore[misc]
            return
        view: Any = self
        view.format_kwarg = view.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = view.perform_content_negotiation(request)
        request.version, request.versioning_scheme = None, None
        self.perform_authentication(request)
        view.check_permissions(request)

    # DRF builds each parser, renderer, authenticator and permission object, the negotiator and the default headers
    # anew for every request (a tenth of GET /'s time); none holds per-request state, so each set of classes (an
    # action's own, or the view's) builds them once. The same objects, the same answers.
    def get_parsers(self) -> list[Any]:
        return _built(self.parser_classes)  # type: ignore[attr-defined]

    def get_renderers(self) -> list[Any]:
        return _built(self.renderer_classes)  # type: ignore[attr-defined]

    def get_authenticators(self) -> list[Any]:
        return _built(self.authentication_classes)  # type: ignore[attr-defined]

    def get_permissions(self) -> list[Any]:
        return _built(self.permission_classes)  # type: ignore[attr-defined]

    def get_content_negotiator(self) -> Any:
        return _built([self.content_negotiation_class])[0]  # type: ignore[attr-defined]

    @property
    def default_response_headers(self) -> dict[str, str]:
        # Allow depends on the methods this view maps (a viewset's per route), Vary on its renderers: both fixed.
        view: Any = self
        key = (type(view), tuple(getattr(view, "action_map", None) or ()), len(view.renderer_classes))
        headers = _DEFAULT_HEADERS.get(key)
        if headers is None:
            headers = _DEFAULT_HEADERS[key] = super().default_response_headers  # type: ignore[misc]
        return dict(headers)  # a copy: DRF's finalize_response pops Vary from it

    # Authentication runs when a credential was sent (a bad one is a 401 whatever the route), otherwise when the
    # permission check first asks for request.user (only when QUANTIZER_REQUIRE_AUTH is on): DRF's lazy
    # authentication. The outcome is the same; requests without credentials skip the token lookup machinery.
    def perform_authentication(self, request: Request) -> None:
        if "HTTP_AUTHORIZATION" in request._request.META:
            request.user  # noqa: B018 - authenticates


_DEFAULT_HEADERS: dict[tuple[Any, ...], dict[str, str]] = {}


@functools.cache
def _built_from(classes: tuple[type, ...]) -> list[Any]:
    return [cls() for cls in classes]


def _built(classes: Any) -> list[Any]:
    """One instance of each class, built on first use (a list DRF only reads)."""
    return _built_from(tuple(classes))


class Root(QueryOptionsMixin, APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"status": "healthy", "service": SERVICE})


class Readyz(QueryOptionsMixin, APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        problem = health.readiness_problem()
        if problem:
            # A load balancer or orchestrator asks again: say when (as the database outage answer does).
            return Response({"detail": problem, "code": "not_ready"}, status=503,
                            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})
        return Response({"status": "ready", "service": SERVICE})


class Metrics(QueryOptionsMixin, APIView):
    """Prometheus' text format. Errors (401) stay JSON whatever a scraper accepts."""

    permission_classes = [MetricsAccess]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        return super().perform_content_negotiation(request, force=True)

    def get(self, request: Request) -> HttpResponse:
        body, content_type = metrics.exposition()
        return HttpResponse(body, content_type=content_type)


class Documentation(QueryOptionsMixin, APIView):
    def get(self, request: Request) -> Response:
        return Response(documentation(request.build_absolute_uri("/")))


class InstanceViewSet(QueryOptionsMixin, viewsets.ViewSet):
    """Quantizer instances and their operations; the id is the spec's instance_id."""

    # Read by the router: /instances/{instance_id}/..., the id any characters but a slash (initial() checks it).
    # JSON in and out (the DRF defaults) unless an action says otherwise.
    lookup_url_kwarg = "instance_id"
    lookup_value_regex = "[^/]+"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if "instance_id" in kwargs:
            selectors.check_instance_id(kwargs["instance_id"])  # a malformed id is a 400 before anything else
        super().initial(request, *args, **kwargs)

    # ------------------------------------------------------------------ instances
    def list(self, request: Request) -> Response:
        return Response(selectors.instance_list())

    def create(self, request: Request, instance_id: str) -> Response:
        services.instance_create(instance_id=instance_id, config=_json_object(request))
        return Response({"message": MSG_CREATED.format(instance_id=instance_id)})

    def destroy(self, request: Request, instance_id: str) -> Response:
        services.instance_delete(instance_id=instance_id)
        return Response({"message": MSG_DELETED.format(instance_id=instance_id)})

    @action(detail=True, methods=["get"], url_path="config", url_name="config")
    def get_config(self, request: Request, instance_id: str) -> Response:
        return Response(selectors.instance_config(instance_id))

    @get_config.mapping.put
    def put_config(self, request: Request, instance_id: str) -> Response:
        services.instance_update_config(instance_id=instance_id, config=_json_object(request))
        return Response({"message": MSG_CONFIG_UPDATED.format(instance_id=instance_id)})

    @get_config.mapping.patch
    def patch_config(self, request: Request, instance_id: str) -> Response:
        services.instance_update_config(instance_id=instance_id, config=_json_object(request), partial=True)
        return Response({"message": MSG_CONFIG_UPDATED.format(instance_id=instance_id)})

    # ------------------------------------------------------------------ operations
    def _run(self, request: Request, instance_id: str, operation: str) -> Response:
        body = _array_body(request, self.query, DequantizationSerializer if operation == "dequantize"
                           else QuantizationSerializer)
        explicit = {"scale": body.get("scale"), "zero_point": body.get("zero_point")}
        result = services.instance_run(
            instance_id=instance_id, operation=operation, data=body["data"], validate=body.get("validate", True),
            channel_dim=body["channel_dim"], layer_name=body["layer_name"], finite_only=_answers_json(request),
            **(explicit if operation == "dequantize" else {"report": body.get("report", False)}),
        )
        out: dict[str, Any] = {"data": result.data}
        if operation == "quantize":
            out["quantization_type"] = result.quantization_type.name
        out["original_shape"] = _shape(body["data"])
        if result.report is not None:
            out["report"] = result.report.to_dict()
        return _array_answer(out, result, codes=operation == "quantize")

    @action(detail=True, methods=["post"], **{**ARRAY_IO, "query_options": options.QUANTIZE_BODY})
    def quantize(self, request: Request, instance_id: str) -> Response:
        return self._run(request, instance_id, "quantize")

    @action(detail=True, methods=["post"], **{**ARRAY_IO, "query_options": options.DEQUANTIZE_BODY})
    def dequantize(self, request: Request, instance_id: str) -> Response:
        return self._run(request, instance_id, "dequantize")

    @action(detail=True, methods=["post"], **{**ARRAY_IO, "query_options": options.QUANTIZE_BODY})
    def quantize_dequantize(self, request: Request, instance_id: str) -> Response:
        return self._run(request, instance_id, "quantize_dequantize")

    @action(detail=True, methods=["post"], parser_classes=[NpyUploadParser], renderer_classes=ARRAY_RENDERERS,
            query_options=options.UPLOAD)
    def upload_numpy(self, request: Request, instance_id: str) -> Response:
        if "data" not in request.data:  # no multipart body at all (the parser reports a bad one itself)
            raise BadRequest(MSG_NO_FILE, field="file")
        array, operation = request.data["data"], self.query["operation"]
        result = services.instance_run(instance_id=instance_id, operation=operation, data=array,
                                       validate=self.query["validate"], channel_dim=self.query["channel_dim"],
                                       layer_name=self.query["layer_name"], finite_only=_answers_json(request))
        out = np.asarray(result.data)
        return _array_answer({
            "message": MSG_UPLOAD, "operation": operation, "shape": _shape(out), "dtype": str(out.dtype),
            "original_shape": _shape(array), "quantization_type": result.quantization_type.name, "data": out,
        }, result, codes=operation == "quantize")

    @action(detail=True, methods=["post"])
    def calibrate(self, request: Request, instance_id: str) -> Response:
        body = CalibrationSerializer.validated(request.data)
        _, exported = services.instance_calibrate(instance_id=instance_id, batches=body["data"],
                                                  channel_dim=body["channel_dim"])
        return Response({
            "message": MSG_CALIBRATED,
            "scale": exported["global_scale"],
            "zero_point": exported["global_zero_point"],
            "per_channel_scales": exported["per_channel_scales"],
            "per_channel_zero_points": exported["per_channel_zero_points"],
        })

    @action(detail=True, methods=["post"], parser_classes=[OrjsonParser, EvaluateUploadParser])
    def evaluate(self, request: Request, instance_id: str) -> Response:
        payload = request.data
        if isinstance(payload, dict) and isinstance(payload.get("data"), np.ndarray) and "spec" in payload:
            data, spec = payload["data"], EvaluationSpecSerializer.validated(payload["spec"])
        else:
            spec = EvaluationSerializer.validated(request.data)
            data = spec["data"]
        evaluation = services.instance_evaluate(instance_id=instance_id, data=data, candidates=spec["candidates"],
                                                min_sqnr_db=(spec["target"] or {}).get("min_sqnr_db"))
        return Response(evaluation.to_dict())

    @action(detail=True, methods=["post"])
    def compute_params(self, request: Request, instance_id: str) -> Response:
        body = QuantizationParamsSerializer.validated(request.data)
        params = services.instance_compute_params(
            instance_id=instance_id, data=body["data"], channel_idx=body["channel_idx"],
            channel_dim=body["channel_dim"], layer_name=body["layer_name"],
        ).to_dict()
        return Response({"scale": params["scale"], "zero_point": params["zero_point"]})

    # ------------------------------------------------------------------ stats, cache, parameters
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, instance_id: str) -> Response:
        return Response(selectors.instance_stats(instance_id))

    @action(detail=True, methods=["post"])
    def clear_cache(self, request: Request, instance_id: str) -> Response:
        services.instance_clear_cache(instance_id=instance_id)
        return Response({"message": MSG_CACHE_CLEARED})

    @action(detail=True, methods=["post"])
    def reset_stats(self, request: Request, instance_id: str) -> Response:
        services.instance_reset_stats(instance_id=instance_id)
        return Response({"message": MSG_STATS_RESET})

    @action(detail=True, methods=["get"], url_path="parameters", url_name="parameters")
    def export_parameters(self, request: Request, instance_id: str) -> Response:
        return Response(selectors.instance_parameters(instance_id))

    @export_parameters.mapping.post
    def import_parameters(self, request: Request, instance_id: str) -> Response:
        body = ImportExportParamsSerializer.validated(request.data)
        services.instance_import_parameters(instance_id=instance_id, parameters=body["parameters"])
        return Response({"message": MSG_IMPORTED})

    @action(detail=True, methods=["get"], url_path=r"layer_params/(?P<layer_name>[^/]+)", url_name="layer-params")
    def layer_params(self, request: Request, instance_id: str, layer_name: str) -> Response:
        return Response(selectors.instance_layer_params(instance_id, layer_name))

    # ------------------------------------------------------------------ model jobs
    # The body is parsed here, not by a DRF parser: it streams to temporary files in chunks (_checkpoint_uploads).
    @action(detail=True, methods=["post"], url_path="jobs", url_name="jobs", query_options=options.JOB_CREATE)
    def create_job(self, request: Request, instance_id: str) -> Response:
        job = jobs.job_create(instance_id=instance_id, uploads=_checkpoint_uploads(request, self.query["filename"]),
                              channel_dim=self.query["channel_dim"])
        body = {"job_id": str(job.pk), "instance_id": job.instance_id, "status": job.status,
                "links": {"self": jobs.links(job)["self"]}}
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": jobs.links(job)["self"]})


class JobPagination(pagination.PageNumberPagination):
    page_size = 50


class JobViewSet(QueryOptionsMixin, viewsets.ViewSet):
    """Model jobs: GET /jobs, GET and DELETE /jobs/{job_id}, and its report, artifact and cancel."""

    lookup_url_kwarg = "job_id"
    lookup_value_regex = "[^/]+"
    pagination_class = JobPagination  # (the schema's page envelope comes from it)

    def list(self, request: Request) -> Response:
        query = {name: self.query[name] for name in ("instance_id", "status")}
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(jobs.job_list(**query), request, view=self)
        return paginator.get_paginated_response([jobs.job_dict(job) for job in page or []])

    def retrieve(self, request: Request, job_id: str) -> Response:
        return Response(jobs.job_dict(jobs.job_get(job_id)))

    def destroy(self, request: Request, job_id: str) -> Response:
        jobs.job_delete(job_id)
        return Response({"message": MSG_JOB_DELETED.format(job_id=job_id)})

    @action(detail=True, methods=["get"], renderer_classes=[OrjsonRenderer, CsvRenderer])
    def report(self, request: Request, job_id: str) -> Response:
        return Response(jobs.job_report(job_id))

    @action(detail=True, methods=["get"], renderer_classes=[CheckpointRenderer, OrjsonRenderer],
            query_options=options.JOB_ARTIFACT)
    def artifact(self, request: Request, job_id: str) -> FileResponse:
        file, filename = jobs.job_artifact(job_id, self.query["shard"])
        return FileResponse(file, as_attachment=True, filename=filename, content_type="application/octet-stream")

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, job_id: str) -> Response:
        return Response(jobs.job_dict(jobs.job_cancel(job_id)))


# ---------------------------------------------------------------------------- parsing
class CheckpointUploadHandler(TemporaryFileUploadHandler):
    """Multipart files straight to temporary files, in 1 MiB chunks (never in memory, whatever their size)."""

    chunk_size = 1024 * 1024


def _checkpoint_uploads(request: Request, filename: str | None) -> list[UploadedFile]:
    """The checkpoint's files: multipart `file` fields, or a raw application/octet-stream body named by
    ?filename=. The size limit (QUANTIZER_MAX_MODEL_MB) was applied to Content-Length before (middleware)."""
    django_request = request._request
    stream_from_socket(django_request)
    media_type = (request.content_type or "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        django_request.upload_handlers = [CheckpointUploadHandler(django_request)]
        try:
            files = django_request.FILES
        except MultiPartParserError as exc:
            raise BadRequest(f"malformed multipart body: {exc}", code="request.multipart_invalid") from None
        unknown = sorted(set(files) - {"file"})
        if unknown:
            raise BadRequest(f"unknown file field {unknown[0]!r}: send the checkpoint as 'file'", field=unknown[0])
        return list(files.getlist("file"))
    if media_type == "application/octet-stream":
        if not filename:
            raise BadRequest("an application/octet-stream body needs ?filename= (e.g. model.safetensors), which says "
                             "its format", field="filename", code="request.no_filename")
        length = int(django_request.META.get("CONTENT_LENGTH") or 0)
        return [jobs.read_raw_upload(django_request, filename=filename, length=length)] if length else []
    raise drf_exceptions.UnsupportedMediaType(media_type or "(none)")


def _json_object(request: Request) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code="request.not_object")
    return dict(data)


def _array_body(request: Request, query: dict[str, Any], serializer_cls: type[StrictSerializer]
                ) -> dict[str, Any]:
    """A binary body (.npy, octet-stream) is the array alone, its options in the query string; a JSON body holds
    the array and its options."""
    payload = request.data
    if isinstance(payload, dict) and isinstance(payload.get("data"), np.ndarray) and len(payload) == 1:
        binary = {**query, "data": payload["data"]}
        for name in ("scale", "zero_point"):  # one value in the query, and no channel_dim: per tensor
            if isinstance(binary.get(name), list) and len(binary[name]) == 1 and binary["channel_dim"] is None:
                binary[name] = binary[name][0]
        return binary
    return serializer_cls.validated(request.data)


# ---------------------------------------------------------------------------- rendering
def _shape(arr: np.ndarray) -> list[int]:
    return [int(n) for n in arr.shape]


def _answers_json(request: Request) -> bool:
    """JSON has no infinity: the service then refuses a result that overflowed (binary answers carry it)."""
    return getattr(request, "accepted_renderer", None) is None or request.accepted_renderer.format == "json"


class ArrayAnswer(Response):
    """An operation's answer, with the parameters it used for the renderers that carry them (.npz), its type, and
    for a quantize answer of a type numpy has no dtype for (INT4 / UINT4, FP8, BFLOAT16) the integer array that
    carries it on the wire and the type's name (`wire`, computed when a binary renderer asks for it; JSON answers
    keep the codes or values of `data`)."""

    params: QParams | None = None
    quantization_type: QuantizationType | None = None
    codes: np.ndarray | None = None  # a quantize answer's codes

    @functools.cached_property
    def wire(self) -> tuple[np.ndarray, str] | None:
        if self.codes is None or self.quantization_type is None:
            return None
        return wire_codes(self.codes, self.quantization_type)


# The report's scalar figures that binary answers carry in headers (null SQNR as `null`, as in JSON).
REPORT_HEADERS = {"X-Report-Sqnr-Db": "sqnr_db", "X-Report-Max-Abs-Error": "max_abs_error",
                  "X-Report-Rms-Error": "rms_error", "X-Report-Clipped": "clipped"}


def report_headers(report: QualityReport) -> dict[str, str]:
    figures = report.to_dict()
    return {header: "null" if figures[name] is None else repr(figures[name]) for header, name in REPORT_HEADERS.items()}


def _flat(values: Any) -> list[Any]:
    """Nested lists (block parameters) or one number, flattened in C order."""
    if isinstance(values, list):
        return [v for item in values for v in _flat(item)]
    return [values]


def _array_answer(out: dict[str, Any], result: OpResult, codes: bool = False) -> Response:
    """Type and parameters in headers, for every format (binary answers have no JSON body to carry them). Per
    channel or per block, only up to MAX_HEADER_CHANNELS scale values: thousands of scales would overflow a
    proxy's header buffer. A float8 type has no zero point (X-Zero-Point left out)."""
    response = ArrayAnswer(out)
    response.params = result.params
    response.quantization_type = result.quantization_type
    if codes and isinstance(out.get("data"), np.ndarray):
        response.codes = out["data"]
    response["X-Quantization-Type"] = result.quantization_type.name
    if result.report is not None:
        for header, value in report_headers(result.report).items():
            response[header] = value
    if result.params is None:
        return response
    if result.params.axis is not None:
        response["X-Channel-Dim"] = str(result.params.axis)
        if result.params.block_size is not None:
            response["X-Block-Size"] = str(result.params.block_size)
        count = result.params.scale.size  # (decided before writing thousands of scales as text)
        if count > MAX_HEADER_CHANNELS:
            message = MSG_BLOCKS_OMITTED if result.params.block_size is not None else MSG_PARAMETERS_OMITTED
            response["X-Parameters-Omitted"] = message.format(channels=count, blocks=count)
            return response
    params = result.params.to_dict()
    response["X-Scale"] = ",".join(str(v) for v in _flat(params["scale"]))
    if not result.quantization_type.is_float8:
        response["X-Zero-Point"] = ",".join(str(v) for v in _flat(params["zero_point"]))
    return response
