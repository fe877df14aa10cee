"""End-to-end HTTP benchmark: gunicorn + Django + DRF + engine, measured from a client on the same machine.

Run from the repository root:

    .venv/bin/python bench/http.py            # everything, about 4-5 minutes on 2 cores; prints one table
    .venv/bin/python bench/http.py --quick    # fewer repetitions and shorter throughput windows
    .venv/bin/python bench/http.py --small    # the requests/s rows alone (floors, GET /, small quantize), ~3 minutes

The servers run under the interpreter that runs the bench (its venv's gunicorn): run it with another venv's python
to measure that interpreter.

It starts its own servers (production-like settings: DJANGO_DEBUG=0, a throwaway secret key, SSL redirect and
token auth off, SQLite in a temporary directory migrated first, gunicorn.conf.py's defaults otherwise, so no access
log) on free loopback ports, and stops them at the end:

  * server A, GUNICORN_WORKERS=2 (or --workers): every latency, throughput and requests/s figure;
  * the hello app and a minimal Django + DRF project (see the floors below), 2 sync workers each, measured in the
    same run as server A;
  * server C, GUNICORN_WORKERS=1, started fresh: the memory of its one worker under 20 large requests in a row.

Array rows time the whole exchange from the client (send the body, read the whole answer; nothing is parsed in
the timed part) over one persistent http.client connection (gunicorn's sync workers close it after each answer;
http.client then reconnects, which is part of the cost as it is for any client). Each row is the median of its
repetitions after one untimed warm-up, whose answer is checked. MB/s is always of the float32 data the row
stands for (4 bytes x elements), input for quantize/quantize_dequantize, output for dequantize, so rows compare.
JSON bodies are json.dumps of x.tolist() (float32 data) or of int8 codes (dequantize); .npy rows send and accept
application/x-npy (the full result comes back). Array rows use an instance `bench` with the default config but
enable_cache=false, so dequantize runs the kernel rather than answering a cache hit; the small example uses
`default`, as the spec does.

Rows that are compared run alternately, rep by rep, so that both see the same machine load: JSON quantize at
1000^2 and 2000^2 with its floor, .npy quantize 2000^2 with its floor and with raw octet-stream quantize.

Floors, none of them quantsite's code:
  * JSON quantize: in this process, orjson.loads(body) -> np.asarray(data, float32) -> a scale from max |x| ->
    np.clip(np.rint(x / s), -128, 127).astype(int8) -> orjson.dumps(codes, OPT_SERIALIZE_NUMPY);
  * .npy quantize: in this process, np.load -> the same numpy quantize -> np.save;
  * small requests: a bare WSGI "hello" app (one function returning a fixed small JSON body), served by gunicorn
    with 2 sync workers and no configuration file, next to quantsite (its own gunicorn.conf.py); and the
    framework's own floor, a minimal Django project served the same way as hello: "DRF viewset (empty)", one DRF
    ViewSet @action(detail=True, methods=["post"]) routed by a plain path(), parsing the spec's small body with
    DRF's JSONParser and answering a fixed dict of the answer's shape through JSONRenderer; "DRF viewset (empty,
    tuned)", the same action with what quantsite changes in DRF for speed (an orjson parser and renderer, a
    content negotiation answering at once when there is no choice); and "Django view (empty)", a plain function
    view (json.loads, JsonResponse), which separates Django's cost from DRF's. Its settings: DEBUG off, no
    middleware, no database, no DRF authentication or permission classes (see DJANGO_FLOOR_FILES). Requests/s
    come from wrk (-t1, 4 and 1 connections, 4 s windows; three rounds alternating the rows: hello, the Django
    floors, GET / and the spec's small quantize; medians), or from a bounded Python client when wrk is not
    installed (said so in the output).
Memory: a fresh one-worker server, a small warm-up request, then 20 consecutive 2000x2000 JSON quantizes; the
worker's VmRSS after them and its VmHWM (peak) from /proc. The last line says how much CPU other processes took
meanwhile: on a shared machine, read the figures with it.
"""

from __future__ import annotations

import sys

# This file is named http.py: when run as a script its directory comes first on sys.path and would shadow the
# standard library's `http` package (and Django's use of it). Drop that entry before anything imports http.
_HERE = __import__("os").path.dirname(__import__("os").path.abspath(__file__))
sys.path[:] = [p for p in sys.path if __import__("os").path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import http.client  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.integration import stack  # noqa: E402  (the test stack's helpers, as bench/upload.py uses them)

# The interpreter running the bench runs the servers too (migrate, gunicorn), so another venv can be measured
# by running the bench with its python.
PY = sys.executable
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
SMALL_BODY = json.dumps({"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]], "validate": True}).encode()
SMALL_ANSWER = [[-94, -32, 31], [93, 127, -69]]
NPY = "application/x-npy"
OCTET = "application/octet-stream"
JSON_CT = "application/json"
HTTP_TIMEOUT = 60.0
WRK = shutil.which("wrk")
HELLO_BODY = b'{"status":"ok"}'
HELLO_APP = f'''"""A bare WSGI app: the floor of a small request through gunicorn (written by bench/http.py)."""

BODY = {HELLO_BODY!r}
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
'''
# The framework's own floor of a small JSON POST: a minimal Django project (written by the bench into its temp
# directory, served like the hello app) with one DRF ViewSet action and one plain Django function view, both
# answering the spec's example with a fixed body of the same shape as quantsite's answer (the shape computed from
# the parsed body, so the parse is not skipped). No middleware: a JSON API without sessions, cookies or browser
# forms needs none of Django's (DRF's views are CSRF-exempt unless SessionAuthentication is used), and whatever
# one adds costs more. No database (DATABASES = {}); DEBUG off; Django's other defaults (USE_I18N, USE_TZ on).
# DRF: its JSONParser and JSONRenderer, no authentication (so no request.user lookup) and no permission classes;
# a second route, "tuned", the same action with orjson in and out and a shortcut in the content negotiation.
DJANGO_FLOOR_FILES = {
    "floor_settings.py": '''"""Settings of the bench's minimal Django + DRF project (written by bench/http.py)."""

SECRET_KEY = "bench-only-secret-key-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "floor_urls"
INSTALLED_APPS = ["rest_framework"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
REST_FRAMEWORK = {
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
''',
    "floor_urls.py": '''"""Routes and views of the bench's minimal Django + DRF project (written by bench/http.py)."""

import json

import orjson
from django.http import HttpResponse, JsonResponse
from django.urls import path
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response

ANSWER = {"data": [[-94, -32, 31], [93, 127, -69]], "quantization_type": "INT8"}


class InstanceViewSet(viewsets.ViewSet):
    @action(detail=True, methods=["post"])
    def quantize(self, request, pk=None):
        rows = request.data["data"]  # JSONParser
        return Response({**ANSWER, "original_shape": [len(rows), len(rows[0])]})


# The same action with what any DRF project can change in settings: orjson in and out, and a negotiation that
# skips parsing Accept and Content-Type when the request leaves no choice (quantsite does both).
class OrjsonParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        return orjson.loads(stream.read())


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return orjson.dumps(data)


class FirstChoiceNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        meta = request.META
        if not format_suffix and meta.get("HTTP_ACCEPT", "") in ("", "*/*") and not meta.get("QUERY_STRING"):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)

    def select_parser(self, request, parsers):
        if parsers and parsers[0].media_type == request.content_type:
            return parsers[0]
        return super().select_parser(request, parsers)


class TunedInstanceViewSet(InstanceViewSet):
    parser_classes = [OrjsonParser]
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = FirstChoiceNegotiation


def plain_quantize(request, pk):
    rows = json.loads(request.body)["data"]
    return JsonResponse({**ANSWER, "original_shape": [len(rows), len(rows[0])]})


def root(request):
    return HttpResponse(b"ok")


urlpatterns = [
    path("instances/<str:pk>/quantize", InstanceViewSet.as_view({"post": "quantize"})),
    path("tuned/<str:pk>/quantize", TunedInstanceViewSet.as_view({"post": "quantize"})),
    path("django/<str:pk>/quantize", plain_quantize),
    path("", root),
]
''',
    "floor_wsgi.py": '''"""WSGI entry of the bench's minimal Django + DRF project (written by bench/http.py)."""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "floor_settings"

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
''',
}


# ---------------------------------------------------------------------------- servers
# --port BASE: the servers take BASE, BASE+1, ... (a range agreed on a shared machine); unset, free ports.
_next_port: list[int] = []


def free_port() -> int:
    if _next_port:
        _next_port[0] += 1
        return _next_port[0] - 1
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(tmp: Path, port: int, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GUNICORN_", "QUANTIZER_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "quantsite.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_LOG_LEVEL": "WARNING",
        "QUANTIZER_REQUIRE_AUTH": "0",
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "GUNICORN_WORKERS": str(workers),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_LOG_LEVEL": "warning",
    })
    return env


class Server:
    def __init__(self, tmp: Path, workers: int, name: str, *, floor: str | None = None) -> None:
        self.port = free_port()
        self.env = server_env(tmp, self.port, workers)
        self.log_path = tmp / f"server-{name}.log"
        self.workers = workers
        self.floor = floor  # None: quantsite; "hello" or "django": a floor app written into tmp
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], Path]:
        if self.floor is None:
            return [GUNICORN, "quantsite.wsgi", "--config", "gunicorn.conf.py"], ROOT
        # A floor app: gunicorn's defaults (no configuration file: none in its directory), 2 sync workers.
        files = {"hello_wsgi.py": HELLO_APP} if self.floor == "hello" else DJANGO_FLOOR_FILES
        for name, text in files.items():
            (self.tmp / name).write_text(text)
        module = "hello_wsgi" if self.floor == "hello" else "floor_wsgi"
        return [GUNICORN, f"{module}:application", "--workers", str(self.workers), "--worker-class", "sync",
                "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning"], self.tmp

    # 300 s: on an empty kernel cache (a fresh checkout) the master first compiles the kernels, about two minutes.
    def start(self, timeout: float = 300.0) -> Server:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd, cwd = self.command()
        env = self.env if self.floor is None else {k: v for k, v in self.env.items()
                                                   if not k.startswith(("GUNICORN_", "DJANGO_"))}
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _, _ = request(self.conn(timeout=2), "GET", "/")
                if status == 200 and len(self.worker_pids()) == self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer GET / within {timeout}s:\n{self.log_tail()}")

    def conn(self, timeout: float = HTTP_TIMEOUT) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return stack.child_pids(self.proc.pid)

    def workers_cpu_seconds(self) -> float:
        """User + system CPU time of the workers alive now (a worker that died meanwhile is not counted)."""
        total = 0
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        return total / os.sysconf("SC_CLK_TCK")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()


def proc_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


# ---------------------------------------------------------------------------- client
def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def timed(fn: Callable[[], Any], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        times.append(time_once(fn))
    return times


def time_once(fn: Callable[[], Any]) -> float:
    # No gc.collect() first: the server gets none before its requests, so the in-process floor gets none either.
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class ArrayCase:
    def __init__(self, label: str, path: str, body: bytes, ctype: str, accept: str, elements: int,
                 check: Callable[[int, dict[str, str], bytes], None], extra: dict[str, str] | None = None) -> None:
        self.label, self.path, self.body, self.elements, self.check = label, path, body, elements, check
        self.headers = {"Content-Type": ctype, "Accept": accept, **(extra or {})}

    def prepare(self, server: Server) -> tuple[Callable[[], None], http.client.HTTPConnection]:
        """One untimed, checked warm-up request; then a callable doing one request on the same connection."""
        conn = server.conn()
        status, headers, data = request(conn, "POST", self.path, self.body, self.headers)
        if status != 200:
            raise RuntimeError(f"{self.label}: HTTP {status}: {data[:300]!r}")
        self.check(status, headers, data)

        def once() -> None:
            st, _, _ = request(conn, "POST", self.path, self.body, self.headers)
            if st != 200:
                raise RuntimeError(f"{self.label}: HTTP {st}")

        return once, conn

    def run(self, server: Server, reps: int) -> list[float]:
        once, conn = self.prepare(server)
        try:
            return timed(once, reps)
        finally:
            conn.close()


def npy_check(shape: tuple[int, ...], dtype: str) -> Callable[[int, dict[str, str], bytes], None]:
    def check(status: int, headers: dict[str, str], data: bytes) -> None:
        assert headers["content-type"].startswith(NPY), headers["content-type"]
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        assert arr.shape == shape, arr.shape
        assert arr.dtype == np.dtype(dtype), arr.dtype
    return check


def json_check(shape: tuple[int, ...]) -> Callable[[int, dict[str, str], bytes], None]:
    def check(status: int, headers: dict[str, str], data: bytes) -> None:
        assert headers["content-type"].startswith(JSON_CT), headers["content-type"]
        assert data.startswith(b'{"data":[['), data[:200]
        assert b'"original_shape":[%d,%d]' % shape in data, data[-200:]
    return check


def octet_check(shape: tuple[int, ...], dtype: str) -> Callable[[int, dict[str, str], bytes], None]:
    def check(status: int, headers: dict[str, str], data: bytes) -> None:
        assert headers["content-type"].startswith(OCTET), headers["content-type"]
        assert headers["x-shape"] == ",".join(map(str, shape)), headers
        assert headers["x-dtype"] == dtype, headers
        assert len(data) == int(np.prod(shape)) * np.dtype(dtype).itemsize
    return check


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def throughput(server: Server, method: str, path: str, body: bytes | None, headers: dict[str, str],
               clients: int, seconds: float) -> tuple[int, float]:
    """(requests, seconds) of `clients` threads, each with its own persistent http.client connection, during
    `seconds` (requests still in flight at the end are counted when they finish, and so is the time)."""
    counts = [0] * clients
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        conn = server.conn(timeout=30)
        try:
            request(conn, method, path, body, headers)  # connect and warm up before the clock starts
            start.wait(timeout=30)
            while time.perf_counter() < stop_at[0]:
                status, _, _ = request(conn, method, path, body, headers)
                if status != 200:
                    errors.append(f"HTTP {status}")
                    return
                counts[i] += 1
        except Exception as exc:  # reported below
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 1e9
    start.wait(timeout=30)
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{method} {path} x{clients}: {errors[0]}")
    return sum(counts), elapsed


def latency_probe(server: Server, big_body: bytes, big_requests: int) -> tuple[list[float], list[float]]:
    """One client sends `big_requests` 2000x2000 JSON quantizes back to back; another times GET / meanwhile."""
    big_times: list[float] = []
    done = threading.Event()
    errors: list[str] = []

    def big() -> None:
        conn = server.conn()
        try:
            for _ in range(big_requests):
                t0 = time.perf_counter()
                status, _, _ = request(conn, "POST", "/instances/bench/quantize", big_body,
                                       {"Content-Type": JSON_CT})
                big_times.append(time.perf_counter() - t0)
                if status != 200:
                    errors.append(f"HTTP {status}")
        except Exception as exc:  # reported below
            errors.append(repr(exc))
        finally:
            done.set()
            conn.close()

    probe = server.conn(timeout=30)
    request(probe, "GET", "/")
    thread = threading.Thread(target=big, daemon=True)
    thread.start()
    time.sleep(0.05)  # let the big request reach a worker
    lat: list[float] = []
    while not done.is_set():
        t0 = time.perf_counter()
        status, _, _ = request(probe, "GET", "/")
        lat.append(time.perf_counter() - t0)
        if status != 200:
            errors.append(f"GET / HTTP {status}")
            break
        time.sleep(0.01)
    thread.join(timeout=120)
    probe.close()
    if errors:
        raise RuntimeError(f"latency probe: {errors[0]}")
    return lat, big_times


# ---------------------------------------------------------------------------- floors (none of quantsite's code)
def numpy_quantize(x: np.ndarray) -> np.ndarray:
    """Symmetric int8 codes with one scale from max |x|: the plain numpy a floor quantizes with."""
    s = np.float32(max(-float(x.min()), float(x.max())) / 127.0) or np.float32(1.0)
    return np.clip(np.rint(x / s), -128, 127).astype(np.int8)


def json_floor(body: bytes) -> Callable[[], bytes]:
    """orjson.loads -> float32 array -> numpy quantize -> orjson.dumps; checked once before it is returned."""
    import orjson

    def once() -> bytes:
        x = np.asarray(orjson.loads(body)["data"], np.float32)
        return orjson.dumps(numpy_quantize(x), option=orjson.OPT_SERIALIZE_NUMPY)

    assert once().startswith(b"[[")
    return once


def npy_floor(body: bytes) -> Callable[[], bytes]:
    """np.load -> numpy quantize -> np.save, in memory; checked once before it is returned."""
    def once() -> bytes:
        x = np.load(io.BytesIO(body), allow_pickle=False)
        out = io.BytesIO()
        np.save(out, numpy_quantize(x), allow_pickle=False)
        return out.getvalue()

    assert np.load(io.BytesIO(once())).dtype == np.int8
    return once


# ---------------------------------------------------------------------------- requests/s
def wrk_rps(port: int, path: str, clients: int, seconds: int, tmp: Path, body: bytes | None = None) -> float:
    """Requests/s from `wrk -t1 -c<clients> -d<seconds>s` (a lua script for a POST body); non-2xx answers fail."""
    cmd = [str(WRK), "-t1", f"-c{clients}", f"-d{seconds}s"]
    if body is not None:
        script = tmp / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = {json.dumps(body.decode())}\n")
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True,
                         timeout=seconds + 30).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk {path}: errors\n{out}")
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"wrk {path}: no Requests/sec line\n{out}")


def python_rps(server: Server, path: str, clients: int, seconds: int, body: bytes | None = None) -> float:
    method, headers = ("POST", {"Content-Type": JSON_CT}) if body is not None else ("GET", {})
    count, elapsed = throughput(server, method, path, body, headers, clients, float(seconds))
    return count / elapsed


def cpu_busy_seconds() -> float:
    """CPU time spent by everything on the machine (all CPUs), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process and of its reaped descendants (migrate, gunicorn masters and their workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# (row, server, path, body): "hello" and "django" are the floors (the bare WSGI app, the minimal Django + DRF
# project), "quantsite" the server measured.
SMALL_ROWS = (
    ("hello app", "hello", "/", None),
    ("DRF viewset (empty)", "django", "/instances/default/quantize", SMALL_BODY),
    ("DRF viewset (empty, tuned)", "django", "/tuned/default/quantize", SMALL_BODY),
    ("Django view (empty)", "django", "/django/default/quantize", SMALL_BODY),
    ("GET /", "quantsite", "/", None),
    ("spec quantize", "quantsite", "/instances/default/quantize", SMALL_BODY),
)
NAME_WIDTH = max(len(name) for name, *_ in SMALL_ROWS)


# Worker CPU seconds per request, by row (all client counts): filled by small_requests.
WORKER_CPU: dict[str, list[float]] = {}


def small_requests(servers: dict[str, Server], rounds: int, window: int, tmp: Path
                   ) -> dict[tuple[str, int], list[float]]:
    """Requests/s of SMALL_ROWS (the floors, GET / and the spec's example), alternating row by row, round by round,
    at 4 and 1 clients; and the workers' CPU time per request of each window (WORKER_CPU), which the machine's
    other load moves much less than the rates. `servers` by SMALL_ROWS' server names."""
    rps: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for clients in (4, 1):
            for name, server_name, path, body in SMALL_ROWS:
                server = servers[server_name]
                cpu_before = server.workers_cpu_seconds()
                if WRK:
                    value = wrk_rps(server.port, path, clients, window, tmp, body)
                else:
                    value = python_rps(server, path, clients, window, body)
                cpu = server.workers_cpu_seconds() - cpu_before
                rps.setdefault((name, clients), []).append(value)
                WORKER_CPU.setdefault(name, []).append(cpu / (value * window))
    return rps


def start_django_floor(tmp: Path) -> Server:
    """The minimal Django + DRF project, 2 sync workers; its routes checked, and warmed up in both workers (they
    import their views on their first request; quantsite's workers warm up in gunicorn.conf.py)."""
    server = Server(tmp, 2, "django", floor="django").start()
    try:
        for name, server_name, path, body in SMALL_ROWS:
            if server_name != "django":
                continue
            for _ in range(10):  # the sync workers close each connection, so the next one may reach the other
                conn = server.conn()
                status, _, data = request(conn, "POST", path, body, {"Content-Type": JSON_CT})
                conn.close()
                assert status == 200, (name, status, data[:300])
                answer = json.loads(data)
                assert answer["data"] == SMALL_ANSWER, (name, answer)
                assert answer["original_shape"] == [2, 3], (name, answer)
    except BaseException:
        server.stop()
        raise
    return server


def small_table(rps: dict[tuple[str, int], list[float]], rounds: int, window: int, workers: int) -> list[str]:
    tool = (f"wrk -t1 -c<clients> -d{window}s" if WRK else
            f"a Python client (wrk not installed): <clients> threads with a connection each, {window} s")
    out = [f"requests/s: {tool}; {rounds} rounds alternating the rows, median of the rounds. The hello app is a bare "
           "WSGI", "function returning a fixed small JSON body; the empty DRF viewsets and Django view, a minimal "
           "Django project", "answering the spec's small quantize with a fixed body (no middleware, no database; "
           "\"tuned\": orjson and a", "negotiation shortcut); both floors gunicorn 2 sync workers, no config file; "
           f"quantsite {workers} sync workers, its", f"gunicorn.conf.py; all run by {PY} (Python "
           f"{sys.version.split()[0]}):",
           f"  {'':<{NAME_WIDTH}} {'4 clients':>10} {'of hello':>9} {'1 client':>10} {'of hello':>9}"]
    med_rps = {k: statistics.median(v) for k, v in rps.items()}
    for name, *_ in SMALL_ROWS:
        cells = []
        for clients in (4, 1):
            value = med_rps[(name, clients)]
            cells.append(f"{value:10.0f} {value / med_rps[('hello app', clients)]:9.0%}")
        out.append(f"  {name:<{NAME_WIDTH}} {' '.join(cells)}")
    if WORKER_CPU:
        out.append("worker CPU per request (user + system of the workers over each window, median of the windows):")
        hello_cpu = statistics.median(WORKER_CPU["hello app"])
        for name, *_ in SMALL_ROWS:
            value = statistics.median(WORKER_CPU[name])
            out.append(f"  {name:<{NAME_WIDTH}} {value * 1e6:7.0f} us  {value / hello_cpu:5.1f}x hello")
    return out


def small_only(workers: int, rounds: int, window: int) -> int:
    """--small: the requests/s rows alone (a minute or two), for measuring changes to the request path."""
    load_begin = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="quantsite-bench-"))
    servers: list[Server] = []
    try:
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=server_env(tmp, 0, 1),
                       check=True, timeout=120)
        srv = Server(tmp, workers, "main").start()
        servers.append(srv)
        hello = Server(tmp, 2, "hello", floor="hello").start()
        servers.append(hello)
        django_floor = start_django_floor(tmp)
        servers.append(django_floor)
        conn = srv.conn()
        status, _, data = request(conn, "POST", "/instances/default/quantize", SMALL_BODY, {"Content-Type": JSON_CT})
        conn.close()
        assert status == 200, data
        assert json.loads(data)["data"] == SMALL_ANSWER, data
        rps = small_requests({"hello": hello, "django": django_floor, "quantsite": srv}, rounds, window, tmp)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(small_table(rps, rounds, window, workers)))
    print(f"machine: load average {load_begin:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    return 0


# ---------------------------------------------------------------------------- main
def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="workers of the main server (default 2)")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, shorter throughput windows")
    ap.add_argument("--small", action="store_true", help="the requests/s rows only (floors, GET /, small quantize)")
    ap.add_argument("--rounds", type=int, help="alternating rounds of the requests/s rows (default 3, --quick 2)")
    ap.add_argument("--port", type=int, help="the servers' first port (the next ones follow); default: free ports")
    args = ap.parse_args()
    if args.port:
        _next_port.append(args.port)
    reps = {100: 7, 1000: 7, 2000: 5} if not args.quick else {100: 5, 1000: 5, 2000: 3}
    pair_reps = 15 if not args.quick else 7  # .npy quantize 2000^2, its floor and octet-stream, alternating
    rounds, window = (3, 4) if not args.quick else (2, 2)  # requests/s: alternating rounds of `window` seconds
    rounds = args.rounds or rounds
    if args.small:
        return small_only(args.workers, rounds, window)
    rss_requests = 20
    t_begin = time.perf_counter()
    busy_begin, own_begin = cpu_busy_seconds(), own_cpu_seconds()
    load_begin = os.getloadavg()[0]

    rng = np.random.default_rng(0)
    sizes = (100, 1000, 2000)
    arrays = {n: rng.standard_normal((n, n)).astype(np.float32) for n in sizes}
    codes = {n: rng.integers(-128, 128, size=(n, n), dtype=np.int8) for n in sizes}
    json_f = {n: json.dumps({"data": arrays[n].tolist()}).encode() for n in sizes}
    json_c = {n: json.dumps({"data": codes[n].tolist()}).encode() for n in sizes}
    npy_f = {n: npy_bytes(arrays[n]) for n in sizes}
    npy_c = {n: npy_bytes(codes[n]) for n in sizes}
    t_bodies = time.perf_counter() - t_begin

    floor_fns = {n: json_floor(json_f[n]) for n in (1000, 2000)}
    npy_floor_fn = npy_floor(npy_f[2000])
    floor: dict[int, list[float]] = {}
    npy_floor_times: list[float] = []

    tmp = Path(tempfile.mkdtemp(prefix="quantsite-bench-"))
    servers: list[Server] = []
    try:
        env = server_env(tmp, 0, 1)
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True,
                       timeout=120)
        srv = Server(tmp, args.workers, "main").start()
        servers.append(srv)
        hello = Server(tmp, 2, "hello", floor="hello").start()
        servers.append(hello)
        django_floor = start_django_floor(tmp)
        servers.append(django_floor)
        conn = srv.conn()
        status, _, data = request(conn, "POST", "/instances/bench", json.dumps({"enable_cache": False}).encode(),
                                  {"Content-Type": JSON_CT})
        assert status == 200, data
        status, _, data = request(conn, "POST", "/instances/default/quantize", SMALL_BODY, {"Content-Type": JSON_CT})
        assert status == 200, data
        assert json.loads(data)["data"] == SMALL_ANSWER, data
        conn.close()

        # ---- array rows; JSON quantize at 1000^2 and 2000^2 alternates with its floor, rep by rep, and .npy
        # quantize 2000^2 with its floor and octet-stream, so that compared rows see the same machine load
        rows: list[tuple[str, str, int, list[float]]] = []
        for n in sizes:
            shape = (n, n)
            cases = [
                ("quantize", "JSON", ArrayCase("json q", "/instances/bench/quantize", json_f[n], JSON_CT, JSON_CT,
                                               n * n, json_check(shape))),
                ("quantize", ".npy", ArrayCase("npy q", "/instances/bench/quantize", npy_f[n], NPY, NPY, n * n,
                                               npy_check(shape, "int8"))),
                ("dequantize", "JSON", ArrayCase("json dq", "/instances/bench/dequantize", json_c[n], JSON_CT,
                                                 JSON_CT, n * n, json_check(shape))),
                ("dequantize", ".npy", ArrayCase("npy dq", "/instances/bench/dequantize", npy_c[n], NPY, NPY,
                                                 n * n, npy_check(shape, "float32"))),
                ("quantize_dequantize", "JSON", ArrayCase("json qdq", "/instances/bench/quantize_dequantize",
                                                          json_f[n], JSON_CT, JSON_CT, n * n, json_check(shape))),
                ("quantize_dequantize", ".npy", ArrayCase("npy qdq", "/instances/bench/quantize_dequantize",
                                                          npy_f[n], NPY, NPY, n * n, npy_check(shape, "float32"))),
            ]
            raw_case = ArrayCase("raw q", "/instances/bench/quantize", arrays[n].tobytes(), OCTET, OCTET, n * n,
                                 octet_check(shape, "int8"), {"X-Shape": f"{n},{n}", "X-Dtype": "float32"})
            raw_times: list[float] = []
            for op, fmt, case in cases:
                if op == "quantize" and fmt == "JSON" and n in floor_fns:
                    once, conn = case.prepare(srv)
                    http_times, floor[n] = [], []
                    for _ in range(reps[n]):
                        floor[n].append(time_once(floor_fns[n]))
                        http_times.append(time_once(once))
                    conn.close()
                    rows.append((op, fmt, n, http_times))
                elif op == "quantize" and fmt == ".npy" and n == 2000:
                    once, conn = case.prepare(srv)
                    raw_once, raw_conn = raw_case.prepare(srv)
                    npy_times = []
                    for _ in range(pair_reps):
                        npy_floor_times.append(time_once(npy_floor_fn))
                        npy_times.append(time_once(once))
                        raw_times.append(time_once(raw_once))
                    conn.close()
                    raw_conn.close()
                    rows.append((op, fmt, n, npy_times))
                else:
                    rows.append((op, fmt, n, case.run(srv, reps[n])))
            if raw_times:
                rows.append(("quantize", "octet-stream", n, raw_times))

        rps = small_requests({"hello": hello, "django": django_floor, "quantsite": srv}, rounds, window, tmp)

        lat, big_times = latency_probe(srv, json_f[2000], 2)
        srv.stop()
        hello.stop()
        django_floor.stop()

        # ---- memory: a fresh one-worker server, a small warm-up request, then 20 2000^2 JSON quantizes in a row
        rss_srv = Server(tmp, 1, "rss").start()
        servers.append(rss_srv)
        (worker,) = rss_srv.worker_pids()
        conn = rss_srv.conn()
        status, _, _ = request(conn, "POST", "/instances/default/quantize", SMALL_BODY, {"Content-Type": JSON_CT})
        assert status == 200
        rss_warm = proc_kb(worker, "VmRSS")
        rss_each = []
        for _ in range(rss_requests):
            status, _, data = request(conn, "POST", "/instances/bench/quantize", json_f[2000],
                                      {"Content-Type": JSON_CT})
            assert status == 200, data[:200]
            rss_each.append(proc_kb(worker, "VmRSS"))
        time.sleep(0.5)  # the worker's post_request has run
        rss_after = proc_kb(worker, "VmRSS")
        hwm_after = proc_kb(worker, "VmHWM")
        status, _, _ = request(conn, "GET", "/")
        assert status == 200
        time.sleep(0.5)
        rss_idle = proc_kb(worker, "VmRSS")
        conn.close()
        rss_srv.stop()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    wall = time.perf_counter() - t_begin
    other_cpu = (cpu_busy_seconds() - busy_begin) - (own_cpu_seconds() - own_begin)
    ncpu = os.cpu_count() or 1

    # ------------------------------------------------------------------ the table
    out: list[str] = []
    w = out.append
    w(f"quantsite HTTP benchmark: gunicorn sync x{args.workers} workers, {ncpu} CPUs, DJANGO_DEBUG=0, SQLite (WAL), "
      "loopback, http.client")
    w(f"array rows: median of {reps[100]}/{reps[1000]}/{reps[2000]} runs at 100^2/1000^2/2000^2 (quantize .npy and "
      f"octet-stream 2000^2: {pair_reps}, alternating), after one checked warm-up; MB/s = 4 bytes x elements / median")
    w("")
    w(f"{'operation':<20} {'body':<13} {'size':>9} {'median ms':>9} {'MB/s f32':>9} {'runs':>4}  {'vs its floor':<14}")
    w("-" * 84)
    med_floor = {n: statistics.median(t) for n, t in floor.items()}
    med_npy_floor = statistics.median(npy_floor_times)
    for op, fmt, n, times in rows:
        med = statistics.median(times)
        note = ""
        if op == "quantize" and fmt == "JSON" and n in floor:
            note = f"{med / med_floor[n]:.2f}x floor"
        elif op == "quantize" and fmt == ".npy" and n == 2000:
            note = f"{med / med_npy_floor:.2f}x floor"
        w(f"{op:<20} {fmt:<13} {f'{n}x{n}':>9} {fmt_ms(med)} {n * n * 4 / 1e6 / med:9.1f} {len(times):4d}  "
          f"{note}".rstrip())
    w("")
    w("floors, in this process, none of quantsite's code, runs alternating with the HTTP runs of the same row:")
    for n in (1000, 2000):
        w(f"  JSON quantize {n}x{n}: {fmt_ms(med_floor[n]).strip()} ms, median of {len(floor[n])} (orjson.loads -> "
          "np.asarray float32 -> np.clip(np.rint(x / s)) int8 -> orjson.dumps)")
    w(f"  .npy quantize 2000x2000: {fmt_ms(med_npy_floor).strip()} ms, median of {len(npy_floor_times)} (np.load -> "
      "the same numpy quantize -> np.save)")
    w("")
    out.extend(small_table(rps, rounds, window, args.workers))
    w("")
    w(f"latency probe: GET / while another client sends {len(big_times)} x 2000x2000 JSON quantize "
      f"({statistics.median(big_times) * 1000:.0f} ms median each): {len(lat)} probes, "
      f"median {statistics.median(lat) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms")
    w("")
    w(f"memory (fresh 1-worker server, VmRSS / VmHWM of its worker): {rss_warm / 1024:.0f} MB after a small warm-up "
      f"request; after {rss_requests} consecutive 2000x2000 JSON quantizes (body {len(json_f[2000]) / 1e6:.0f} MB) "
      f"RSS {rss_after / 1024:.0f} MB, peak {hwm_after / 1024:.0f} MB;")
    w(f"  RSS after each: {' '.join(f'{v / 1024:.0f}' for v in rss_each)} MB; after one more GET / "
      f"{rss_idle / 1024:.0f} MB")
    w("")
    meds = {(op, fmt, n): statistics.median(t) for op, fmt, n, t in rows}
    j1000 = meds[("quantize", "JSON", 1000)] / med_floor[1000]
    npy2000 = meds[("quantize", ".npy", 2000)] / med_npy_floor

    def verdict(ok: bool) -> str:
        return "MET " if ok else "MISS"

    w("targets:")
    w(f"  [{verdict(j1000 <= 1.3)}] JSON quantize 1000x1000 within 1.3x of its floor: {j1000:.2f}x")
    w(f"  [{verdict(npy2000 <= 2.0)}] .npy quantize 2000x2000 (full result) within 2x of its floor: {npy2000:.2f}x")
    w(f"  [{verdict(rss_after <= 300 * 1024 and hwm_after <= 350 * 1024)}] after {rss_requests} 2000x2000 JSON "
      f"quantizes worker RSS <= 300 MB and peak <= 350 MB: {rss_after / 1024:.0f} MB, {hwm_after / 1024:.0f} MB")
    w("")
    w(f"machine: load average {load_begin:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; processes outside "
      f"this benchmark used {max(other_cpu, 0.0):.0f} CPU-s of the {wall * ncpu:.0f} available during it "
      f"({max(other_cpu, 0.0) / (wall * ncpu):.0%})")
    w(f"total {wall:.0f} s (building the request bodies: {t_bodies:.1f} s)")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
