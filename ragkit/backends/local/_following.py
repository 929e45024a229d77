"""Locking and following of a LocalShard directory (a base of ``LocalShard``).

One open handle per directory and process: the directory's ``LOCK`` file is held exclusively,
or shared by every process that opened it with ``shared=True``; those processes also take
turns on ``WRITER`` for each write, and before a write or a read catch their indexes up with
what the others committed (following).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragkit.backends.local._indexes import ShardIndexes
from ragkit.backends.local._records import RecordLog
from ragkit.errors import StoreError
from ragkit.tracing import stage

log = logging.getLogger(__name__)

#: directories this process holds open, so a second open can close the first
_OPEN: dict[str, weakref.ref[Following]] = {}
_OPEN_LOCK = threading.RLock()


class Following:
    """The directory locks of one open handle, and following other writing processes."""

    path: Path | None
    shared: bool
    name: str
    _lock: threading.RLock
    _log: RecordLog
    _ix: ShardIndexes
    _applied: int
    _lock_file: Any
    _writer_file: Any
    _writer_depth: int

    def close(self) -> None:
        raise NotImplementedError

    def _acquire_dir_lock(self) -> None:
        """One open handle per directory. Opening a directory this process already has open
        closes the earlier handle (a notebook cell run twice must not lock itself out); a
        directory open in another process is a ``StoreError``."""
        assert self.path is not None
        key = os.path.realpath(self.path)
        with _OPEN_LOCK:
            earlier = _OPEN.get(key)
            holder = earlier() if earlier is not None else None
            if holder is not None and holder is not self:
                log.warning(
                    "ragkit: %s was still open in this process; closing the earlier handle "
                    "to open it again",
                    self.path,
                )
                holder.close()
            handle = open(self.path / "LOCK", "a+")  # noqa: SIM115 - held until close()
            try:
                mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                how = "without shared=True" if self.shared else ""
                raise StoreError(
                    f"{self.path} is open in another process {how}; close it there first, "
                    "open it read-only (HybridStore(path, read_only=True), ragkit CLI reads "
                    "do), or open it with shared=True in every process that writes it"
                ) from None
            self._lock_file = handle
            if self.shared:
                self._writer_file = open(self.path / "WRITER", "a+")  # noqa: SIM115
            _OPEN[key] = weakref.ref(self)

    @contextlib.contextmanager
    def _exclusive(self, *, catch_up: bool = True) -> Iterator[None]:
        """The shard's lock; in shared mode also the directory's writer lock, with the
        indexes first caught up with every write another process committed."""
        with self._lock:
            if self._writer_file is None:
                yield
                return
            if self._writer_depth == 0:
                fcntl.flock(self._writer_file, fcntl.LOCK_EX)
            self._writer_depth += 1
            try:
                if catch_up:
                    self._catch_up()
                yield
            finally:
                self._writer_depth -= 1
                if self._writer_depth == 0:
                    fcntl.flock(self._writer_file, fcntl.LOCK_UN)

    def _catch_up(self) -> None:
        """Apply to the indexes what other processes committed (under the writer lock)."""
        if int(self._log.setting("seq") or 0) == self._applied:
            return
        self._log.reload_counters()
        with stage("catch_up", **{"ragkit.backend": self.name}):
            self._ix.replay(self._log, since=self._applied)
        self._applied = self._log.seq

    def _follow(self) -> None:
        """Before a read in shared mode: catch up if another process wrote meanwhile."""
        if self._writer_file is not None and int(self._log.setting("seq") or 0) != self._applied:
            with self._exclusive():
                pass

    def _release_locks(self) -> None:
        """Let go of the directory (the writer lock, then the open lock)."""
        if self._writer_file is not None:
            self._writer_file.close()
            self._writer_file = None
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
            with _OPEN_LOCK:
                key = os.path.realpath(self.path) if self.path is not None else None
                ref = _OPEN.get(key) if key is not None else None
                if ref is not None and ref() in (self, None):
                    del _OPEN[key]  # type: ignore[arg-type]
