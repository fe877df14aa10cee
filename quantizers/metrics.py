"""Prometheus metrics: the families, the request middleware that feeds the HTTP ones, the calls the services and
the jobs make, and the exposition of GET /metrics.

Several gunicorn workers each count their own requests, so the values live in prometheus_client's multiprocess
mode whenever PROMETHEUS_MULTIPROC_DIR is set (gunicorn.conf.py sets it to a directory of its own when the
environment does not): every worker writes its counters to memory-mapped files there, and the worker that
answers /metrics sums every file, those of workers that have since exited included, so a count is exact whichever
worker served each request. Without it (manage.py runserver, the tests' in-process client) the process's own
registry is used. The job gauges (jobs by status, queue depth) are read from their source when /metrics is
scraped, not counted by any process.

Per request the middleware costs two dictionary look-ups and three increments of memory-mapped values (measured in
bench/metrics.py); the route label is the URL pattern's name, so its values are bounded by the URL patterns.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine import OpResult

# `_created` samples are per-process timestamps: meaningless once summed over workers (multiprocess mode has none).
disable_created_metrics()

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # a request no named URL pattern took (the JSON 404 of an unknown path, static files)

# Seconds: small requests take about a millisecond, large arrays seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
# Seconds: a small checkpoint in a second, a large one in tens of minutes.
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)

REQUESTS = Counter("quantsite_requests", "HTTP requests answered, by route (URL pattern name), method and status",
                   ["route", "method", "status"])
REQUEST_SECONDS = Histogram("quantsite_request_duration_seconds", "Time from the request reaching Django to its "
                            "answer, by route and method", ["route", "method"], buckets=LATENCY_BUCKETS)
# A counter, not a histogram: a third of the cost per request (one value written, not a sum and a bucket); its
# rate is the bytes per second each route receives, and with quantsite_requests_total the mean body size.
REQUEST_BODY_BYTES = Counter("quantsite_request_body_bytes", "Request body bytes received (the declared "
                             "Content-Length), by route", ["route"])
OPERATIONS = Counter("quantsite_operations", "Array operations completed (one per call), by instance, operation "
                     "and the quantization type applied", ["instance", "operation", "type"])
VALUES_QUANTIZED = Counter("quantsite_values_quantized", "Values quantized, by instance and quantization type",
                           ["instance", "type"])
VALUES_CLIPPED = Counter("quantsite_values_clipped", "Values whose code saturated (and allowed non-finite values), "
                         "by instance and quantization type", ["instance", "type"])
JOBS_FINISHED = Counter("quantsite_jobs_finished", "Model jobs finished, by final status", ["status"])
JOB_SECONDS = Histogram("quantsite_job_duration_seconds", "Model job run time (started to finished), by final "
                        "status", ["status"], buckets=JOB_BUCKETS)


# ---------------------------------------------------------------------------- HTTP requests
class MetricsMiddleware:
    """Counts every answer by route, method and status, with its latency and request body size. Outermost in
    MIDDLEWARE, so that the answers of the other middleware (a 413 from the body limit) are counted too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # The labelled children, kept here: .labels() takes a lock and builds a key on every call.
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._seconds: dict[tuple[str, str], Any] = {}
        self._bytes: dict[str, Any] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = request.resolver_match
        route = match.view_name if match is not None and match.url_name else UNMATCHED
        method = request.method or ""
        key = (route, method, response.status_code)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = REQUESTS.labels(route, method, str(response.status_code))
        counter.inc()
        seconds = self._seconds.get(key[:2])
        if seconds is None:
            seconds = self._seconds[key[:2]] = REQUEST_SECONDS.labels(route, method)
        seconds.observe(elapsed)
        length = request.META.get("CONTENT_LENGTH")
        if length:
            size = self._bytes.get(route)
            if size is None:
                size = self._bytes[route] = REQUEST_BODY_BYTES.labels(route)
            with contextlib.suppress(ValueError):  # not a number: BodySizeLimitMiddleware has answered 400
                size.inc(int(length))
        return response


# ---------------------------------------------------------------------------- operations (called by the services)
_operation_children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}


def operation_done(instance_id: str, operation: str, result: OpResult) -> None:
    """One completed quantize, dequantize or quantize_dequantize call, with the values it quantized and clipped."""
    type_name = result.quantization_type.name
    key = (instance_id, operation, type_name)
    children = _operation_children.get(key)
    if children is None:
        children = _operation_children[key] = (OPERATIONS.labels(*key), VALUES_QUANTIZED.labels(instance_id, type_name),
                                                VALUES_CLIPPED.labels(instance_id, type_name))
    calls, quantized, clipped = children
    calls.inc()
    delta = result.delta
    if delta.total_values:
        quantized.inc(delta.total_values)
    if delta.clipped_values:
        clipped.inc(delta.clipped_values)


# ---------------------------------------------------------------------------- model jobs (called by the jobs code)
def job_finished(status: str, seconds: float | None) -> None:
    """A job reached a final status (succeeded, failed, cancelled) after running `seconds` (None: it never ran).
    Called in the process that ran it: a Celery worker writes to the same directory when PROMETHEUS_MULTIPROC_DIR
    names the web workers' one (docs/operations.md), else its counts stay in that worker."""
    JOBS_FINISHED.labels(status).inc()
    if seconds is not None:
        JOB_SECONDS.labels(status).observe(seconds)


JobCounts = Callable[[], Mapping[str, int]]
QueueDepth = Callable[[], int]
_job_sources: dict[str, Callable[[], Any]] = {}


def register_job_sources(*, counts_by_status: JobCounts, queue_depth: QueueDepth) -> None:
    """The jobs code names where the current job counts are read (the jobs table, the broker's queue): read once
    per scrape, so the figures agree whichever process serves /metrics and whichever worker ran the jobs."""
    _job_sources["counts"] = counts_by_status
    _job_sources["queue"] = queue_depth


class JobCollector(Collector):
    """quantsite_jobs{status} and quantsite_job_queue_depth, from the registered sources, at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts, queue = _job_sources.get("counts"), _job_sources.get("queue")
        if counts is not None:
            family = GaugeMetricFamily("quantsite_jobs", "Model jobs by current status", labels=["status"])
            for status, count in sorted(counts().items()):
                family.add_metric([status], count)
            yield family
        if queue is not None:
            yield GaugeMetricFamily("quantsite_job_queue_depth", "Model jobs waiting for a worker", value=queue())


# ---------------------------------------------------------------------------- exposition
def exposition() -> tuple[bytes, str]:
    """The text format of every family, summed over the workers' files in multiprocess mode, and its
    Content-Type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    jobs = CollectorRegistry()
    jobs.register(JobCollector())
    return body + generate_latest(jobs), CONTENT_TYPE_LATEST
