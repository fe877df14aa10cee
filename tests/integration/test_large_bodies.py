"""Large bodies straight into one gunicorn worker (SQLite, no nginx): read whole from its socket, the answers exact,
a short body refused, and the worker's memory back near where it was once the requests are done.

The expected codes come from numpy: a symmetric per-tensor INT8 instance, scale max|x| / 127 in float32."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.integration import stack
from tests.integration.stack import TIMEOUT

pytestmark = pytest.mark.integration
HTTP = stack.loopback_session()
SYMMETRIC = {"symmetric": True}


def reference_codes(x: np.ndarray) -> np.ndarray:
    scale = np.float32(np.abs(x).max()) / np.float32(127)
    return np.clip(np.rint(x / scale), -128, 127).astype(np.int8)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_large_bodies_read_from_the_socket_and_freed_after(tmp_path: Path) -> None:
    database = stack.create_database("sqlite", tmp_path)
    env = stack.django_env(database.url, tmp_path, DJANGO_SECURE_SSL_REDIRECT="0")
    stack.manage(env, "migrate", "--noinput", "-v", "0")
    x = np.random.default_rng(2000).normal(size=(2000, 2000)).astype(np.float32)
    expected = reference_codes(x)
    body = orjson.dumps({"data": x}, option=orjson.OPT_SERIALIZE_NUMPY)  # 2000x2000: ~80 MB of JSON
    with stack.gunicorn(env, tmp_path, workers=1) as server:
        (worker,) = stack.child_pids(server.proc.pid)  # type: ignore[union-attr]
        instance = f"{server.url}/instances/large-{os.getpid()}"
        assert HTTP.post(instance, json=SYMMETRIC, timeout=TIMEOUT).status_code == 200
        small = HTTP.post(instance + "/quantize", json={"data": [[1.0, -2.0]]}, timeout=TIMEOUT)
        assert small.json()["data"] == [[64, -127]]
        warm = resident_mb(worker)

        for _ in range(4):
            answer = HTTP.post(instance + "/quantize", data=body, timeout=TIMEOUT,
                               headers={"Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text[:300]
            np.testing.assert_array_equal(np.asarray(answer.json()["data"], dtype=np.int8), expected)
        # Before the request's body, array and answer were freed with it, the last of them stayed: RSS rose by
        # ~230 MB here; now ~30 MB (the last answer, until the collection before the next request).
        grown = resident_mb(worker) - warm
        assert grown < 100, f"worker RSS {warm:.0f} MB -> +{grown:.0f} MB after four 2000x2000 JSON quantizes"

        npy = io.BytesIO()
        np.save(npy, x)
        answer = HTTP.post(instance + "/quantize", data=npy.getvalue(), timeout=TIMEOUT,
                           headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"})
        assert answer.status_code == 200, answer.text[:300]
        np.testing.assert_array_equal(np.load(io.BytesIO(answer.content)), expected)

        # A body shorter than its Content-Length (the client stops sending): a 400, never a 500 or a hung worker.
        length = 2 << 20
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"POST /instances/default/quantize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                         b"application/json\r\nContent-Length: %d\r\n\r\n" % length)
            sock.sendall(b'{"data": [[1.0' + b" " * (length // 2))
            sock.shutdown(socket.SHUT_WR)
            answer_bytes = sock.makefile("rb").read()
        assert answer_bytes.startswith(b"HTTP/1.1 400 "), answer_bytes[:300]
        assert b"ended after" in answer_bytes
        assert HTTP.get(server.url + "/", timeout=TIMEOUT).status_code == 200
    assert server.log_problems() == []
