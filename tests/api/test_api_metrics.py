"""GET /metrics in one process (the multiprocess counts are tested against a live gunicorn in tests/client): who
may read it, what the middleware and the services count, and the job families the jobs code feeds. Values are read
with prometheus_client's own parser of the text the route answers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from quantizers import metrics


def scrape(api) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:  # type: ignore[no-untyped-def]
    response = api.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def no_job_sources() -> Iterator[None]:
    saved = dict(metrics._job_sources)
    metrics._job_sources.clear()
    yield
    metrics._job_sources.clear()
    metrics._job_sources.update(saved)


def test_metrics_need_the_api_token_unless_public(api, settings) -> None:  # type: ignore[no-untyped-def]
    settings.QUANTIZER_REQUIRE_AUTH = True
    refused = api.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert refused.status_code == 401
    assert refused.json()["code"] == "http.not_authenticated"  # JSON, whatever the scraper accepts
    settings.QUANTIZER_METRICS_PUBLIC = True
    assert api.get("/metrics").status_code == 200


def test_requests_operations_and_values_are_counted(api) -> None:  # type: ignore[no-untyped-def]
    api.post("/instances/metrics_unit", {"symmetric": True})
    api.post("/instances/metrics_unit/parameters", {"parameters": {"global_scale": 0.5, "global_zero_point": 0}})
    before = scrape(api)
    data = [[1.0, 2.0, 100.0], [-100.0, 0.0, 3.0]]  # 100 / 0.5 = 200 saturates: two values clip
    assert api.post("/instances/metrics_unit/quantize", {"data": data}).status_code == 200
    assert api.post("/instances/metrics_unit/quantize_dequantize", {"data": data}).status_code == 200
    assert api.post("/instances/metrics_unit/quantize", {"data": [[float("1e39")]]}).status_code == 400
    assert api.get("/no/such/route").status_code == 404
    after = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("quantsite_operations_total", instance="metrics_unit", operation="quantize", type="INT8") == 1
    assert delta("quantsite_operations_total", instance="metrics_unit", operation="quantize_dequantize",
                 type="INT8") == 1
    assert delta("quantsite_values_quantized_total", instance="metrics_unit", type="INT8") == 12
    assert delta("quantsite_values_clipped_total", instance="metrics_unit", type="INT8") == 4
    assert delta("quantsite_requests_total", route="instance-quantize", method="POST", status="200") == 1
    assert delta("quantsite_requests_total", route="instance-quantize", method="POST", status="400") == 1
    assert delta("quantsite_requests_total", route=metrics.UNMATCHED, method="GET", status="404") == 1
    assert delta("quantsite_request_duration_seconds_count", route="instance-quantize", method="POST") == 2
    bodies = [len(json.dumps({"data": data})), len(json.dumps({"data": [[float("1e39")]]}))]
    assert delta("quantsite_request_body_bytes_total", route="instance-quantize") == sum(bodies)
    assert not any(name.endswith("_created") for name, _ in after)


def test_job_families(api, no_job_sources) -> None:  # type: ignore[no-untyped-def]
    before = scrape(api)
    assert not any(name in ("quantsite_jobs", "quantsite_job_queue_depth") for name, _ in before)
    metrics.job_finished("succeeded", 42.0)
    metrics.job_finished("failed", 0.5)
    metrics.job_finished("cancelled", None)  # cancelled before it ran: counted, no duration
    metrics.register_job_sources(counts_by_status=lambda: {"queued": 3, "running": 1}, queue_depth=lambda: 3)
    after = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("quantsite_jobs_finished_total", status="succeeded") == 1
    assert delta("quantsite_jobs_finished_total", status="cancelled") == 1
    assert delta("quantsite_job_duration_seconds_count", status="succeeded") == 1
    assert delta("quantsite_job_duration_seconds_sum", status="succeeded") == 42.0
    assert delta("quantsite_job_duration_seconds_bucket", status="succeeded", le="60.0") == 1
    assert delta("quantsite_job_duration_seconds_bucket", status="succeeded", le="30.0") == 0
    assert delta("quantsite_job_duration_seconds_count", status="cancelled") == 0
    assert value(after, "quantsite_jobs", status="queued") == 3
    assert value(after, "quantsite_jobs", status="running") == 1
    assert value(after, "quantsite_job_queue_depth") == 3
