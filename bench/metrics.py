"""The cost of the Prometheus metrics per request, in process: the Django application called as gunicorn calls it
(its WSGI handler, one environ per request), with the metrics (the middleware and the services' operation
counter, in multiprocess mode as under gunicorn) and without them, beside a bare WSGI hello app called the same way.

Run from the repository root:

    python bench/metrics.py                # 40 chunks of 100 requests per row and configuration
    python bench/metrics.py --chunks 80 --chunk 200

Both configurations live in one process (two WSGI handlers, built with and without the middleware; the operation
counter switched off for the second) and run in alternating chunks, in a random order, so a slow spell of a
shared machine touches both alike; each figure is the median over chunks of microseconds per request, and the
difference is taken chunk by chunk (paired). Rows: GET / (the cheapest route: the middleware's share is largest)
and the spec's small quantize (2x3 JSON, its statistics UPDATE on SQLite included). The last rows time the
metrics' own work alone: the middleware around an answer made in advance, and the operation counter of one call.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = json.dumps({"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]]}).encode()
ROWS = {"GET /": ("GET", "/", b""), "small quantize": ("POST", "/instances/default/quantize", SMALL)}


def environ(method: str, path: str, body: bytes) -> dict[str, object]:
    return {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/json" if body else "", "CONTENT_LENGTH": str(len(body)) if body else "",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }


def time_app(app, method: str, path: str, body: bytes, requests: int, warmup: int = 50) -> float:  # type: ignore[no-untyped-def]
    """Microseconds per request, the answer's body read as a server would."""
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"{method} {path}: {status}")

    for _ in range(warmup):  # imports, caches, the first queries
        b"".join(app(environ(method, path, body), start_response))
    started = time.perf_counter()
    for _ in range(requests):
        result = app(environ(method, path, body), start_response)
        b"".join(result)
        getattr(result, "close", lambda: None)()
    return (time.perf_counter() - started) / requests * 1e6


def hello(env: dict[str, object], start_response) -> list[bytes]:  # type: ignore[no-untyped-def]
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def micro(requests: int) -> dict[str, float]:
    """The metrics' own work alone, per request: the middleware around an answer made in advance, and the
    operation counter of one quantize call."""
    from django.http import HttpResponse
    from django.test import RequestFactory

    from engine import Quantizer
    from quantizers import metrics

    answer = HttpResponse(b"{}")
    middleware = metrics.MetricsMiddleware(lambda request: answer)
    request = RequestFactory().post("/instances/default/quantize", SMALL, content_type="application/json")
    from django.urls import resolve

    request.resolver_match = resolve(request.path)
    result = Quantizer().quantize(__import__("numpy").ones((2, 3), "float32"))
    timings = {}
    for name, call in (("middleware", lambda: middleware(request)),
                       ("operation counter", lambda: metrics.operation_done("default", "quantize", result))):
        for _ in range(100):
            call()
        started = time.perf_counter()
        for _ in range(requests):
            call()
        timings[name] = (time.perf_counter() - started) / requests * 1e6
    return timings


def child(chunks: int, chunk: int) -> None:
    """Both configurations in this process, alternating; prints the table."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")  # as gunicorn.conf.py
    sys.path[0] = str(ROOT)  # not bench/, whose http.py would shadow the standard library's http package
    import logging

    import django
    from django.conf import settings

    django.setup()
    logging.disable(logging.CRITICAL)
    from django.core.handlers.wsgi import WSGIHandler

    from quantizers import metrics

    with_metrics = WSGIHandler()
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "quantizers.metrics.MetricsMiddleware"]
    without_metrics = WSGIHandler()
    counting = metrics.operation_done

    def counter_off(*args: object, **kwargs: object) -> None:
        return None

    apps = {"bare WSGI": (hello, counting), "without": (without_metrics, counter_off),
            "with": (with_metrics, counting)}
    print(f"{'row':16} {'bare WSGI':>10} {'without':>10} {'with':>10} {'metrics':>10} {'share':>7}   (us/request, "
          f"median of {chunks} chunks of {chunk})")
    small_without = 0.0
    order = random.Random(13)
    for row, spec in ROWS.items():
        times: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(chunks):
            for name in order.sample(list(apps), len(apps)):  # a fresh order each chunk: no position favoured
                app, operation_done = apps[name]
                metrics.operation_done = operation_done  # type: ignore[assignment]
                times[name].append(time_app(app, *spec, chunk, warmup=5 if times[name] else 50))
        metrics.operation_done = counting  # type: ignore[assignment]
        bare, without, with_ = (statistics.median(times[name]) for name in apps)
        paired = statistics.median(w - wo for w, wo in zip(times["with"], times["without"], strict=True))
        print(f"{row:16} {bare:10.1f} {without:10.1f} {with_:10.1f} {paired:10.1f} {paired / without:7.1%}")
        small_without = without
    for row, alone in micro(chunks * chunk).items():
        print(f"{row + ' alone':28} {alone:6.1f} us per request ({alone / small_without:.1%} of a small quantize "
              "without)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.chunks, args.chunk)
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-metrics-db-"))
    env = {**os.environ, "DJANGO_DEBUG": "1", "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
           "DJANGO_SETTINGS_MODULE": "quantsite.settings", "QUANTIZER_REQUIRE_AUTH": "0"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, __file__, "--child", "--chunks", str(args.chunks), "--chunk", str(args.chunk)],
                   cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
