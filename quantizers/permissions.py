"""API access: a valid token when QUANTIZER_REQUIRE_AUTH is on, anyone when it is off (the quick start); the same
for GET /metrics unless QUANTIZER_METRICS_PUBLIC opens it to scrapers without a token."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class ApiAccess(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if not settings.QUANTIZER_REQUIRE_AUTH:
            return True
        return bool(request.user and request.user.is_authenticated)


class MetricsAccess(ApiAccess):
    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(settings.QUANTIZER_METRICS_PUBLIC) or super().has_permission(request, view)
