"""Integration fixtures: the whole deployment, started once per database for the session.

For each of PostgreSQL (a fresh database, dropped at the end) and SQLite (a file in the run's directory): migrate
and collectstatic with the production environment (DEBUG off), gunicorn with 4 workers, and nginx in front of it
with TLS and a config generated from deploy/nginx.conf. Everything binds to 127.0.0.1 on free ports and is stopped
at the end. The API is called through nginx over HTTPS (nginx sends X-Forwarded-Proto https, so Django's HTTPS
redirect stays on, as in production); only authentication is off (QUANTIZER_REQUIRE_AUTH=0), except in the test
that checks it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.integration import stack
from tests.integration.stack import Api, Deployment

DATABASES = ["postgresql", "sqlite"]


@pytest.fixture(scope="session", params=DATABASES)
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    kind = request.param
    workdir = stack.make_workdir(f"quantsite-it-{kind}-")
    database = stack.create_database(kind, workdir)
    try:
        with stack.deployed(kind, database, workdir) as deployment:
            yield deployment
    finally:
        database.drop()
    if not request.session.testsfailed:
        shutil.rmtree(workdir, ignore_errors=True)  # kept for a look at the logs when something failed


@pytest.fixture
def api(deployment: Deployment) -> Api:
    return Api(deployment.url, deployment.cert)
