"""The Celery task of model jobs (quantsite/celery.py finds it). Acknowledged late and given back when its worker
dies (CELERY_TASK_ACKS_LATE, CELERY_TASK_REJECT_ON_WORKER_LOST); job_run is idempotent, so a re-run is safe."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_init, worker_process_init

from engine import fill_kernel_cache, job_kernels, warm_job_kernels

from . import jobs


@shared_task(name="quantizers.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> None:
    jobs.job_run(job_id)


@worker_init.connect
def _fill(**_: object) -> None:
    """The worker's main process has a child compile what the kernel cache lacks before the pool forks, so that
    the pool's processes load the kernels (lean) rather than each compile them (LLVM's memory left behind)."""
    fill_kernel_cache(job_kernels())


@worker_process_init.connect
def _warm(**_: object) -> None:
    """Each worker process loads the job kernels (numba) when it starts, not during its first job."""
    warm_job_kernels()
