"""The cost of the Prometheus metrics per request, in process: the Django application called as gunicorn calls it
(its WSGI handler, one environ per request), with the metrics (the middleware and the services' operation
counter, in multiprocess mode as under gunicorn) and without them, beside a bare WSGI hello app called the same way.

Run from the repository root:

    python bench/metrics.py                # 2000 requests per row and round, median of 5 rounds
    python bench/metrics.py --requests 5000 --rounds 7

Each round runs every configuration in a fresh subprocess, in turn (a slow spell of a shared machine then touches
all rows alike). Rows: GET / (the cheapest route: the middleware's share is largest) and the spec's small quantize
(2x3 JSON, the stats UPDATE on SQLite included). The figure to read is the difference with - without, in
microseconds per request, and its share of the request.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def time_app(app, method: str, path: str, body: bytes, requests: int) -> float:  # type: ignore[no-untyped-def]
    """Microseconds per request, the answer's body read as a server would."""
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"{method} {path}: {status}")

    for _ in range(50):  # warm-up: imports, caches, the first queries
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


def child(mode: str, requests: int) -> None:
    """One configuration in this process; prints {row: microseconds per request} as JSON."""
    if mode == "bare":
        print(json.dumps({row: time_app(hello, *spec, requests) for row, spec in ROWS.items()}))
        return
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")  # as gunicorn.conf.py
    sys.path[0] = str(ROOT)  # not bench/, whose http.py would shadow the standard library's http package
    import django
    from django.conf import settings

    django.setup()
    if mode == "without":
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "quantizers.metrics.MetricsMiddleware"]
        from quantizers import metrics

        metrics.operation_done = lambda *args, **kwargs: None  # type: ignore[assignment]
    import logging

    logging.disable(logging.CRITICAL)
    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    timings = {row: time_app(app, *spec, requests) for row, spec in ROWS.items()}
    if mode == "with":
        timings.update(micro(requests * 10))
    print(json.dumps(timings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=["with", "without", "bare"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests)
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-metrics-db-"))
    env = {**os.environ, "DJANGO_DEBUG": "1", "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
           "DJANGO_SETTINGS_MODULE": "quantsite.settings", "QUANTIZER_REQUIRE_AUTH": "0"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    figures: dict[str, dict[str, list[float]]] = {mode: {} for mode in ("with", "without", "bare")}
    for _ in range(args.rounds):
        for mode in figures:
            out: Any = subprocess.run([sys.executable, __file__, "--child", mode, "--requests", str(args.requests)],
                                 cwd=ROOT, env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
            out = out.stdout
            for row, micros in json.loads(out.strip().splitlines()[-1]).items():
                figures[mode].setdefault(row, []).append(micros)
    print(f"{'row':16} {'bare WSGI':>10} {'without':>10} {'with':>10} {'metrics':>10} {'share':>7}   (us/request, "
          f"median of {args.rounds} rounds of {args.requests})")
    for row in ROWS:
        bare, without, with_ = (statistics.median(figures[mode][row]) for mode in ("bare", "without", "with"))
        print(f"{row:16} {bare:10.1f} {without:10.1f} {with_:10.1f} {with_ - without:10.1f} "
              f"{(with_ - without) / without:7.1%}")
    small = statistics.median(figures["without"]["small quantize"])
    for row in ("middleware", "operation counter"):
        alone = statistics.median(figures["with"][row])
        print(f"{row + ' alone':28} {alone:6.1f} us per request ({alone / small:.1%} of a small quantize without)")


if __name__ == "__main__":
    main()
