"""Model jobs: a checkpoint (one or several shard files) quantized with an instance's configuration, in the
background on a Celery worker, or inline when no broker is configured.

The job's state is the `Job` row; files go through the "jobs" storage (STORAGES): `<job id>/in/<n>-<name>` for
the uploads, `<job id>/out/<n>-<name>` for the artifacts. A run is idempotent: a re-run (a worker killed mid-job
hands the message back) rewrites the outputs and the report from the start. The report rows and the layer
parameters are written in the transaction that marks the job succeeded, so a failed or cancelled job leaves none,
and its outputs are deleted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, F, QuerySet
from django.utils import timezone

from engine import (
    REPORT_FIELDS,
    EngineError,
    JobCancelled,
    LayerReport,
    QuantizationConfig,
    checkpoint_format,
    inspect_checkpoint,
    quantize_checkpoint,
    summarize,
)

from . import metrics
from .exceptions import BadRequest, ServiceError
from .models import Job, JobLayer, QuantizerInstance
from .selectors import instance_get
from .stored import store_layer_parameters

logger = logging.getLogger(__name__)

# The route that takes checkpoints: exempt from QUANTIZER_MAX_BODY_MB (BodySizeLimitMiddleware applies
# QUANTIZER_MAX_MODEL_MB to it instead).
MODEL_UPLOAD_PATH = re.compile(r"^/instances/[^/]+/jobs/?$")
ACTIVE = (Job.Status.QUEUED, Job.Status.RUNNING)
FINISHED = (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED)
# Progress is written, and cancellation read, at most this often (and after the last tensor).
POLL_S = 0.2
COPY_CHUNK = 1024 * 1024

MSG_JOB_NOT_FOUND = "Job {job_id} not found"
MSG_NOT_ACTIVE = "Job {job_id} is {status}: only a queued or running job can be cancelled"
MSG_ACTIVE = "Job {job_id} is {status}: cancel it first"
MSG_NO_ARTIFACT = "Job {job_id} is {status}: it has an artifact once it has succeeded"
MSG_NO_REPORT = "Job {job_id} is {status}: it has a report once it has succeeded"
MSG_NO_SHARD = "Job {job_id} has {count} shard(s), numbered from 0; got shard={shard}"
MSG_WORKER_LOST = "The worker running this job died {attempts} times (out of memory?); the job is not retried"
MSG_TIME_LIMIT = "The job exceeded its time limit (QUANTIZER_JOB_SOFT_TIME_LIMIT_S = {limit} s)"
MSG_INTERNAL = "The job failed on an internal error; the worker's log has the details"


class JobNotFound(ServiceError):
    status_code = 404
    code = "job.not_found"

    def __init__(self, job_id: Any) -> None:
        super().__init__(MSG_JOB_NOT_FOUND.format(job_id=job_id))


class JobConflict(ServiceError):
    status_code = 409
    code = "job.conflict"


def jobs_storage() -> Storage:
    return storages["jobs"]


# ---------------------------------------------------------------------------- reads
def job_get(job_id: Any) -> Job:
    try:
        return Job.objects.get(pk=UUID(str(job_id)))
    except (ValueError, Job.DoesNotExist):
        raise JobNotFound(job_id) from None


def job_list(*, instance_id: str | None = None, status: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.all()
    if instance_id is not None:
        jobs = jobs.filter(instance_id=instance_id)
    if status is not None:
        jobs = jobs.filter(status=status)
    return jobs.order_by("-created_at", "pk")


def links(job: Job) -> dict[str, str]:
    base = f"/jobs/{job.pk}"
    return {"self": base, "report": f"{base}/report", "artifact": f"{base}/artifact"}


def job_dict(job: Job) -> dict[str, Any]:
    """The job as GET /jobs/{id} answers it."""
    return {
        "job_id": str(job.pk), "instance_id": job.instance_id, "status": job.status,
        "progress": {"tensors_done": job.tensors_done, "tensors_total": job.tensors_total,
                     "bytes_done": job.bytes_done, "bytes_total": job.bytes_total},
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "error": job.error, "summary": job.summary, "links": links(job),
    }


def job_report(job_id: Any) -> dict[str, Any]:
    job = job_get(job_id)
    if job.status != Job.Status.SUCCEEDED:
        raise JobConflict(MSG_NO_REPORT.format(job_id=job.pk, status=job.status), code="job.not_succeeded")
    return {"layers": list(job.layers.order_by("position").values_list("row", flat=True)), "summary": job.summary}


def report_csv(report: dict[str, Any]) -> str:
    """The report's layers as CSV, one column per report key (lists such as the shape joined by 'x')."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_FIELDS)
    for row in report["layers"]:
        writer.writerow(["x".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v)
                         for v in (row.get(name) for name in REPORT_FIELDS)])
    return out.getvalue()


def job_artifact(job_id: Any, shard: int | None) -> tuple[File[bytes], str]:
    """The open artifact of a succeeded job (shard 0 unless asked) and the file name to download it as."""
    job = job_get(job_id)
    if job.status != Job.Status.SUCCEEDED:
        raise JobConflict(MSG_NO_ARTIFACT.format(job_id=job.pk, status=job.status), code="job.not_succeeded")
    index = shard or 0
    if not 0 <= index < len(job.files):
        raise BadRequest(MSG_NO_SHARD.format(job_id=job.pk, count=len(job.files), shard=shard), field="shard",
                         code="job.shard_invalid")
    entry = job.files[index]
    return jobs_storage().open(entry["output"], "rb"), artifact_name(entry["filename"])


def artifact_name(filename: str) -> str:
    """model.safetensors -> model.quantized.safetensors"""
    stem, dot, ext = filename.rpartition(".")
    return f"{stem}.quantized.{ext}" if dot and stem else f"{filename}.quantized"


# ---------------------------------------------------------------------------- uploads
def read_raw_upload(stream: Any, *, filename: str, length: int) -> UploadedFile:
    """A raw (octet-stream) body copied to a temporary file in chunks, never held in memory."""
    from django.core.files.uploadedfile import TemporaryUploadedFile

    upload = TemporaryUploadedFile(filename, "application/octet-stream", length, None)
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(COPY_CHUNK, remaining))
        if not chunk:
            break
        upload.write(chunk)
        remaining -= len(chunk)
    upload.size = length - remaining
    upload.seek(0)
    return upload


def _local_path(upload: File[bytes]) -> str:
    """Where a file to check lies: the temporary file an upload was streamed to (the jobs route's upload handler
    and read_raw_upload make one), or an operator's own file (quantize_model)."""
    temporary = getattr(upload, "temporary_file_path", None)
    return str(temporary() if temporary is not None else upload.file.name)


def _safe_name(filename: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(filename or "model"))[:100].lstrip(".")
    return name or "model"


def job_create(*, instance_id: str, uploads: Sequence[File[bytes]], channel_dim: int | None = None,
               enqueue_job: bool = True) -> Job:
    """Check every file from its header (the engine refuses lying headers, pickles, unknown formats: 400), store
    them, create the job and enqueue it once the transaction has committed. Inline (no broker) the job has run
    when this returns. A refused file stores nothing. `enqueue_job=False`: the caller runs it (quantize_model)."""
    instance = instance_get(instance_id)
    if not uploads:
        raise BadRequest("a checkpoint is required: multipart field 'file' (several for a sharded checkpoint), or "
                         "an application/octet-stream body with ?filename=", field="file", code="request.no_file")
    checked = []
    for upload in uploads:
        fmt = checkpoint_format(upload.name or "")
        info = inspect_checkpoint(_local_path(upload), fmt=fmt)
        checked.append((upload, fmt, info))
    storage = jobs_storage()
    stored: list[str] = []
    try:
        with transaction.atomic():
            job = Job.objects.create(instance=instance, channel_dim=channel_dim,
                                     tensors_total=sum(len(info.tensors) for _, _, info in checked),
                                     bytes_total=sum(info.total_bytes for _, _, info in checked))
            files = []
            for n, (upload, fmt, info) in enumerate(checked):
                name = _safe_name(Path(upload.name or "").name)
                upload.seek(0)
                stored.append(storage.save(f"{job.pk}/in/{n}-{name}", upload))
                upload.close()  # (a temporary upload was moved into the storage: its file is gone)
                files.append({"filename": name, "format": fmt, "input": stored[-1],
                              "output": f"{job.pk}/out/{n}-{name}", "tensors": len(info.tensors),
                              "bytes_in": info.total_bytes, "bytes_out": None})
            job.files = files
            job.save(update_fields=["files"])
            if enqueue_job:
                transaction.on_commit(lambda: enqueue(job.pk))
    except BaseException:
        for name in stored:
            storage.delete(name)
        raise
    if enqueue_job and not settings.CELERY_BROKER_URL:
        job.refresh_from_db()  # it ran inline: its final state (queued to a worker, the answer says queued)
    return job


def enqueue(job_id: Any) -> None:
    """To the Celery queue, or run here and now when no broker is configured."""
    if settings.CELERY_BROKER_URL:
        from .tasks import run_job

        run_job.delay(str(job_id))
    else:
        job_run(job_id)


# ---------------------------------------------------------------------------- the run
@contextlib.contextmanager
def _local_input(storage: Storage, name: str) -> Iterator[str]:
    """A local path of a stored file: the file itself on a filesystem storage, a temporary copy otherwise."""
    try:
        path = storage.path(name)
    except NotImplementedError:
        path = None
    if path is not None:
        yield path
        return
    with tempfile.NamedTemporaryFile(suffix=Path(name).suffix) as tmp, storage.open(name, "rb") as src:
        shutil.copyfileobj(src, tmp, COPY_CHUNK)
        tmp.flush()
        yield tmp.name


@contextlib.contextmanager
def _local_output(storage: Storage, name: str) -> Iterator[str]:
    """A local path to write a stored file to: in place on a filesystem storage, else a temporary file saved to
    the storage when the block succeeds."""
    try:
        path = storage.path(name)
    except NotImplementedError:
        path = None
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        local = str(Path(tmpdir) / Path(name).name)
        yield local
        storage.delete(name)
        with open(local, "rb") as fh:
            storage.save(name, File(fh))


class _Progress:
    """The engine's per-tensor callback (progress, written at most every POLL_S) and its cancel check (the job's
    status, read at most every POLL_S): a cancel, a delete or a finished job stop the run between tensors."""

    def __init__(self, job: Job) -> None:
        self.job_id = job.pk
        self.tensors_done = 0
        self.bytes_base = 0
        self.bytes_done = 0
        self.tensors_total = job.tensors_total
        self._written = self._checked = 0.0
        self._stop = False

    def on_tensor(self, report: LayerReport, bytes_done: int) -> None:
        self.tensors_done += 1
        self.bytes_done = self.bytes_base + bytes_done
        now = time.monotonic()
        if now - self._written >= POLL_S or self.tensors_done == self.tensors_total:
            self._written = now
            updated = Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(
                tensors_done=self.tensors_done, bytes_done=self.bytes_done, heartbeat_at=timezone.now())
            self._stop = self._stop or not updated

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._checked >= POLL_S:
            self._checked = now
            self._stop = not Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).exists()
        return self._stop


def _start(job_id: Any) -> Job | None:
    """Mark the job running (a re-run after a crash starts again from nothing); None when it is not to run.

    A job already running with a fresh heartbeat is another worker's (Redis hands an unacknowledged message out
    again after its visibility timeout): wait until that run ends, or its heartbeat goes stale (its worker died),
    then take over."""
    while True:
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=job_id).first()
            if job is None or job.status not in ACTIVE:
                return None
            stale = timezone.now() - timedelta(seconds=settings.QUANTIZER_JOB_HEARTBEAT_S)
            if job.status == Job.Status.QUEUED or job.heartbeat_at is None or job.heartbeat_at < stale:
                if job.attempts >= settings.QUANTIZER_JOB_MAX_ATTEMPTS:
                    _finish_failed(job, MSG_WORKER_LOST.format(attempts=job.attempts), "job.worker_lost")
                    return None
                JobLayer.objects.filter(job=job).delete()
                job.status, job.attempts = Job.Status.RUNNING, job.attempts + 1
                job.started_at = job.heartbeat_at = timezone.now()
                job.tensors_done = job.bytes_done = 0
                job.error = job.summary = job.finished_at = None
                job.save()
                return job
        time.sleep(min(1.0, settings.QUANTIZER_JOB_HEARTBEAT_S))


def job_run(job_id: Any, *, on_tensor: Callable[[LayerReport, int], None] | None = None) -> None:
    """Run a job (the Celery task's body, the inline path's and quantize_model's). `on_tensor`: also called after
    each tensor (quantize_model's progress bar)."""
    job = _start(job_id)
    if job is None:
        return
    storage = jobs_storage()
    progress = _Progress(job)

    def each_tensor(report: LayerReport, bytes_done: int) -> None:
        progress.on_tensor(report, bytes_done)
        if on_tensor is not None:
            on_tensor(report, progress.bytes_done)

    try:
        instance = QuantizerInstance.objects.get(pk=job.instance_id)
        config = QuantizationConfig.from_dict(instance.config)
        metadata = {"quantsite_instance": instance.pk}  # (the engine adds the producer and the config)
        layers: list[LayerReport] = []
        for entry in job.files:
            with _local_input(storage, entry["input"]) as src, _local_output(storage, entry["output"]) as dst:
                layers += quantize_checkpoint(src, dst, config, fmt=entry["format"], channel_dim=job.channel_dim,
                                              metadata=metadata, on_tensor=each_tensor,
                                              should_cancel=progress.should_cancel)
                entry["bytes_out"] = Path(dst).stat().st_size if Path(dst).exists() else None
            progress.bytes_base += entry["bytes_in"]
    except (JobCancelled, QuantizerInstance.DoesNotExist):
        _remove_outputs(job)
        return
    except SoftTimeLimitExceeded:
        _fail(job, MSG_TIME_LIMIT.format(limit=settings.CELERY_TASK_SOFT_TIME_LIMIT), "job.time_limit")
        return
    except EngineError as exc:
        _fail(job, exc.message, exc.code)
        return
    except Exception:
        logger.exception("job %s failed", job.pk)
        _fail(job, MSG_INTERNAL, "job.internal_error")
        return
    _succeed(job, layers)


def _succeed(job: Job, layers: list[LayerReport]) -> None:
    """Report rows, layer parameters and status in one transaction, unless the job was cancelled or deleted
    meanwhile (its outputs are then removed)."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(pk=job.pk, status=Job.Status.RUNNING).first()
        if locked is not None:
            JobLayer.objects.filter(job=locked).delete()
            JobLayer.objects.bulk_create([
                JobLayer(job=locked, position=n, name=layer.name, sqnr_db=layer.sqnr_db, row=_jsonable(layer.to_dict()))
                for n, layer in enumerate(layers)
            ])
            params = {layer.name: _jsonable(layer.params) for layer in layers
                      if layer.action == "quantized" and layer.params is not None}
            if params:
                store_layer_parameters(locked.instance_id, params, job=locked)
                # Every worker rebuilds its engine object, now with these layers' parameters.
                QuantizerInstance.objects.filter(pk=locked.instance_id).update(version=F("version") + 1)
            locked.status, locked.finished_at = Job.Status.SUCCEEDED, timezone.now()
            locked.summary = _jsonable(summarize(layers))
            locked.files = job.files
            locked.tensors_done, locked.bytes_done = len(layers), locked.bytes_total
            locked.save()
            transaction.on_commit(lambda: _count_finished(locked))
            return
    _remove_outputs(job)


def _jsonable(value: Any) -> Any:
    """numpy scalars and tuples as JSON types; a float that is not finite as null."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else list(v)),
                      parse_constant=lambda _: None)


def _fail(job: Job, detail: str, code: str) -> None:
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(pk=job.pk, status=Job.Status.RUNNING).first()
        if locked is not None:
            _finish_failed(locked, detail, code)
    _remove_outputs(job)


def _finish_failed(job: Job, detail: str, code: str) -> None:
    job.status, job.finished_at, job.error = Job.Status.FAILED, timezone.now(), {"detail": detail, "code": code}
    job.save(update_fields=["status", "finished_at", "error"])
    transaction.on_commit(lambda: _count_finished(job))


def _count_finished(job: Job) -> None:
    """The Prometheus job families: one more job in its final status, and its run time when it ran."""
    seconds = None
    if job.started_at is not None and job.finished_at is not None:
        seconds = (job.finished_at - job.started_at).total_seconds()
    metrics.job_finished(job.status, seconds)


def _job_counts() -> dict[str, int]:
    counts = dict.fromkeys(Job.Status.values, 0)
    counts.update(Job.objects.order_by().values_list("status").annotate(n=Count("pk")))
    return counts


# Read at each scrape of /metrics, whichever process ran the jobs.
metrics.register_job_sources(counts_by_status=_job_counts,
                             queue_depth=lambda: Job.objects.filter(status=Job.Status.QUEUED).count())


def _remove_outputs(job: Job) -> None:
    storage = jobs_storage()
    for entry in job.files:
        storage.delete(entry["output"])


# ---------------------------------------------------------------------------- cancel, delete, re-run, purge
def job_cancel(job_id: Any) -> Job:
    """A queued job never runs; a running one stops at its next tensor (its worker removes the outputs)."""
    job = job_get(job_id)
    if not Job.objects.filter(pk=job.pk, status__in=ACTIVE).update(status=Job.Status.CANCELLED,
                                                                   finished_at=timezone.now()):
        job.refresh_from_db()
        raise JobConflict(MSG_NOT_ACTIVE.format(job_id=job.pk, status=job.status), code="job.not_active")
    job.refresh_from_db()
    _count_finished(job)
    return job


def job_delete(job_id: Any) -> None:
    """Cancel if needed, then delete the files and the record (the layer parameters it set stay, without it)."""
    job = job_get(job_id)
    if Job.objects.filter(pk=job.pk, status__in=ACTIVE).update(status=Job.Status.CANCELLED,
                                                               finished_at=timezone.now()):
        job.refresh_from_db()
        _count_finished(job)
    _delete_files(job)
    job.delete()


def _delete_files(job: Job) -> None:
    storage = jobs_storage()
    for entry in job.files:
        for name in (entry["input"], entry["output"], entry["output"] + ".partial"):  # (a killed worker's)
            storage.delete(name)
    try:  # the job's now empty folders, on a filesystem storage
        root = Path(storage.path(str(job.pk)))
    except NotImplementedError:
        return
    for folder in (root / "in", root / "out", root):
        with contextlib.suppress(OSError):
            folder.rmdir()


def job_rerun(job_id: Any) -> Job:
    """A finished job queued again on its stored inputs (the admin's re-run)."""
    job = job_get(job_id)
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, status__in=FINISHED).update(
                status=Job.Status.QUEUED, attempts=0, tensors_done=0, bytes_done=0, error=None, summary=None,
                started_at=None, finished_at=None):
            raise JobConflict(MSG_ACTIVE.format(job_id=job.pk, status=job.status), code="job.active")
        JobLayer.objects.filter(job=job).delete()
        transaction.on_commit(lambda: enqueue(job.pk))
    _remove_outputs(job)
    job.refresh_from_db()
    return job


def parse_age(text: str) -> timedelta:
    """'7d', '12h', '30m', '45s' -> a timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhms])\s*", text or "")
    if not match:
        raise ValueError(f"expected a number and a unit (d, h, m, s), e.g. 7d; got {text!r}")
    unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def purge(older_than: timedelta) -> int:
    """Delete finished jobs created more than `older_than` ago, with their files; the number deleted."""
    count = 0
    for job in Job.objects.filter(status__in=FINISHED, created_at__lt=timezone.now() - older_than):
        _delete_files(job)
        job.delete()
        count += 1
    return count
