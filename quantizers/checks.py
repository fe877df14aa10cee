"""System checks of quantsite's own settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.module_loading import import_string


@register(Tags.security, deploy=True)
def csrf_middleware(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Django's security.W003, for a subclass of its CSRF middleware: Django looks for its own by name, and
    MIDDLEWARE holds quantizers.middleware.AdminCsrfViewMiddleware in its place (settings silence W003)."""
    if any(issubclass(import_string(path), CsrfViewMiddleware) for path in settings.MIDDLEWARE):
        return []
    return [Warning("No CSRF middleware (django.middleware.csrf.CsrfViewMiddleware or a subclass) in MIDDLEWARE: "
                    "the admin's forms are not protected against cross-site request forgery.",
                    id="quantizers.W003")]
