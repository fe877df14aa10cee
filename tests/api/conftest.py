"""Fixtures of the API tests: plain static files storage, and simulated gunicorn workers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from quantizers import registry as registry_module


@pytest.fixture(autouse=True)
def plain_static_storage(settings: Any) -> None:
    """The production settings use whitenoise's manifest storage, which needs `collectstatic` to have run; the
    Swagger / Redoc pages (and the admin) would answer 500 without it. Tests serve static files unhashed."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


class Workers:
    """Several gunicorn workers in one process: each has its own registry of engine objects (its memory), all
    share the database. `with workers("a"): ...` runs requests as worker "a"."""

    def __init__(self) -> None:
        self._registries: dict[str, registry_module.Registry] = {}

    def registry(self, name: str) -> registry_module.Registry:
        return self._registries.setdefault(name, registry_module.Registry())

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[registry_module.Registry]:
        with registry_module.using(self.registry(name)) as reg:
            yield reg


@pytest.fixture
def workers() -> Workers:
    return Workers()
