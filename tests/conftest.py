"""Shared fixtures: a JSON API client and a clean per-worker registry for every test."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from quantizers import registry


class ApiClient:
    """Django's test client speaking JSON, as the spec's curl examples do."""

    def __init__(self) -> None:
        self.client = Client()

    def get(self, path: str, **extra: Any) -> Any:
        return self.client.get(path, **extra)

    def post(self, path: str, body: Any = None, **extra: Any) -> Any:
        if body is None:
            return self.client.post(path, **extra)
        return self.client.post(path, body, content_type="application/json", **extra)

    def put(self, path: str, body: Any, **extra: Any) -> Any:
        return self.client.put(path, body, content_type="application/json", **extra)

    def patch(self, path: str, body: Any, **extra: Any) -> Any:
        return self.client.patch(path, body, content_type="application/json", **extra)

    def delete(self, path: str, **extra: Any) -> Any:
        return self.client.delete(path, **extra)

    def raw(self, method: str, path: str, data: bytes | str, content_type: str, **extra: Any) -> Any:
        return getattr(self.client, method)(path, data, content_type=content_type, **extra)


@pytest.fixture
def api(db: None) -> ApiClient:
    return ApiClient()


@pytest.fixture(autouse=True)
def fresh_registry() -> Any:
    """Every test starts as a newly started worker would: nothing in memory, everything from the database."""
    with registry.using(registry.Registry()):
        yield
