"""Limits enforced before any parsing."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .exceptions import MSG_BODY_TOO_LARGE, error_body


class BodySizeLimitMiddleware:
    """Answer 413 from the declared Content-Length alone, for every body type (Django's own limit does not
    cover file uploads), before a byte of the body is read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit_mb = settings.QUANTIZER_MAX_BODY_MB
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(error_body("Content-Length is not a number", "request.invalid"), status=400)
        if length > limit_mb * 1024 * 1024:
            body = error_body(MSG_BODY_TOO_LARGE.format(limit=limit_mb), "request.too_large", "QUANTIZER_MAX_BODY_MB")
            return JsonResponse(body, status=413)
        return self.get_response(request)
