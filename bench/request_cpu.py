"""CPU per request in process: quantsite's WSGI application called in a loop (no server, no socket), with the
settings bench/http.py gives gunicorn (DEBUG off, auth off, a fresh SQLite database, metrics in multiprocess
mode), against the same loop calling a bare WSGI hello function (the floor). For measuring changes to the request
path, where wrk's figures swing with the machine's load; each row also gives the Python calls per request, which
the load does not move at all. `--profile ROUTE` prints cProfile's top entries instead.

    .venv/bin/python bench/request_cpu.py [--requests 2000] [--rounds 5] [--profile quantize|root]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The request bodies of bench/http.py (a file named like the standard library's http package: loaded by path).
_spec = importlib.util.spec_from_file_location("bench_http", ROOT / "bench" / "http.py")
assert _spec is not None
assert _spec.loader is not None
_http = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_http)
HELLO_BODY, SMALL_BODY = _http.HELLO_BODY, _http.SMALL_BODY

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(HELLO_BODY)))])
    return [HELLO_BODY]


def environ_for(method: str, path: str, body: bytes | None) -> Callable[[], dict[str, Any]]:
    base = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
    }
    if body is not None:
        base.update({"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body))})

    def make() -> dict[str, Any]:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(body or b"")
        return environ

    return make


def call(app: WsgiApp, make: Callable[[], dict[str, Any]]) -> bytes:
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(s)

    result = app(make(), start_response)
    try:
        data = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"{status}: {data[:300]!r}")
    return data


def cpu_per_request(app: WsgiApp, make: Callable[[], dict[str, Any]], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        call(app, make)
    return (time.process_time() - start) / n


def setup(tmp: Path) -> WsgiApp:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "quantsite.settings", "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "x" * 40, "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_LOG_LEVEL": "WARNING", "QUANTIZER_REQUIRE_AUTH": "0",
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}", "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
    })
    (tmp / "metrics").mkdir()
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    from quantsite.wsgi import application

    return application  # type: ignore[no-any-return]


def calls_per_request(app: WsgiApp, make: Callable[[], dict[str, Any]], n: int = 200) -> float:
    """Python function calls per request (cProfile's count): unlike CPU time, the machine's load does not move it."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call(app, make)
    profiler.disable()
    return pstats.Stats(profiler).total_calls / n  # type: ignore[attr-defined, no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="requests per row and round (default 2000)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--profile", choices=["quantize", "root"], help="cProfile this route instead")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="quantsite-cpu-"))
    try:
        app = setup(tmp)
        rows = {
            "hello": (hello, environ_for("GET", "/", None)),
            "GET /": (app, environ_for("GET", "/", None)),
            "small quantize": (app, environ_for("POST", "/instances/default/quantize", SMALL_BODY)),
        }
        for fn, make in rows.values():  # warm: URLconf, the default instance, the engine's first call
            for _ in range(50):
                call(fn, make)
        gc.freeze()  # as gunicorn.conf.py does in each worker: the start-up objects are never walked again
        if args.profile:
            import cProfile
            import pstats

            fn, make = rows["small quantize" if args.profile == "quantize" else "GET /"]
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                call(fn, make)
            profiler.disable()
            stats = pstats.Stats(profiler)
            calls = stats.total_calls / args.requests  # type: ignore[attr-defined]
            print(f"{calls:.0f} Python calls per request")
            stats.sort_stats("tottime").print_stats(35)
            stats.sort_stats("cumulative").print_stats(45)
            return 0
        cpu: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, (fn, make) in rows.items():
                cpu.setdefault(name, []).append(cpu_per_request(fn, make, args.requests))
        floor = statistics.median(cpu["hello"])
        print(f"CPU per request in process, {args.requests} requests x {args.rounds} alternating rounds, medians "
              f"(load average {os.getloadavg()[0]:.1f}):")
        for name, values in cpu.items():
            med = statistics.median(values)
            calls = calls_per_request(*rows[name])
            print(f"  {name:<15} {med * 1e6:8.1f} us  (min {min(values) * 1e6:.1f})  {med / floor:7.1f}x hello"
                  f"  {calls:6.0f} Python calls")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
