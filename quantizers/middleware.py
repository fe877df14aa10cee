"""Limits enforced before any parsing."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .exceptions import MSG_BODY_TOO_LARGE, error_body
from .jobs import MODEL_UPLOAD_PATH


class BodySizeLimitMiddleware:
    """Answer 413 from the declared Content-Length alone, for every body type (Django's own limit does not
    cover file uploads), before a byte of the body is read. The checkpoint upload (POST /instances/{id}/jobs),
    which streams to storage, has its own limit, QUANTIZER_MAX_MODEL_MB."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        setting = "QUANTIZER_MAX_MODEL_MB" if MODEL_UPLOAD_PATH.match(request.path_info) else "QUANTIZER_MAX_BODY_MB"
        limit_mb = getattr(settings, setting)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(error_body("Content-Length is not a number", "request.invalid"), status=400)
        if length > limit_mb * 1024 * 1024:
            body = error_body(MSG_BODY_TOO_LARGE.format(setting=setting, limit=limit_mb), "request.too_large", setting)
            return JsonResponse(body, status=413)
        return self.get_response(request)
