"""GET /metrics of the live gunicorn (3 workers, prometheus_client's multiprocess mode set up by gunicorn.conf.py
with no environment variable): quantize calls answered by every worker are counted exactly once each. The text is
read with prometheus_client's own parser."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from quantsite_client import QuantsiteClient

from tests.client.conftest import WORKERS, LiveServer

BATCH = 12  # concurrent calls per round: more than the workers, so that every worker gets some
MAX_ROUNDS = 25


def scrape(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Token {server.token}"} if server.token else {}
    response = httpx.get(server.url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def workers_that_answered(server: LiveServer, path: str) -> set[str]:
    """The worker pids of the access log lines for `path` (the log format starts with the pid)."""
    lines = server.gunicorn.access_log.read_text().splitlines()
    return {line.split()[0] for line in lines if f" {path} " in line}


def test_metrics_need_the_token(gunicorn_server: LiveServer) -> None:
    response = httpx.get(gunicorn_server.url + "/metrics", timeout=30)
    assert response.status_code == 401
    assert response.json()["code"] == "http.not_authenticated"


def test_quantize_calls_over_three_workers_are_counted_exactly(gunicorn_server: LiveServer) -> None:
    instance = "metrics_exact"
    x = np.random.default_rng(7).standard_normal((64, 64)).astype(np.float32)
    with gunicorn_server.client() as qs:
        qs.create_instance(instance, quantization_type="INT8", symmetric=True)
        # stored parameters (the instance switches to CALIBRATED) whose range clips the values beyond 1.27
        qs.import_parameters(instance, {"global_scale": 0.01, "global_zero_point": 0})
    codes = np.rint(x / np.float32(0.01))
    expected_clipped = int(np.count_nonzero((codes < -128) | (codes > 127)))
    path = f"/instances/{instance}/quantize"
    before = scrape(gunicorn_server)

    def one(_: int) -> None:
        with QuantsiteClient(gunicorn_server.url, token=gunicorn_server.token) as qs:  # a connection of its own
            qs.quantize(instance, x)

    calls = 0
    with ThreadPoolExecutor(BATCH) as pool:
        for _ in range(MAX_ROUNDS):
            list(pool.map(one, range(BATCH)))
            calls += BATCH
            if len(workers_that_answered(gunicorn_server, path)) == WORKERS:
                break
    time.sleep(0.2)  # the access log line is written after the answer
    assert len(workers_that_answered(gunicorn_server, path)) == WORKERS

    after = scrape(gunicorn_server)
    assert sample(after, "quantsite_operations_total", instance=instance, operation="quantize", type="INT8") == calls
    assert sample(after, "quantsite_values_quantized_total", instance=instance, type="INT8") == calls * x.size
    assert sample(after, "quantsite_values_clipped_total", instance=instance, type="INT8") == \
        calls * expected_clipped
    requests = {"route": "instance-quantize", "method": "POST"}
    assert sample(after, "quantsite_requests_total", **requests, status="200") - \
        sample(before, "quantsite_requests_total", **requests, status="200") == calls
    assert sample(after, "quantsite_request_duration_seconds_count", **requests) - \
        sample(before, "quantsite_request_duration_seconds_count", **requests) == calls
    npy = io.BytesIO()
    np.save(npy, x)
    assert sample(after, "quantsite_request_body_bytes_total", route="instance-quantize") - \
        sample(before, "quantsite_request_body_bytes_total", route="instance-quantize") == calls * len(npy.getvalue())
    with gunicorn_server.client() as qs:
        assert qs.stats(instance)["quantize_calls"] == calls  # the service's own counters agree
