"""Outages under load, through nginx and gunicorn's 4 workers: PostgreSQL restarted, a worker killed.

The machine's PostgreSQL is shared and must never be restarted: these tests run on a private cluster of their own
(initdb into a temporary directory, a free port), stopped and removed at the end whatever happens. Every load is
bounded in clients, in time and per request.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.integration import stack
from tests.integration.stack import Api, Deployment

pytestmark = pytest.mark.integration

CLIENTS = 8
REQUEST_TIMEOUT = 10  # seconds, per request of the load
SPEC_BODY = {"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]], "validate": True}


@dataclass
class Resilient:
    deployment: Deployment
    postgres: stack.PrivatePostgres

    @property
    def api(self) -> Api:
        return Api(self.deployment.url, self.deployment.cert)


@pytest.fixture(scope="module")
def resilient(request: pytest.FixtureRequest) -> Iterator[Resilient]:
    workdir = stack.make_workdir("quantsite-it-resilience-")
    with stack.private_postgres() as postgres:
        postgres.create_database("quantsite")
        # Not stack.create_database: that one lives on the shared server (and Database.drop would go there).
        database = stack.Database("postgresql", postgres.url("quantsite"))
        with stack.deployed("postgresql", database, workdir, static=False) as deployment:
            yield Resilient(deployment, postgres)
    if not request.session.testsfailed:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------- a bounded load
@dataclass
class Answer:
    sent: float
    done: float
    status: int | None = None  # None: no HTTP answer at all (connection refused, reset, timeout)
    code: str | None = None  # the JSON body's "code", None when the body is not a JSON error
    retry_after: str | None = None
    error: str | None = None


class Load:
    """`clients` threads POSTing a quantize in a loop until stopped (or `limit` seconds at most)."""

    def __init__(self, api: Api, path: str, *, clients: int = CLIENTS, limit: float = 20) -> None:
        self.api, self.path, self.limit = api, path, limit
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            answer = Answer(sent=time.monotonic(), done=0.0)
            try:
                response = self.api.post(self.path, json=SPEC_BODY, timeout=REQUEST_TIMEOUT)
                answer.status = response.status_code
                answer.retry_after = response.headers.get("Retry-After")
                if response.status_code != 200 and response.headers.get("Content-Type", "").startswith(
                        "application/json"):
                    with contextlib.suppress(ValueError):
                        answer.code = response.json().get("code")
            except requests.RequestException as exc:
                answer.error = f"{type(exc).__name__}: {exc}"[:300]
                self.api.session.close()
            answer.done = time.monotonic()
            with self._lock:
                self.answers.append(answer)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def wait_for_200(self, after: float, timeout: float) -> Answer | None:
        """The first 200 to a request sent after `after`, waiting at most `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [a for a in self.snapshot() if a.status == 200 and a.sent >= after]
            if found:
                return min(found, key=lambda a: a.done)
            time.sleep(0.05)
        return None


def new_instance(api: Api) -> str:
    instance = f"it-resilience-{secrets.token_hex(4)}"
    assert api.post(f"/instances/{instance}", json={}).status_code == 200
    return instance


def summary(answers: list[Answer]) -> Counter[str]:
    return Counter(f"{a.status} {a.code}" if a.status else f"error {a.error}" for a in answers)


# ---------------------------------------------------------------------------- PostgreSQL restarted under load
def test_a_database_restart_under_load_is_503s_then_200s(resilient: Resilient) -> None:
    """8 clients quantize while PostgreSQL stops, stays down 3 s and starts again. The workers' persistent
    connections (CONN_MAX_AGE) all break. Every answer is a 200 or a JSON 503 database.unavailable with Retry-After
    (no 500, no dropped connection); 200s are back within 10 s; the stored count lies between the 200s and the
    requests sent."""
    api = resilient.api
    instance = new_instance(api)
    with Load(api, f"/instances/{instance}/quantize", limit=25) as load:
        assert load.wait_for_200(after=0, timeout=10), summary(load.snapshot())
        time.sleep(1)
        down = time.monotonic()
        resilient.postgres.stop("fast")
        time.sleep(3)
        resilient.postgres.start()
        back = time.monotonic()
        first = load.wait_for_200(after=back, timeout=10)
        time.sleep(1)  # and a moment of normal service after it
    answers = load.answers
    counts = summary(answers)
    print(f"\ndatabase restart: {len(answers)} requests, {dict(counts)}; down {back - down:.1f} s, "
          f"first 200 {first.done - back if first else float('nan'):.2f} s after the database was back")

    assert first is not None, f"no 200 within 10 s of the database being back: {counts}"
    assert first.done - back <= 10
    failures = [a for a in answers if a.status != 200
                and not (a.status == 503 and a.code == "database.unavailable" and a.retry_after)]
    assert not failures, (counts, failures[:5])
    assert counts.get("503 database.unavailable", 0) > 0, f"the outage was not seen: {counts}"
    late = [a for a in answers if a.status == 503 and a.sent > first.done + 1]
    assert not late, f"503s after recovery: {late[:5]}"

    stats = api.get(f"/instances/{instance}/stats")
    assert stats.status_code == 200, stats.text
    ok = sum(a.status == 200 for a in answers)
    assert ok <= stats.json()["quantize_calls"] <= len(answers)


def test_a_stale_persistent_connection_is_at_most_one_503(resilient: Resilient) -> None:
    """Without the health check of persistent connections, a connection broken by a restart while idle fails the
    next request, as a 503, and is closed at its end: the request after it reconnects."""
    deployment = resilient.deployment
    url = resilient.postgres.url("quantsite") + "?conn_health_checks=0"
    env = {**deployment.env, "DATABASE_URL": url, "DJANGO_SECURE_SSL_REDIRECT": "0"}
    logdir = deployment.workdir / "stale"
    logdir.mkdir(exist_ok=True)
    session = stack.loopback_session()
    with stack.gunicorn(env, logdir, workers=1) as server:
        quantize = server.url + "/instances/default/quantize"
        assert session.post(quantize, json=SPEC_BODY, timeout=REQUEST_TIMEOUT).status_code == 200
        resilient.postgres.stop("fast")
        resilient.postgres.start()
        answers = [session.post(quantize, json=SPEC_BODY, timeout=REQUEST_TIMEOUT) for _ in range(3)]
    statuses = [response.status_code for response in answers]
    print(f"\nstale connection, no health check: {statuses}")
    assert statuses[0] in (200, 503), answers[0].text
    if statuses[0] == 503:
        assert answers[0].json()["code"] == "database.unavailable"
    assert statuses[1:] == [200, 200]


# ---------------------------------------------------------------------------- a worker killed under load
def gunicorn_workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def established_on(port: int) -> set[str]:
    """Socket inodes of the established TCP connections whose local port is `port` (gunicorn's side)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])
    return inodes


def serving_worker(master: int, port: int) -> int | None:
    """The worker holding an established connection from nginx (only one is, when one request is in flight)."""
    inodes = established_on(port)
    for pid in gunicorn_workers(master):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return pid
    return None


def test_a_killed_worker_is_a_json_502_and_the_others_answer(resilient: Resilient) -> None:
    """A worker busy reading a request body (sent half, through nginx's unbuffered request streaming) is SIGKILLed
    while 8 clients quantize: that request gets nginx's JSON 502, the load gets a 200 within 5 s, every error answer
    is JSON, and gunicorn boots a worker in its place."""
    deployment = resilient.deployment
    master = deployment.gunicorn.proc.pid if deployment.gunicorn.proc else 0
    api = resilient.api
    instance = new_instance(api)
    booted = stack.Gunicorn.booted(deployment.gunicorn.error_logs[-1])

    # One request in flight, its body half sent: the worker serving it waits for the rest.
    context = ssl.create_default_context(cafile=str(deployment.cert))
    raw = context.wrap_socket(socket.create_connection(("127.0.0.1", deployment.nginx.https_port), timeout=10),
                              server_hostname="127.0.0.1")
    body = b'{"data": [[1.0, 2.0, 3.0]], "validate": true}'
    raw.sendall(f"POST /instances/{instance}/quantize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                f"application/json\r\nContent-Length: {len(body)}\r\nX-Request-ID: it-killed\r\n\r\n".encode()
                + body[:10])
    victim = None
    deadline = time.monotonic() + 10
    while victim is None and time.monotonic() < deadline:
        victim = serving_worker(master, deployment.gunicorn.port)
        time.sleep(0.05)
    assert victim is not None, "no worker took the half-sent request"

    with Load(api, f"/instances/{instance}/quantize", limit=15) as load:
        assert load.wait_for_200(after=0, timeout=10), summary(load.snapshot())
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        with contextlib.suppress(OSError):
            raw.sendall(body[10:])
        reply = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = raw.recv(65536)
                if not chunk:
                    break
                reply += chunk
        raw.close()
        after_kill = load.wait_for_200(after=killed, timeout=5)
        time.sleep(0.5)
    answers = load.answers
    counts = summary(answers)
    print(f"\nworker killed: {len(answers)} requests, {dict(counts)}; first 200 sent after the kill answered "
          f"{after_kill.done - killed if after_kill else float('nan'):.2f} s after it")

    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502"), reply[:500]
    assert b"content-type: application/json" in head.lower(), head
    assert b'"code":"server.unavailable"' in payload, payload
    assert b"x-request-id: it-killed" in head.lower(), head

    assert after_kill is not None, counts
    assert after_kill.done - killed <= 5, counts
    not_json = [a for a in answers if a.status != 200 and a.code is None]
    assert not not_json, (counts, not_json[:5])
    deadline = time.monotonic() + 15
    while stack.Gunicorn.booted(deployment.gunicorn.error_logs[-1]) <= booted and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.Gunicorn.booted(deployment.gunicorn.error_logs[-1]) == booted + 1
    assert len(gunicorn_workers(master)) == stack.WORKERS
    assert api.post(f"/instances/{instance}/quantize", json=SPEC_BODY).status_code == 200
