"""The web worker's memory while a model checkpoint is uploaded (POST /instances/{id}/jobs), against a bare WSGI
app that streams the same body to a file, under the same gunicorn, in the same run.

Run from the repository root (needs Redis on 127.0.0.1:6379 for the queue the job goes to; nothing consumes it,
so the web worker does the upload alone, as it does in production):

    python bench/upload.py                 # a 1 GiB float32 safetensors checkpoint, 3 runs per body kind
    python bench/upload.py --mib 256 --runs 5
    python bench/upload.py --python rt/bin/python   # the server under a runtime-only install, as deployed
                                                    # (python -m venv rt && rt/bin/pip install .)

Each run starts a fresh gunicorn (one sync worker, SQLite in a temporary directory) and sends the file with
http.client in 1 MiB writes: as a raw application/octet-stream body (?filename=) and as a multipart/form-data
`file` field. The figure is the worker's peak resident set (VmHWM of /proc/<pid>/status) after the upload, and
the upload's rate. The floor is a WSGI app of a dozen lines that copies wsgi.input to a file in 1 MiB reads: it
holds no Django, so its peak is what gunicorn and the interpreter need for the same bytes. Target: the quantsite
worker's peak <= 120 MB, as deployed: the development install adds packages DRF imports when present (said so).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's `http` for a script run from bench/: drop that entry first.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from tests.integration import stack  # noqa: E402

MB = 1 << 20
CHUNK = MB
BARE_APP = '''
import os, tempfile
def application(environ, start_response):
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    with tempfile.NamedTemporaryFile(dir=os.environ["BENCH_DIR"]) as out:
        while remaining > 0:
            chunk = environ["wsgi.input"].read(min(1 << 20, remaining))
            if not chunk:
                break
            out.write(chunk)
            remaining -= len(chunk)
    start_response("202 Accepted", [("Content-Type", "application/json")])
    return [b"{}"]
'''


def write_checkpoint(path: Path, mib: int) -> int:
    """A safetensors file of float32 tensors of 4096x1024 (16 MiB each), written one tensor at a time."""
    import numpy as np

    count = max(1, mib // 16)
    shape = (4096, 1024)
    nbytes = shape[0] * shape[1] * 4
    header = {f"layer{n}.weight": {"dtype": "F32", "shape": list(shape), "data_offsets": [n * nbytes, (n + 1) * nbytes]}
              for n in range(count)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for _ in range(count):
            fh.write(rng.standard_normal(shape, dtype=np.float32).tobytes())
    return path.stat().st_size


def multipart_parts(filename: str, size: int) -> tuple[bytes, bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


def send(port: int, path: str, src: Path, kind: str) -> tuple[int, float]:
    """POST the file (raw or multipart) in 1 MiB writes; the status and the seconds it took."""
    size = src.stat().st_size
    head, tail, content_type = (b"", b"", "application/octet-stream") if kind == "raw" else multipart_parts(
        src.name, size)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", content_type)
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.endheaders()
    conn.send(head)
    with open(src, "rb") as fh:
        while chunk := fh.read(CHUNK):
            conn.send(chunk)
    conn.send(tail)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, time.perf_counter() - started


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def measure(app: str, env: dict[str, str], src: Path, kind: str, path: str, logdir: Path, python: str
            ) -> tuple[int, float, int]:
    """A fresh one-worker gunicorn serving `app`; one warm-up request, then the upload: (peak RSS, seconds, peak
    RSS before the upload)."""
    port = stack.free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1", "GUNICORN_TIMEOUT": "600",
           "GUNICORN_ERROR_LOG": str(logdir / "gunicorn.log"), "GUNICORN_ACCESS_LOG": "/dev/null"}
    with open(logdir / "app.log", "ab") as log:
        proc = subprocess.Popen([python, "-m", "gunicorn", app, "--config", "gunicorn.conf.py"], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        stack.wait_http(f"http://127.0.0.1:{port}/", timeout=60, expect=200 if app == "quantsite.wsgi" else 202,
                        proc=proc)
        before = peak_rss(worker_pid(proc.pid))
        status, seconds = send(port, path, src, kind)
        if status != 202:
            log = (logdir / "app.log").read_text(errors="replace")[-3000:]  # (logdir is removed on the way out)
            raise RuntimeError(f"{app}: the upload answered {status}; the server's log ends:\n{log}")
        return peak_rss(worker_pid(proc.pid)), seconds, before
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def development_extras(python: str) -> list[str]:
    """Which of the development tools' packages that DRF imports when present (`requests` from its test client,
    which drf-spectacular imports; `pygments` for its browsable API) this interpreter can import."""
    probe = "import importlib.util as u; print(' '.join(m for m in ('requests', 'pygments') if u.find_spec(m)))"
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False).stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=1024, help="checkpoint size (default 1 GiB)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter that runs gunicorn (default: this one), e.g. that of an install of the "
                         "runtime alone (`pip install .`), which lacks the development tools' packages")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="quantsite-bench-upload-"))
    queue = f"quantsite-bench-{uuid.uuid4().hex[:8]}"
    try:
        src = tmp / "model.safetensors"
        size = write_checkpoint(src, args.mib)
        env = stack.django_env(f"sqlite:///{tmp / 'db.sqlite3'}", tmp, DJANGO_SECURE_SSL_REDIRECT="0",
                               CELERY_BROKER_URL="redis://127.0.0.1:6379/3",
                               CELERY_TASK_DEFAULT_QUEUE=queue, DJANGO_LOG_LEVEL="WARNING", BENCH_DIR=str(tmp))
        stack.manage(env, "migrate", "--noinput", "-v", "0")
        (tmp / "bare.py").write_text(BARE_APP)
        bare_env = {**env, "PYTHONPATH": str(tmp)}
        results: dict[tuple[str, str], list[tuple[int, float, int]]] = {}
        for _ in range(args.runs):
            for kind in ("raw", "multipart"):
                path = "/instances/default/jobs" + ("?filename=model.safetensors" if kind == "raw" else "")
                results.setdefault(("quantsite", kind), []).append(
                    measure("quantsite.wsgi", env, src, kind, path, tmp, args.python))
                results.setdefault(("bare WSGI app", kind), []).append(
                    measure("bare:application", bare_env, src, kind, "/", tmp, args.python))
                shutil.rmtree(tmp / "jobs", ignore_errors=True)
        print(f"checkpoint upload: {size / MB:.0f} MiB through gunicorn (1 sync worker), 1 MiB writes; "
              f"{os.cpu_count()} CPUs; median of {args.runs} runs (peak RSS: the largest)")
        print(f"  {'server':<16} {'body':<10} {'worker peak RSS':>16} {'before the upload':>18} {'upload':>12}")
        for (server, kind), runs in results.items():
            rss, before = max(r[0] for r in runs), max(r[2] for r in runs)
            rate = size / statistics.median(r[1] for r in runs) / 1e9
            note = "  target <= 120 MB" if server == "quantsite" else "  floor"
            print(f"  {server:<16} {kind:<10} {rss / MB:>13.0f} MB {before / MB:>15.0f} MB {rate:>8.2f} GB/s{note}")
        extras = development_extras(args.python)
        if extras:
            print(f"  (this interpreter has {' and '.join(extras)}, which DRF imports whenever they are installed: "
                  "about 5 MB a worker that a deployment,\n   the runtime installed alone, does not hold; the "
                  "target is a deployment's: --python of such an install measures it)")
    finally:
        subprocess.run(["redis-cli", "-n", "3", "del", queue], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
