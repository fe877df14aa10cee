"""Every error the API returns, and the one place engine and service errors become HTTP responses.

Bodies are always JSON: {"detail": "<what was wrong>", "code": "<stable code>", "field": "<culprit>"} (field only
where one field is at fault).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import csrf
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

from engine import EngineError, LimitError, NotCalibratedError

# Messages clients and tests rely on.
MSG_NOT_FOUND = "Quantizer instance {instance_id} not found"
MSG_EXISTS = "Quantizer instance {instance_id} already exists"
MSG_DEFAULT_PROTECTED = "The default quantizer instance cannot be deleted"
MSG_INVALID_ID = "instance_id must be 1-64 characters of A-Z a-z 0-9 _ -"
MSG_ROUTE_NOT_FOUND = "No such route: {path}"
MSG_CSRF_FAILED = "CSRF verification failed: {reason}"
MSG_SERVER_ERROR = "Internal server error"
MSG_BODY_TOO_LARGE = "The request body exceeds {setting} ({limit} MB)"
MSG_DATABASE_UNAVAILABLE = "The database is unavailable; retry shortly"

# A database outage (server down or restarting, connection dropped, locked SQLite file): what Django raises for
# it from psycopg and sqlite3 alike. The request changed nothing it could not commit; the client may retry.
DATABASE_OUTAGE = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER_S = 5

logger = logging.getLogger("quantizers.errors")


class ServiceError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "error"

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code


class InstanceNotFound(ServiceError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "instance.not_found"

    def __init__(self, instance_id: str) -> None:
        super().__init__(MSG_NOT_FOUND.format(instance_id=instance_id))


class InstanceExists(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    code = "instance.exists"

    def __init__(self, instance_id: str) -> None:
        super().__init__(MSG_EXISTS.format(instance_id=instance_id))


class DefaultInstanceProtected(ServiceError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "instance.default_protected"

    def __init__(self) -> None:
        super().__init__(MSG_DEFAULT_PROTECTED)


class InvalidInstanceId(ServiceError):
    code = "instance_id.invalid"

    def __init__(self) -> None:
        super().__init__(MSG_INVALID_ID, field="instance_id")


class BadRequest(ServiceError):
    code = "request.invalid"


ENGINE_STATUS: list[tuple[type[EngineError], int]] = [
    (NotCalibratedError, status.HTTP_409_CONFLICT),
    (LimitError, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE),
    (EngineError, status.HTTP_400_BAD_REQUEST),  # config, input, parameters, npy
]


def error_body(detail: str, code: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "code": code}
    if field:
        body["field"] = field
    return body


def _first_validation_error(data: Any, path: str = "") -> tuple[str, str | None, str]:
    """Flatten DRF's nested ValidationError detail to its first message, the field path and the code."""
    if isinstance(data, dict):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "non_field_errors":
                sub = path
            return _first_validation_error(value, sub)
    if isinstance(data, list) and data:
        return _first_validation_error(data[0], path)
    code = getattr(data, "code", "invalid") or "invalid"
    message = str(data)
    return (f"{path}: {message}" if path else message), (path or None), f"validation.{code}"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DATABASE_OUTAGE):
        body, status_code, headers = database_unavailable(exc)
        response = _respond(body, status_code)
        for name, value in headers.items():
            response[name] = value
        return response
    for engine_cls, status_code in ENGINE_STATUS:
        if isinstance(exc, engine_cls):
            assert isinstance(exc, EngineError)
            return _respond(error_body(exc.message, exc.code, exc.field), status_code)
    if isinstance(exc, ServiceError):
        return _respond(error_body(exc.detail, exc.code, exc.field), exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        from django.conf import settings

        limit = settings.QUANTIZER_MAX_BODY_MB
        body = error_body(MSG_BODY_TOO_LARGE.format(setting="QUANTIZER_MAX_BODY_MB", limit=limit), "request.too_large")
        return _respond(body, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, Http404):
        return _respond(error_body(str(exc) or "Not found", "not_found"), status.HTTP_404_NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if isinstance(exc, drf_exceptions.ValidationError):
        detail, field, code = _first_validation_error(exc.detail)
        return _respond(error_body(detail, code, field), status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, drf_exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        response = _respond(error_body(str(detail), f"http.{code}"), exc.status_code)
        if getattr(exc, "wait", None):
            response["Retry-After"] = str(int(exc.wait or 0))
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            response["WWW-Authenticate"] = auth_header
        return response
    return None  # a real bug: Django's 500 handler answers with JSON and logs the traceback


def _respond(body: dict[str, Any], status_code: int) -> Response:
    # Imported here: rest_framework.views imports the parsers (DEFAULT_PARSER_CLASSES), which import this module.
    from rest_framework.views import set_rollback

    # 4xx are logged, with their detail, by quantizers.observability.RequestIdMiddleware.
    set_rollback()
    return Response(body, status=status_code)


def database_unavailable(exc: BaseException) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The answer to a database outage, inside DRF views and outside them: 503, JSON, Retry-After. Django closes
    the broken connection at the end of the request (errors_occurred), so the next request reconnects."""
    logger.warning("database unavailable", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
    return (error_body(MSG_DATABASE_UNAVAILABLE, "database.unavailable"), status.HTTP_503_SERVICE_UNAVAILABLE,
            {"Retry-After": str(DATABASE_RETRY_AFTER_S)})


# ---------------------------------------------------------------------------- Django-level handlers
def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body(MSG_ROUTE_NOT_FOUND.format(path=request.path), "route.not_found"), status=404)


def json_server_error(request: HttpRequest) -> JsonResponse:
    """handler500: Django calls it while handling the exception (outside DRF views: middleware, plain views), so
    sys.exc_info() tells a database outage (503) from a bug (500)."""
    exc = sys.exc_info()[1]
    if isinstance(exc, DATABASE_OUTAGE):
        body, status_code, headers = database_unavailable(exc)
        return JsonResponse(body, status=status_code, headers=headers)
    return JsonResponse(error_body(MSG_SERVER_ERROR, "server.error"), status=500)


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("Bad request", "request.invalid"), status=400)


def json_permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("Permission denied", "permission_denied"), status=403)


def json_csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: JSON, like every other answer of the API; the admin (HTML forms) keeps Django's page."""
    match = getattr(request, "resolver_match", None)
    if match is not None and "admin" in match.namespaces:
        return csrf.csrf_failure(request, reason)
    return JsonResponse(error_body(MSG_CSRF_FAILED.format(reason=reason), "request.csrf_failed"), status=403)
