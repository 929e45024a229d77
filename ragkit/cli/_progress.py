"""Progress of a long ingest: a rich bar on a terminal, and a plain line at least every
``every_s`` seconds when the output is not a terminal (a CI log, a file, a pipe), so a long
run is never silent until its end."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def _duration(elapsed: float) -> str:
    seconds = round(elapsed)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class IngestProgress:
    """Items (chunks by default) done out of a total, known or not, with files, rate and
    time left."""

    def __init__(
        self,
        console: Console,
        label: str,
        *,
        total: int | None = None,
        unit: str = "chunks",
        every_s: float = 10.0,
    ) -> None:
        self.console, self.label, self.unit, self.every_s = console, label, unit, every_s
        self.total: int | None = total
        self.done = 0
        self.files: int | None = None
        self.files_total: int | None = None
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar: Progress | None = None
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> IngestProgress:
        self.started = time.monotonic()
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, detail="")
        else:
            self._ticker = threading.Thread(target=self._tick, name="ragkit-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.stop()

    def update(
        self,
        done: int,
        *,
        total: int | None = None,
        files: int | None = None,
        files_total: int | None = None,
    ) -> None:
        with self._lock:
            self.done = done
            self.total = total if total is not None else self.total
            self.files = files if files is not None else self.files
            self.files_total = files_total if files_total is not None else self.files_total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total, detail=self._files())

    def _files(self) -> str:
        if self.files is None:
            return ""
        of = f"/{self.files_total}" if self.files_total is not None else ""
        return f"{self.files}{of} files"

    def line(self) -> str:
        """``label: done/total chunks, files, chunks/s, ETA, elapsed`` as of now."""
        with self._lock:
            elapsed = max(time.monotonic() - self.started, 1e-9)
            rate = self.done / elapsed
            parts = [f"{self.done}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
            if self.files is not None:
                parts.append(self._files())
            parts.append(f"{rate:.1f} {self.unit}/s")
            if self.total and rate > 0 and self.done < self.total:
                parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
            parts.append(f"{_duration(elapsed)} elapsed")
        return f"{self.label}: " + ", ".join(parts)

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            self.console.print(self.line(), soft_wrap=True, highlight=False)
