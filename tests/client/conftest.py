"""A live server for the client and CLI tests: gunicorn with 3 workers on a free port of 127.0.0.1, a fresh SQLite
database, token authentication on (as in production), started once for the session and stopped at its end."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from quantsite_client import QuantsiteClient

from tests.integration import stack

WORKERS = 3
# One process migrates, creates the user and prints its token (three manage.py commands would cost seconds more).
MIGRATE_AND_MAKE_TOKEN = (
    "from django.core.management import call_command; call_command('migrate', '--noinput', verbosity=0); "
    "from django.contrib.auth import get_user_model; from rest_framework.authtoken.models import Token; "
    "user = get_user_model().objects.create_superuser('client-tests', 'c@example.com', 'unused-password'); "
    "print(Token.objects.create(user=user).key)"
)


@dataclass
class LiveServer:
    url: str
    token: str
    env: dict[str, str]
    gunicorn: stack.Gunicorn

    def client(self, **kwargs: object) -> QuantsiteClient:
        return QuantsiteClient(self.url, token=self.token, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def gunicorn_server() -> Iterator[LiveServer]:
    workdir = stack.make_workdir("quantsite-client-")
    try:
        env = stack.django_env(f"sqlite:///{workdir / 'db.sqlite3'}", workdir,
                               QUANTIZER_REQUIRE_AUTH="1", DJANGO_SECURE_SSL_REDIRECT="0",
                               QUANTIZER_MAX_ELEMENTS="1000000")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn.conf.py makes its own, as on a fresh machine
        setup = subprocess.run([stack.PYTHON, "manage.py", "shell", "-c", MIGRATE_AND_MAKE_TOKEN], cwd=stack.ROOT,
                               env=env, capture_output=True, text=True, timeout=120, check=True)
        token = setup.stdout.strip().splitlines()[-1]
        with stack.gunicorn(env, workdir, workers=WORKERS) as server:
            yield LiveServer(server.url, token, env, server)
            problems = server.log_problems()
        assert not problems, problems
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def qs(gunicorn_server: LiveServer) -> Iterator[QuantsiteClient]:
    with gunicorn_server.client() as client:
        yield client


@pytest.fixture
def fresh_id(request: pytest.FixtureRequest) -> str:
    """An instance id of this test's own (the server lives for the whole session)."""
    return "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:60]


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def route_exists(path: str) -> bool:
    """Whether this checkout has the route (a named URL pattern, not the JSON 404 for unknown paths): the tests of
    routes other branches add (evaluate, model jobs) run as soon as those routes are merged."""
    from django.urls import resolve

    return resolve(path).url_name is not None
