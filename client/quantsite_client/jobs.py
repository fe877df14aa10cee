"""A model job on the server: its state, waiting for it, its per-layer report and its quantized checkpoint."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from .errors import JobFailed, JobNotFound
from .progress import Bar

if TYPE_CHECKING:
    from .client import QuantsiteClient

FINAL = ("succeeded", "failed", "cancelled")


class Job:
    """The job's last known state is `data` (the server's GET /jobs/{id} answer); `refresh()` reads it again."""

    def __init__(self, client: QuantsiteClient, data: dict[str, Any]) -> None:
        self.client = client
        self.data = data

    @property
    def id(self) -> str:
        return str(self.data["job_id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def done(self) -> bool:
        return self.status in FINAL

    @property
    def progress(self) -> dict[str, int]:
        return dict(self.data.get("progress") or {})

    @property
    def summary(self) -> dict[str, Any] | None:
        return self.data.get("summary")

    @property
    def error(self) -> dict[str, Any] | None:
        return self.data.get("error")

    def __repr__(self) -> str:
        return f"Job({self.id!r}, status={self.status!r})"

    def refresh(self) -> Job:
        self.data = self.client.job_state(self.id)
        return self

    def wait(self, *, progress: bool = False, timeout: float | None = None, poll: float = 0.5,
             raise_on_failure: bool = True) -> Job:
        """Poll until the job is succeeded, failed or cancelled (`progress`: a bar of tensors done). A failed or
        cancelled job raises JobFailed unless `raise_on_failure` is off; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.refresh()  # the submit answer carries no progress
        with Bar(f"job {self.id}", self.progress.get("tensors_total", 0), unit="tensors", enabled=progress) as bar:
            while True:
                bar.update(self.progress.get("tensors_done", 0), total=self.progress.get("tensors_total", 0),
                           description=f"job {self.id} {self.status}")
                if self.done:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} still {self.status} after {timeout} s")
                time.sleep(poll)
                self.refresh()
        if raise_on_failure and self.status != "succeeded":
            error = self.error or {}
            raise JobFailed(f"job {self.id} {self.status}: {error.get('detail', 'no detail')}", job=self,
                            code=error.get("code"))
        return self

    @overload
    def report(self, *, csv: Literal[False] = ...) -> dict[str, Any]: ...

    @overload
    def report(self, *, csv: Literal[True]) -> str: ...

    def report(self, *, csv: bool = False) -> dict[str, Any] | str:
        """The per-layer report `{"layers": [...], "summary": {...}}`, or the layers as CSV text."""
        headers = {"Accept": "text/csv"} if csv else {}
        response = self.client.request("GET", f"/jobs/{self.id}/report", idempotent=True, not_found=JobNotFound,
                                       headers=headers)
        return response.text if csv else response.json()

    def download(self, path: str | os.PathLike[str], *, shard: int | None = None, progress: bool = False) -> Path:
        """Stream the quantized checkpoint (`shard` of a sharded job) to `path`; written to a temporary name
        beside it first, so `path` never holds a partial file."""
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        params = {} if shard is None else {"shard": str(shard)}
        response = self.client.request("GET", f"/jobs/{self.id}/artifact", idempotent=True, not_found=JobNotFound,
                                       params=params, stream=True)
        try:
            total = int(response.headers.get("Content-Length") or 0)
            with Bar("download", total, unit="bytes", enabled=progress) as bar, partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
                    bar.update(out.tell())
            partial.replace(target)
        finally:
            response.close()
            partial.unlink(missing_ok=True)
        return target

    def cancel(self) -> Job:
        self.client.request("POST", f"/jobs/{self.id}/cancel", idempotent=True, not_found=JobNotFound)
        return self.refresh()

    def delete(self) -> str:
        body = self.client.request("DELETE", f"/jobs/{self.id}", idempotent=True, not_found=JobNotFound).json()
        return str(body.get("message", ""))
