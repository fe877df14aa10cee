"""gunicorn settings, read from the environment (gunicorn loads this file from the working directory).

Sync workers: measured here, 2 workers on 2 cores gave 1.6-1.9x one worker, more added nothing, and gthread lost
more than half on these CPU-bound requests. Size GUNICORN_WORKERS to the cores (plus one or two so that a cheap
request is not kept waiting behind a large one).
"""

import gc
import os
import shutil
import tempfile
import time

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# No access log by default: nginx, in front, keeps one (deploy/nginx.conf, with the request id), and formatting and
# writing gunicorn's line took about a tenth of a worker's time on GET / (profiled). GUNICORN_ACCESS_LOG=- writes it
# to stdout, a path to a file.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-") or "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Recycling workers is off by default (nothing leaks); GUNICORN_MAX_REQUESTS turns it on, with jitter.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", str(max_requests // 10)))
# nginx, in front, answers a request line above its 8 KB buffers with a JSON 414 before gunicorn sees it;
# gunicorn's own check (an HTML 414) guards a gunicorn reached directly. 0 turns it off (the schemathesis run,
# which talks to gunicorn directly and should meet the application's JSON answers).
limit_request_line = int(os.environ.get("GUNICORN_LIMIT_REQUEST_LINE", "8190"))


# Prometheus metrics (quantizers/metrics.py) from every worker: prometheus_client's multiprocess mode, whose
# workers write their values to files in PROMETHEUS_MULTIPROC_DIR, chosen before any worker imports it. Unset, a
# fresh private directory is made here, in the master, so that each start counts from zero, and removed when the
# master exits; a directory given by the environment (one shared with a Celery worker on this machine) is used as
# it is, created if missing, and never cleaned.
# (The mark survives a reload, SIGHUP, which reads this file again with the variable now set.)
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="quantsite-metrics-")
    os.environ["QUANTSITE_METRICS_DIR_OWNED"] = "1"
else:
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def child_exit(server, worker):
    # A dead worker's counters stay (summed into every scrape); only its live gauges, if any, must go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.get("QUANTSITE_METRICS_DIR_OWNED"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


# Memory after large requests. Django and DRF leave every request in reference cycles (request <-> view via
# parser_context, response <-> renderer_context, request <-> messages storage ...), so what a request still holds
# when it ends -- its parsed array and its rendered answer, ~30 MB for a 2000x2000 JSON quantize (the body itself
# is freed once parsed) -- is freed only by a full (generation 2) collection, which CPython runs rarely: measured
# on one worker without the collection below, RSS climbed by ~30 MB a request until one happened. So after a
# request that carried or returned at least GUNICORN_GC_AFTER_BYTES (default 1 MiB), a full collection runs before
# the worker's next request, once nothing references the large one any more (in post_request gunicorn still holds
# its response, and so the whole cycle); small requests never trigger it; 0 turns it off. Measured: twenty
# 2000x2000 JSON quantizes in a row, worker RSS 179 MB after each (148 MB before them), peak 246 MB. A full
# collection walks every tracked object, ~90 ms for the ~90,000 a loaded worker holds, so those that exist once
# the application is loaded are frozen (gc.freeze in post_worker_init: never walked, never collected); each
# collection then took 31-38 ms (load average 4 on 2 cores), against ~2 s for the request.
gc_after_bytes = int(os.environ.get("GUNICORN_GC_AFTER_BYTES", str(1 << 20)))
_gc_pending = False


def post_request(worker, req, environ, resp):
    global _gc_pending
    try:
        received = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        received = 0
    if gc_after_bytes > 0 and max(received, getattr(resp, "sent", 0) or 0) >= gc_after_bytes:
        _gc_pending = True


def post_worker_init(worker):
    # Django imports the URLconf (the API, the admin, drf-spectacular's views: ~0.3 s) and builds its reverse
    # tables on a worker's first request; done here, no client waits for it, and what it creates is frozen too.
    from django.apps import apps

    if apps.ready:  # the Django application (the benchmarks also serve bare WSGI functions with this file)
        from django.urls import get_resolver

        get_resolver().reverse_dict  # noqa: B018 - populates the resolver
    gc.freeze()


# The engine's numba kernels are loaded from their on-disk cache (QUANTIZER_KERNEL_CACHE_DIR) once in the master
# before it forks, so every worker inherits them ready; what the cache lacks a child of the master compiles first
# (engine.fill_kernel_cache), so that LLVM's working memory stays out of the master and its workers. post_fork
# checks it (a no-op when inherited) so that no request ever pays for a compilation. The Celery worker does the
# same with the job's kernels (quantizers/tasks.py).
def _warm(log, who):
    from engine import warm_kernels
    from engine.jit import compiled_signatures

    started, before = time.perf_counter(), compiled_signatures()
    ready = warm_kernels()
    log.info("%s: %d kernel signatures ready (%d new) in %.0f ms", who, ready, compiled_signatures() - before,
             (time.perf_counter() - started) * 1000)


def on_starting(server):
    from engine import fill_kernel_cache

    fill_kernel_cache()  # a child compiles what the cache lacks, so that the master (and its workers) only load
    _warm(server.log, "master")


def post_fork(server, worker):
    _warm(worker.log, f"worker {worker.pid}")


def pre_request(worker, req):
    global _gc_pending
    worker.log.debug("%s %s", req.method, req.path)  # gunicorn's default pre_request
    if _gc_pending:
        _gc_pending = False
        started = time.perf_counter()
        freed = gc.collect()
        worker.log.debug("full collection after a large request: %d objects freed in %.1f ms", freed,
                         (time.perf_counter() - started) * 1000)
