"""Shared fixtures: a JSON API client and a clean per-worker registry for every test."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

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


@pytest.fixture(scope="session", autouse=True)
def cheap_per_test_setup() -> Any:
    """Two costs every test paid again, neither of which a test is about:

    - each new test client loads the middleware, and WhiteNoise with WHITENOISE_USE_FINDERS (quantsite/
      test_settings.py) then stats and indexes every static file of every app (~170 files, a tenth of a second);
      with autorefresh it looks a static file up when one is asked for, the way it runs under DEBUG. No test
      fetches a static file through the client (test_api_docs checks the assets with the staticfiles finders).
    - `admin_client` / `create_user` hash a password with PBKDF2 at a million iterations (about a second on a
      loaded core); no test is about the hash, so the tests use the fast hasher Django's documentation suggests.
    """
    with override_settings(WHITENOISE_AUTOREFRESH=True,
                           PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the engine's kernels into numba's on-disk cache (or load them from it) before any test runs. On a
    fresh clone the cache is empty, and whichever came first would otherwise pay the 30-90 s compilation: a
    gunicorn that a test starts (its master compiles before forking) would then miss its 60 s start-up limit."""
    from engine import warm_kernels

    warm_kernels()
