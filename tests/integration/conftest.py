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
import ssl
from collections.abc import Iterator

import pytest

from tests.integration import stack
from tests.integration.stack import WORKERS, Api, Deployment

DATABASES = ["postgresql", "sqlite"]


@pytest.fixture(scope="session", params=DATABASES)
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    kind = request.param
    workdir = stack.make_workdir(f"quantsite-it-{kind}-")
    database = stack.create_database(kind, workdir)
    server: stack.Gunicorn | None = None
    proxy: stack.Nginx | None = None
    try:
        env = stack.django_env(database.url, workdir / "static")
        stack.deploy_steps(env)
        server = stack.Gunicorn(env=env, port=stack.free_port(), workers=WORKERS, logdir=workdir)
        server.start()
        cert, key = stack.self_signed_certificate(workdir)
        http_port, https_port = stack.free_port(), stack.free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(stack.render_nginx_conf(workdir=workdir, upstream_port=server.port, http_port=http_port,
                                                https_port=https_port, static_root=workdir / "static",
                                                cert=cert, key=key))
        proxy = stack.Nginx(conf=conf, workdir=workdir, http_port=http_port, https_port=https_port)
        proxy.start(ssl_context=ssl.create_default_context(cafile=str(cert)))
        yield Deployment(kind, workdir, env, database, server, proxy, cert)
    finally:
        if proxy is not None:
            proxy.stop()
        if server is not None:
            server.stop()
        database.drop()
    if not request.session.testsfailed:
        shutil.rmtree(workdir, ignore_errors=True)  # kept for a look at the logs when something failed


@pytest.fixture
def api(deployment: Deployment) -> Api:
    return Api(deployment.url, deployment.cert)
