"""Loading, checkpointing and optimizing a LocalShard's indexes (a base of ``LocalShard``).

The indexes are derived from the record log: loaded from the installed checkpoint and brought
up to date by replaying what follows it, checkpointed to a new versioned directory that one
SQLite transaction installs (see ``_checkpoint``), and rebuilt from the live records by
``optimize`` when deleted rows dominate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from ragkit.backends.local._backup import check_destination, publish, staging, write_backup
from ragkit.backends.local._checkpoint import LEGACY, new_folder, remove_others, seal, verify
from ragkit.backends.local._indexes import ShardIndexes
from ragkit.backends.local._records import RecordLog
from ragkit.errors import StoreError

log = logging.getLogger(__name__)

#: loads of a checkpoint that newer ones replaced while it was read, before a rebuild
_LOAD_ATTEMPTS = 5
#: dead rows past which (and past the live ones) the indexes are rebuilt automatically
AUTO_OPTIMIZE_DEAD_ROWS = 10_000


class Checkpoints:
    """The indexes' life: load, checkpoint, back up, optimize, and their state (``info``)."""

    path: Path | None
    name: str
    read_only: bool
    shared: bool
    checkpoint_every: int
    _lock: threading.RLock
    _log: RecordLog
    _ix: ShardIndexes
    _applied: int

    def _fresh_indexes(self) -> ShardIndexes:
        raise NotImplementedError

    def _exclusive(self, *, catch_up: bool = True) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def _check_writable(self) -> None:
        raise NotImplementedError

    def _follow(self) -> None:
        raise NotImplementedError

    @property
    def dim(self) -> int | None:
        raise NotImplementedError

    def refresh(self) -> None:
        """Catch a read-only handle up with what the writing process has committed since
        it opened (a read-only handle otherwise answers from the state it opened at)."""
        with self._lock:
            self._ix = self._fresh_indexes()
            self._open()

    def _open(self) -> None:
        self._load_indexes()
        self._applied = self._log.seq

    def _load_indexes(self) -> None:
        """Load the installed checkpoint and replay what follows it, in one snapshot of the
        log (a reader sees one committed state, whatever a writer does meanwhile). A
        checkpoint removed under the load (two newer ones were installed meanwhile) is
        followed to the new one; only one that does not match SQLite is rebuilt from it."""
        with self._lock:
            for attempt in range(_LOAD_ATTEMPTS):
                with self._log.snapshot():
                    self._log.reload_counters()
                    name, accepted = self._log.installed_checkpoint()
                    folder = self._index_dir(name)
                    if folder is None:
                        self._ix.replay(self._log)
                        return
                    try:
                        verify(folder, accepted)
                        self._ix.load(folder, self._log)
                        self._ix.replay(self._log)
                        self._cross_check()
                        return
                    except Exception as exc:
                        self._ix = self._fresh_indexes()
                        problem = exc
                if self._log.installed_checkpoint()[0] == name or attempt == _LOAD_ATTEMPTS - 1:
                    break  # still the installed one: it does not match SQLite
            log.warning("ragkit: rebuilding indexes of %s from SQLite (%s)", self.path, problem)
            with self._log.snapshot():
                self._log.reload_counters()
                self._ix.replay(self._log)

    def _cross_check(self) -> None:
        """The indexes hold exactly SQLite's records per tenant (else ``StoreError``)."""
        want = self._log.tenant_counts()
        rows = self._ix.rows
        have = {
            t: int(self._ix.tenant_docs.view[code])
            for t, code in rows.tenants.items()
            if code < len(self._ix.tenant_docs) and self._ix.tenant_docs.view[code]
        }
        if have != want:
            raise StoreError(f"indexes hold {have} records per tenant, the record log {want}")

    def _index_dir(self, name: str | None) -> Path | None:
        """The installed checkpoint's directory (``name`` from the log; a store from before
        versioned checkpoints keeps it in ``index``, or ``index.old`` mid-swap)."""
        if self.path is None:
            return None
        for candidate in (name,) if name is not None else LEGACY:
            folder = self.path / candidate
            if (folder / "manifest.json").exists():
                return folder
        return None

    def checkpoint(self) -> None:
        """Write the indexes to disk (atomically), covering every write so far."""
        if self.path is None or self.read_only:
            return
        with self._exclusive():
            folder = new_folder(self.path, self._log.seq)
            try:
                self._ix.save(folder, self._log.seq)
                digest = seal(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            previous = self._log.installed_checkpoint()[0]
            self._log.install_checkpoint(folder.name, digest)
            # The previous checkpoint stays for readers that are loading it right now.
            remove_others(self.path, {folder.name, previous or ""})
            self._ix.seq = self._log.seq
            if not self.shared:  # another process may not have applied them yet
                self._log.prune_deletions(self._ix.seq)

    def backup(self, dest: str | os.PathLike[str]) -> dict[str, Any]:
        """Write a crash-consistent copy of the store to ``dest`` (absent or an empty
        directory) while writes go on: every write committed before the backup began, none
        half. The copy is a store directory; opened (``ragkit restore`` or directly), it
        takes an identity of its own. Returns what its ``BACKUP.json`` records."""
        target = check_destination(dest)
        tmp = staging(target)
        try:
            info = write_backup(self._log.backup_to, self.path, tmp)
            publish(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return info

    def _maybe_checkpoint(self) -> None:
        if self._dead_rows() > max(AUTO_OPTIMIZE_DEAD_ROWS, self._ix.lexical.live_count):
            self.optimize()
        elif self.path is not None and self._log.seq - self._ix.seq >= self.checkpoint_every:
            self.checkpoint()

    def _dead_rows(self) -> int:
        return len(self._ix.rows) - self._ix.lexical.live_count

    def optimize(self) -> int:
        """Rebuild the indexes from the live records, so deleted and replaced records leave
        the dense matrix, the HNSW graph and the postings; then checkpoint. Runs by itself
        once dead rows outnumber live ones (and exceed 10,000): a store that kept 300 of
        87,000 records opened in 4.9 s before, in a few milliseconds after. Returns the
        number of dead rows dropped."""
        self._check_writable()
        with self._exclusive():
            dead = self._dead_rows()
            fresh = self._fresh_indexes()
            fresh.replay(self._log)
            self._ix = fresh
            self._applied = self._log.seq
            if self.path is not None:
                self.checkpoint()
            return dead

    def _close_indexes(self) -> None:
        with self._lock:
            if self.read_only:
                pass
            elif self._dead_rows() > max(AUTO_OPTIMIZE_DEAD_ROWS, self._ix.lexical.live_count):
                self.optimize()
            elif self.path is not None and self._log.seq != self._ix.seq:
                self.checkpoint()

    def stats(self) -> dict[str, Any]:
        """The index state (``info``) and, for a store directory, its disk use."""
        out: dict[str, Any] = {"index": self.info()}
        if self.path is not None:
            files = [p for p in self.path.rglob("*") if p.is_file()]
            out["disk_bytes"] = sum(p.stat().st_size for p in files)
        return out

    def info(self) -> dict[str, Any]:
        """Counts and index state, for diagnostics."""
        self._follow()
        with self._lock:
            ix = self._ix
            cache = self._log.row_cache
            return {
                "name": self.name,
                "records": ix.lexical.live_count,
                "tenants": len(self._log.tenant_counts()),
                "dim": self.dim,
                "rows": len(ix.rows),
                "dead_rows": len(ix.rows) - ix.lexical.live_count,
                "read_only": self.read_only,
                "shared": self.shared,
                "seq": self._log.seq,
                "version": self._log.version,
                "checkpoint_seq": ix.seq,
                "lexical_segments": len(ix.lexical.segments),
                "hnsw": ix.dense is not None and ix.dense.hnsw is not None,
                "record_cache": None if cache is None else cache.info(),
            }
