"""Job metrics from a real Celery worker: gunicorn (2 workers) and a `celery worker` share one
PROMETHEUS_MULTIPROC_DIR, as docs/operations.md says to set it, with the machine's Redis (db 5, a queue of this
run's own). A job submitted with no worker running is the queue depth; once a worker has run it, gunicorn's
/metrics counts it as finished, with its duration, although no web worker ran it. Driven through the Python client.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import safetensors.numpy as stnp
from quantsite_client import QuantsiteClient

from tests.client.test_metrics import sample, scrape
from tests.integration import stack
from tests.integration.test_jobs_celery import Worker, ensure_redis

pytestmark = pytest.mark.integration

REDIS_DB = 5


class Server:
    """What tests.client.test_metrics.scrape needs: the url, and no token (authentication is off here)."""

    def __init__(self, url: str) -> None:
        self.url, self.token = url, ""


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Server, dict[str, str], stack.Gunicorn]]:
    ensure_redis()
    workdir = stack.make_workdir("quantsite-it-metrics-")
    queue = f"quantsite-it-metrics-{uuid.uuid4().hex[:12]}"
    env = stack.django_env(f"sqlite:///{workdir / 'db.sqlite3'}", workdir,
                           DJANGO_SECURE_SSL_REDIRECT="0", CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
                           CELERY_TASK_DEFAULT_QUEUE=queue,
                           PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"))
    try:
        stack.manage(env, "migrate", "--noinput", "-v", "0")
        with stack.gunicorn(env, workdir, workers=2) as server:
            yield Server(server.url), env, server
    finally:
        subprocess.run(["redis-cli", "-n", str(REDIS_DB), "del", queue, "unacked", "unacked_index"],
                       capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_celery_workers_job_is_counted_by_gunicorns_metrics(site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, env, gunicorn = site
    model = tmp_path / "model.safetensors"
    stnp.save_file({"w": np.random.default_rng(5).standard_normal((64, 32)).astype(np.float32)}, str(model))
    with QuantsiteClient(server.url) as qs:
        qs.create_instance("celery_metrics", symmetric=True)
        before = scrape(server)  # type: ignore[arg-type]
        job = qs.submit_model("celery_metrics", model)
        assert job.status == "queued"
        queued = scrape(server)  # type: ignore[arg-type]
        assert sample(queued, "quantsite_job_queue_depth") == 1
        assert sample(queued, "quantsite_jobs", status="queued") == 1

        worker = Worker(env, gunicorn.logdir, "metrics")
        try:
            job.wait(timeout=120, poll=0.2)
        finally:
            worker.stop()
    after = scrape(server)  # type: ignore[arg-type]
    assert job.status == "succeeded"
    for name in ("quantsite_jobs_finished_total", "quantsite_job_duration_seconds_count"):
        assert sample(after, name, status="succeeded") - sample(before, name, status="succeeded") == 1
    assert sample(after, "quantsite_job_queue_depth") == 0
    assert sample(after, "quantsite_jobs", status="succeeded") == 1
