"""What a LocalShard serves as a partition replica (a base of ``LocalShard``): its peers'
catch-up (``changes_since`` / ``apply_changes``, versioned and complete from its horizon) and
its host's reads of a search's records by row number (``packed``, ``records_at``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit._rowids import RowIds
from ragkit._validation import check_tenant, unique_ids
from ragkit.backends.base import Changes, ReplicaGapError
from ragkit.backends.local._indexes import ShardIndexes
from ragkit.backends.local._records import NewRow, RecordLog, Removed, StoredRow
from ragkit.schema import Record


def stored_record(row: StoredRow, include_vector: bool) -> Record:
    """A stored row as a ``Record`` (its vector only when asked for)."""
    vector = np.frombuffer(row.vector, dtype=np.float32).copy() if include_vector else None
    metadata = {} if row.metadata == "{}" else json.loads(row.metadata)  # the common case, 5 us
    return Record(row.id, row.text, metadata, vector, row.tenant)


class ReplicaSide:
    """Catch-up for peers and reads by row for the host."""

    keeps_vectors: bool
    _lock: threading.RLock
    _log: RecordLog
    _ix: ShardIndexes

    @property
    def horizon(self) -> int:
        raise NotImplementedError

    def _check_writable(self) -> None:
        raise NotImplementedError

    def _exclusive(self, *, catch_up: bool = True) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def _check_records(self, records: Sequence[Record]) -> tuple[list[str], Any]:
        raise NotImplementedError

    def _new_rows(
        self,
        records: Sequence[Record],
        payloads: Sequence[str],
        vectors: Any,
        versions: Sequence[int],
    ) -> list[NewRow]:
        raise NotImplementedError

    def _dim_setting(self, vectors: Any) -> dict[str, str] | None:
        raise NotImplementedError

    def _commit(
        self,
        rows: Sequence[NewRow],
        deletes: Sequence[tuple[str | None, str, int]],
        version: int,
        *,
        settings: dict[str, str] | None = None,
        wipe: bool = False,
    ) -> list[Removed]:
        raise NotImplementedError

    def changes_since(self, version: int, *, limit: int = 5000) -> Changes:
        with self._lock:
            rows, tombstones, upto = self._log.changes(version, limit)
            horizon = self.horizon
            return Changes(
                since=version,
                upto=upto,
                latest=self._log.version,
                records=[stored_record(r, self.keeps_vectors) for r in rows],
                versions=[r.version for r in rows],
                tombstones=tombstones,
                full=version == 0 or version < horizon,
                horizon=horizon,
            )

    def apply_changes(self, changes: Changes) -> int:
        self._check_writable()
        payloads, vectors = self._check_records(changes.records) if changes.records else ([], None)
        with self._exclusive():
            current = self._log.version
            if changes.since > current and not changes.full:
                raise ReplicaGapError(current, changes.since + 1)
            rows = self._new_rows(changes.records, payloads, vectors, changes.versions)
            settings = self._dim_setting(vectors)
            target = changes.upto if changes.full else max(current, changes.upto)
            if changes.full:
                settings = {**(settings or {}), "horizon": str(changes.horizon)}
            self._commit(rows, changes.tombstones, target, settings=settings, wipe=changes.full)
            return target

    def records_at(
        self, rows: NDArray[np.int64], indexes: ShardIndexes, tenant: str | None, vectors: bool
    ) -> dict[str, Record] | None:
        """Records by row of ``indexes`` (``None`` when the shard has rebuilt its indexes
        since, so rows mean other records now)."""
        stored = self._stored_at(rows, indexes, tenant, vectors)
        return None if stored is None else {row.id: stored_record(row, vectors) for row in stored}

    def _stored_at(
        self, rows: NDArray[np.int64], indexes: ShardIndexes, tenant: str | None, vectors: bool
    ) -> list[StoredRow] | None:
        """The stored rows at these rows of ``indexes``, read by doc number (from the row
        cache when without vectors); rows deleted since the search are left out."""
        with self._lock:
            if indexes is not self._ix:
                return None
            docs = indexes.rows.docs.view[rows].tolist()
        found = self._log.get_docs(docs, vectors=vectors)
        return [row for doc in docs if (row := found.get(doc)) is not None and row.tenant == tenant]

    def packed(
        self, ids: Sequence[str], *, tenant: str | None = None, vectors: bool = False
    ) -> list[tuple[str, str, str, bytes | None]]:
        """Records as plain tuples; ids that are rows of a search's answer (``RowIds``) are
        read by doc number, from the row cache where it holds them."""
        tenant = check_tenant(tenant)
        stored = None
        indexes = self._ix
        if isinstance(ids, RowIds) and ids.names is indexes.rows.ids:
            _, first = np.unique(ids.rows, return_index=True)  # each row once, in order
            stored = self._stored_at(ids.rows[np.sort(first)], indexes, tenant, vectors)
        if stored is None:
            wanted = unique_ids(ids)
            found = self._log.get(wanted, tenant, vectors=vectors)
            stored = [r for i in wanted if (r := found.get(i)) is not None]
        return [(r.id, r.text, r.metadata, r.vector if vectors else None) for r in stored]
