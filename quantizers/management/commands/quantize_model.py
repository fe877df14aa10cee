"""manage.py quantize_model PATH [PATH ...] --instance ID [--output OUT]: a model job run in the foreground (the
same code as a Celery worker's), with a progress bar on stderr, for operators with local files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from engine import EngineError, LayerReport
from quantizers import jobs
from quantizers.exceptions import ServiceError
from quantizers.models import Job


class Command(BaseCommand):
    help = "Quantize a local checkpoint (.safetensors or .npz; several paths for shards) with an instance's config."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--instance", required=True, help="the quantizer instance whose config is the recipe")
        parser.add_argument("--output", help="where to copy the quantized checkpoint (a folder for several shards); "
                                             "default: beside the input, as <name>.quantized.<ext>")

    def handle(self, *args: Any, paths: list[str], instance: str, output: str | None, **options: Any) -> None:
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise CommandError(f"no such file: {missing[0]}")
        handles = [open(p, "rb") for p in paths]  # noqa: SIM115  (closed below)
        try:
            uploads = [File(fh, name=Path(p).name) for fh, p in zip(handles, paths, strict=True)]
            job = jobs.job_create(instance_id=instance, uploads=uploads, enqueue_job=False)
        except (EngineError, ServiceError) as exc:
            raise CommandError(getattr(exc, "message", None) or getattr(exc, "detail", str(exc))) from None
        finally:
            for fh in handles:
                fh.close()
        with tqdm(total=job.bytes_total, unit="B", unit_scale=True, desc=f"job {job.pk}", file=self.stderr._out) as bar:

            def advance(report: LayerReport, bytes_done: int) -> None:
                bar.update(bytes_done - bar.n)
                bar.set_postfix_str(report.name[-40:])

            jobs.job_run(job.pk, on_tensor=advance)
        job.refresh_from_db()
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"job {job.pk} {job.status}: {(job.error or {}).get('detail', '')}")
        for n, (entry, source) in enumerate(zip(job.files, paths, strict=True)):
            target = _target(Path(source), output, several=len(paths) > 1)
            with jobs.job_artifact(job.pk, n)[0] as artifact, open(target, "wb") as out:
                shutil.copyfileobj(artifact, out, jobs.COPY_CHUNK)
            self.stdout.write(f"{entry['filename']} -> {target}")
        summary = job.summary or {}
        self.stdout.write(f"job {job.pk}: {summary.get('tensors_quantized')} tensor(s) quantized, "
                          f"{summary.get('tensors_kept')} kept, compression {summary.get('compression_ratio')}, "
                          f"SQNR {summary.get('sqnr_db')} dB (report: GET /jobs/{job.pk}/report)")


def _target(source: Path, output: str | None, *, several: bool) -> Path:
    name = jobs.artifact_name(source.name)
    if output is None:
        return source.with_name(name)
    out = Path(output)
    if several or out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        return out / name
    return out
