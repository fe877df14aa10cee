"""Model jobs on real Celery workers with the machine's real Redis (127.0.0.1:6379, db 3, a queue of this run's
own), gunicorn in front, and a SQLite database file that the web server and the workers share.

- a job completes on a worker and its codes match the single-array quantize route's (the engine's);
- SIGKILL of the whole worker mid-job, then a new worker: Redis hands the unacknowledged message out again, the
  job succeeds, its artifact is byte-identical to a clean run and each layer is in the report once;
- cancel stops a running job within 2 s;
- two jobs run at once on two workers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy as stnp

from tests.integration import stack

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/3"
CELERY = str(Path(sys.executable).with_name("celery"))
RNG = np.random.default_rng(10)


def ensure_redis() -> None:
    """The machine's Redis; started when it is not running (as .ci/run does)."""
    if subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"], capture_output=True,
                      check=False).returncode == 0:
        return
    subprocess.run(["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--daemonize", "yes"], check=True)
    for _ in range(50):
        if subprocess.run(["redis-cli", "ping"], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


class Worker:
    def __init__(self, env: dict[str, str], logdir: Path, name: str) -> None:
        self.log = logdir / f"celery-{name}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [CELERY, "-A", "quantsite", "worker", "--loglevel=INFO", "--concurrency=1", "--pool=prefork",
                 f"--hostname={name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=stack.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while "ready." not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker {name} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL to the worker and its pool process at once: nothing acknowledges or gives back the message."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Site:
    """The deployment (nginx with deploy/nginx.conf, gunicorn) and its Celery workers."""

    def __init__(self, deployment: stack.Deployment) -> None:
        self.url, self.env, self.workdir = deployment.url, deployment.env, deployment.workdir
        self.cert = deployment.cert
        self.session = stack.loopback_session()
        self.session.verify = str(deployment.cert)
        self.workers: list[Worker] = []

    def worker(self, name: str) -> Worker:
        worker = Worker(self.env, self.workdir, name)
        self.workers.append(worker)
        return worker

    def create_instance(self, instance_id: str, **config: Any) -> None:
        body = {"quantization_type": "INT8", "symmetric": True, "per_channel": True, **config}
        assert self.session.post(f"{self.url}/instances/{instance_id}", json=body, timeout=30).status_code == 200

    def submit(self, instance_id: str, content: bytes) -> str:
        response = self.session.post(f"{self.url}/instances/{instance_id}/jobs?filename=model.safetensors",
                                     data=content, headers={"Content-Type": "application/octet-stream"}, timeout=120)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
        return str(response.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.session.get(f"{self.url}/jobs/{job_id}", timeout=30).json())

    def wait(self, job_id: str, until: Any, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if until(job):
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id}: {self.job(job_id)}")

    def artifact(self, job_id: str) -> bytes:
        response = self.session.get(f"{self.url}/jobs/{job_id}/artifact", timeout=120)
        assert response.status_code == 200, response.text
        return response.content

    def report(self, job_id: str) -> dict[str, Any]:
        return dict(self.session.get(f"{self.url}/jobs/{job_id}/report", timeout=30).json())


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    ensure_redis()
    workdir = stack.make_workdir("quantsite-it-jobs-")
    queue = f"quantsite-it-{uuid.uuid4().hex[:12]}"
    overrides = {
        "CELERY_BROKER_URL": REDIS_URL, "CELERY_TASK_DEFAULT_QUEUE": queue,
        # A killed worker's message comes back after 3 s; a run whose progress is 3 s old lost its worker.
        "QUANTIZER_JOB_VISIBILITY_TIMEOUT_S": "3", "QUANTIZER_JOB_HEARTBEAT_S": "3",
    }
    database = stack.create_database("sqlite", workdir)
    site = None
    try:
        with stack.deployed("sqlite", database, workdir, workers=2, static=False, env_overrides=overrides) as dep:
            site = Site(dep)
            yield site
    finally:
        for worker in site.workers if site else []:
            worker.stop()
        subprocess.run(["redis-cli", "-n", "3", "del", queue, "unacked", "unacked_index"], capture_output=True,
                       check=False)
        database.drop()
    shutil.rmtree(workdir, ignore_errors=True)


def checkpoint(tensors: int, rows: int = 1024, cols: int = 1024) -> bytes:
    return stnp.save({f"layer{n}.weight": RNG.standard_normal((rows, cols)).astype(np.float32)
                      for n in range(tensors)})


# Jobs that last a few seconds whatever the machine: the MSE clip search costs about 0.25 s per 64x256 tensor (a
# thousand times MINMAX's), so the tests can act while a job is between its first and last tensor.
SLOW = {"calibration_method": "MSE"}


def slow_checkpoint(tensors: int) -> bytes:
    return checkpoint(tensors, 64, 256)


def test_a_job_completes_on_a_worker_with_the_engines_codes(site):
    """A 132 MiB checkpoint: above QUANTIZER_MAX_BODY_MB (128), through nginx's jobs location."""
    site.create_instance("it_plain")
    worker = site.worker("plain")
    content = checkpoint(33)
    job = site.wait(site.submit("it_plain", content), finished)
    assert job["status"] == "succeeded", job
    out = stnp.load(site.artifact(job["job_id"]))
    arrays = stnp.load(content)
    assert set(out) >= set(arrays)
    for name in ("layer0.weight", "layer32.weight"):
        arr = arrays[name]
        response = site.session.post(f"{site.url}/instances/it_plain/quantize?channel_dim=0", data=arr.tobytes(),
                                     headers={"Content-Type": "application/octet-stream",
                                              "Accept": "application/octet-stream",
                                              "X-Shape": ",".join(map(str, arr.shape))}, timeout=30)
        codes = np.frombuffer(response.content, dtype=np.int8).reshape(arr.shape)
        np.testing.assert_array_equal(out[name], codes)
    worker.stop()


def test_sigkill_mid_job_then_a_new_worker_gives_the_clean_runs_bytes(site):
    site.create_instance("it_kill", **SLOW)
    content = slow_checkpoint(24)
    worker = site.worker("doomed")
    job_id = site.submit("it_kill", content)
    site.wait(job_id, lambda j: j["status"] == "running" and j["progress"]["tensors_done"] >= 2)
    worker.kill()
    assert site.job(job_id)["status"] == "running"  # nobody finished it
    site.worker("rescuer")
    job = site.wait(job_id, finished)
    assert job["status"] == "succeeded", job
    killed_run = site.artifact(job_id)
    names = [row["name"] for row in site.report(job_id)["layers"]]
    assert sorted(names) == sorted(set(names))
    assert len(names) == 24  # each layer once

    clean = site.wait(site.submit("it_kill", content), finished)
    assert clean["status"] == "succeeded"
    assert site.artifact(clean["job_id"]) == killed_run


def test_cancel_stops_a_running_job_within_two_seconds(site):
    site.create_instance("it_cancel", **SLOW)
    if not any(w.proc.poll() is None for w in site.workers):
        site.worker("cancel")
    job_id = site.submit("it_cancel", slow_checkpoint(40))
    site.wait(job_id, lambda j: j["status"] == "running" and j["progress"]["tensors_done"] >= 1)
    started = time.monotonic()
    response = site.session.post(f"{site.url}/jobs/{job_id}/cancel", timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    done_at_cancel = site.job(job_id)["progress"]["tensors_done"]
    time.sleep(2.0)
    stopped = site.job(job_id)["progress"]["tensors_done"]
    time.sleep(1.0)
    job = site.job(job_id)
    assert job["status"] == "cancelled"
    assert job["progress"]["tensors_done"] == stopped  # nothing moved after the first 2 s
    assert stopped < 40, (done_at_cancel, stopped, time.monotonic() - started)
    assert site.session.get(f"{site.url}/jobs/{job_id}/artifact", timeout=30).status_code == 409
    outputs = list((site.workdir / "jobs" / job_id).glob("out/*"))
    assert outputs == []


def test_two_jobs_run_at_once_on_two_workers(site):
    site.create_instance("it_two", **SLOW)
    for worker in site.workers:
        worker.stop()
    site.worker("left")
    site.worker("right")
    first, second = site.submit("it_two", slow_checkpoint(16)), site.submit("it_two", slow_checkpoint(16))
    site.wait(first, lambda j: j["status"] == "running" and site.job(second)["status"] == "running", timeout=60)
    assert site.wait(first, finished)["status"] == "succeeded"
    assert site.wait(second, finished)["status"] == "succeeded"
    logs = {w.log.name: w.log.read_text() for w in site.workers[-2:]}
    assert all("quantizers.run_job" in text and "succeeded" in text for text in logs.values()), logs


def test_nginx_refuses_a_checkpoint_above_max_model_mb_as_json(site):
    """deploy/nginx.conf's jobs location: 413 JSON from the Content-Length alone (5 GiB > 4096 MB), no body sent."""
    context = ssl.create_default_context(cafile=str(site.cert))
    host, port = site.url.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    conn.putrequest("POST", "/instances/default/jobs?filename=model.safetensors")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(5 * 1024**3))
    conn.endheaders()
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 413
    assert body["code"] == "request.too_large"
    assert body["field"] == "QUANTIZER_MAX_MODEL_MB"
