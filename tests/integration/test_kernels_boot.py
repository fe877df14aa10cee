"""The first request after a boot pays no kernel compilation: a real gunicorn (gunicorn.conf.py, 2 workers, SQLite)
started on an empty kernel cache compiles in the master before it forks, the worker inherits the kernels (its
post_fork warm-up finds nothing new), and the first quantize of each kind is about as fast as the ones after it.

Why a real gunicorn: the hooks that do the warm-up are gunicorn's (on_starting, post_fork); the in-process check
that warm_kernels covers every kernel a request runs is tests/engine/test_kernels.py."""

from __future__ import annotations

import re
import statistics
import time

import pytest
import requests

from tests.integration import stack

pytestmark = pytest.mark.integration

BODIES = {
    "INT8 JSON": ({"quantization_type": "INT8"}, {"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]]}),
    "INT4 groups": ({"quantization_type": "INT4", "group_size": 4}, {"data": [[1.0, -2.0, 3.0, 0.5, 7.0, 8.0]]}),
    "FP8": ({"quantization_type": "FP8_E4M3"}, {"data": [[1.0, 300.0, -0.01]]}),
    "BF16": ({"quantization_type": "BFLOAT16"}, {"data": [[1.0, 3.14159]]}),
}


def test_first_request_after_boot_compiles_nothing() -> None:
    workdir = stack.make_workdir("quantsite-it-kernels-")
    cache = workdir / "kernel-cache"  # empty: the boot must compile
    env = stack.django_env(f"sqlite:///{workdir / 'db.sqlite3'}", workdir, QUANTIZER_KERNEL_CACHE_DIR=str(cache),
                           DJANGO_SECURE_SSL_REDIRECT="0")  # plain HTTP to gunicorn, no nginx in front
    stack.manage(env, "migrate", "--noinput", "-v", "0")
    server = stack.Gunicorn(env=env, port=stack.free_port(), workers=1, logdir=workdir)
    try:
        server.start(timeout=600)  # an empty cache: the master compiles every kernel before it serves
        log = server.error_logs[-1].read_text()
        master = re.search(r"master: (\d+) kernel signatures ready \((\d+) new\) in (\d+) ms", log)
        workers = re.findall(r"worker \d+: (\d+) kernel signatures ready \((\d+) new\) in (\d+) ms", log)
        assert master is not None, log[-2000:]
        assert int(master.group(2)) > 0  # the master compiled them ...
        assert len(workers) == 1
        assert all(new == "0" for _, new, _ in workers)  # ... and each worker inherited them all
        assert any(cache.rglob("*.nbi"))  # written to the configured cache folder
        # Django's own first request (imports, the database connection) is not the kernels': taken out first.
        assert requests.get(f"{server.url}/", timeout=30).status_code == 200
        timings: dict[str, tuple[float, float]] = {}
        for name, (config, body) in BODIES.items():
            instance = name.replace(" ", "-").lower()
            created = requests.post(f"{server.url}/instances/{instance}", json=config, timeout=30)
            assert created.status_code in (200, 201), created.text
            url = f"{server.url}/instances/{instance}/quantize"
            times = []
            for _ in range(6):
                started = time.perf_counter()
                response = requests.post(url, json=body, timeout=30)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            timings[name] = (times[0], statistics.median(times[1:]))
        print("\nfirst request after boot vs the median of the next five (ms); master compile "
              f"{master.group(3)} ms:")
        for name, (first, rest) in timings.items():
            print(f"  {name:12} {first * 1000:8.1f} {rest * 1000:8.1f}")
        # Compiling one kernel signature takes about a second here (the master's figure above, per signature);
        # a first request that paid for one would stand far above the rest. Bounded generously for a busy machine.
        assert all(first < max(10 * rest, 0.25) for first, rest in timings.values()), timings
    finally:
        server.stop()
