"""Limits enforced before any parsing, and the admin's middlewares scoped to the admin."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse

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


# ---------------------------------------------------------------------------- the admin's middlewares
# Sessions, logged-in users and flash messages serve the admin alone: the API authenticates with tokens (DRF) and
# has no sessions or messages. Run on every request, these three took about a sixth of GET /'s time in process
# (bench/http.py), so each runs for the admin's paths only; elsewhere it passes the request straight on. (CSRF
# protection stays global: it costs little on views exempt from it, as the API's are, and `check --deploy` looks
# for Django's own middleware.)
@functools.cache
def admin_prefix() -> str:
    """The admin's URL prefix, from the URLconf (resolved once, on the first request)."""
    return reverse("admin:index")


class AdminOnly:
    """Mixed into a Django middleware: it runs for the admin's paths only. (A subclass of the original, so Django's
    admin checks, which look for these middlewares, still find them.)"""

    get_response: Callable[[HttpRequest], HttpResponse]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(admin_prefix()):
            return super().__call__(request)  # type: ignore[misc, no-any-return]
        return self.get_response(request)


class AdminSessionMiddleware(AdminOnly, SessionMiddleware):
    pass


class AdminAuthenticationMiddleware(AdminOnly, AuthenticationMiddleware):
    pass


class AdminMessageMiddleware(AdminOnly, MessageMiddleware):
    pass


class AdminCsrfViewMiddleware(AdminOnly, CsrfViewMiddleware):
    def process_view(self, request: HttpRequest, *args: Any) -> HttpResponse | None:
        # Django's handler calls process_view itself, outside __call__.
        if request.path_info.startswith(admin_prefix()):
            return super().process_view(request, *args)  # type: ignore[no-any-return]
        return None
