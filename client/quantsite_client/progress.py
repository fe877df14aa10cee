"""Progress bars: rich's when it is installed (the `cli` extra), else one line rewritten on stderr."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import IO, Any


class Bar:
    """A bar of `total` units (bytes or tensors) with a description; `update(done)` sets the units done."""

    def __init__(self, description: str, total: int, *, unit: str = "", enabled: bool = True) -> None:
        self.description, self.total, self.unit, self.enabled = description, max(total, 0), unit, enabled
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Bar:
        if not self.enabled:
            return self
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )
        except ImportError:
            return self
        count = DownloadColumn() if self.unit == "bytes" else MofNCompleteColumn()
        self._rich = Progress(TextColumn("{task.description}"), BarColumn(), count, TimeRemainingColumn(),
                              console=Console(stderr=True), transient=False)  # stdout is for the results
        self._rich.__enter__()
        self._task = self._rich.add_task(self.description, total=self.total or None)
        return self

    def update(self, done: int, *, total: int | None = None, description: str | None = None) -> None:
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=done, total=self.total or None, description=self.description)
            return
        share = f"{100 * done / self.total:5.1f}%" if self.total else ""
        sys.stderr.write(f"\r{self.description} {done}/{self.total} {self.unit} {share}")
        sys.stderr.flush()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._rich is not None:
            self._rich.__exit__(kind, exc, tb)
        elif self.enabled:
            sys.stderr.write("\n")


class ReadProgress:
    """A binary file that reports each read to a Bar (httpx streams a multipart upload by reading the file in
    chunks; its length comes from fileno())."""

    def __init__(self, file: IO[bytes], bar: Bar, offset: int = 0) -> None:
        self._file, self._bar, self._offset, self._done = file, bar, offset, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._done += len(chunk)
        self._bar.update(self._offset + self._done)
        return chunk

    def fileno(self) -> int:
        return self._file.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()
