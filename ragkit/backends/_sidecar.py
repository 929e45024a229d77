"""A vector-only engine plus a lexical sidecar: the base of ``ChromaShard`` and its kind.

The engine keeps the vectors and answers the dense leg. Beside it, a ``LocalShard`` without
vectors (the sidecar) keeps the text, metadata, BM25 postings, metadata columns, versions and
tombstones, so the lexical leg, filters the engine cannot express, counts, records and
replication come from one place. An engine adapter implements the ``_engine_*`` hooks.

Every write bumps the version kept in the engine first, then writes the engine, then the
sidecar. A crash anywhere in between leaves the sidecar at another version than the engine,
and the next open rebuilds the sidecar from the engine (what the engine holds wins; the write
was never acknowledged). A rebuilt sidecar has no tombstones from before, so its history starts
there (``horizon``): a replica further behind catches up with a full copy.
"""

from __future__ import annotations

import os
import threading
import uuid
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from ragkit._validation import check_records, check_tenant, check_vector
from ragkit.backends.base import (
    Capabilities,
    Changes,
    ReplicaGapError,
    ReplicaShard,
    ShardRecords,
    WriteAck,
    WriteBatch,
)
from ragkit.backends.local import LocalShard
from ragkit.filters import Filter
from ragkit.request import SearchRequest
from ragkit.schema import (
    Leg,
    LexicalStats,
    Record,
    SearchMode,
    ShardAnswer,
    Vector,
)


class SidecarShard(ReplicaShard):
    """Implement the engine hooks; call ``_open_sidecar`` at the end of ``__init__``."""

    capabilities = Capabilities(native_hybrid=False, global_stats=True)
    name: str

    # ---- the engine hooks ----------------------------------------------------------------

    @abstractmethod
    def _engine_state(self) -> dict[str, str]:
        """The small state kept in the engine: ``version``, ``dim``, ``user.*`` settings."""

    @abstractmethod
    def _engine_put_state(self, state: dict[str, str]) -> None: ...

    @abstractmethod
    def _engine_upsert(self, records: Sequence[Record]) -> None:
        """Insert or replace records (with vectors) in the engine."""

    @abstractmethod
    def _engine_delete(self, keys: Sequence[tuple[str | None, str]]) -> None:
        """Delete records by (tenant, id); absent ones are ignored."""

    @abstractmethod
    def _engine_clear(self) -> None:
        """Delete every record."""

    @abstractmethod
    def _engine_vectors(self, tenant: str | None, ids: Sequence[str]) -> dict[str, Vector]: ...

    @abstractmethod
    def _engine_scan(self) -> Iterator[list[Record]]:
        """Every record (vectors not needed), in batches: for rebuilding the sidecar."""

    @abstractmethod
    def _engine_dense(self, vector: Vector, k: int, flt: Filter | None, tenant: str | None) -> Leg:
        """The ``k`` nearest records of ``tenant`` passing ``flt``, by cosine similarity,
        equal scores ordered by id."""

    # ---- sidecar -------------------------------------------------------------------------

    def _open_sidecar(self, path: str | os.PathLike[str] | None) -> None:
        self._write_lock = threading.RLock()
        self._sidecar = LocalShard(path, name=f"{self.name}-sidecar", dense=False)
        try:
            state = self._engine_state()
            if "store_id" not in state:
                self._engine_put_state({**state, "store_id": uuid.uuid4().hex})
            self._store_id = self._engine_state()["store_id"]
            self._sync_sidecar()
        except BaseException:
            self._sidecar.close()
            raise

    def _sync_sidecar(self) -> None:
        version = int(self._engine_state().get("version", 0))
        if self._sidecar.version == version:
            return
        records = [r for batch in self._engine_scan() for r in batch]
        self._sidecar.apply_changes(
            Changes(
                since=0,
                upto=version,
                latest=version,
                records=[replace(r, vector=None) for r in records],
                versions=[version] * len(records),
                full=True,
                horizon=version,
            )
        )

    # ---- replication ---------------------------------------------------------------------

    @property
    def store_id(self) -> str:
        return self._store_id

    @property
    def generation(self) -> int | None:
        return self._sidecar.version

    @property
    def version(self) -> int:
        return self._sidecar.version

    @property
    def horizon(self) -> int:
        return self._sidecar.horizon

    @property
    def dim(self) -> int | None:
        value = self._engine_state().get("dim")
        return None if value is None else int(value)

    def _bump(self, version: int, dim: int | None) -> None:
        state = self._engine_state()
        state["version"] = str(version)
        if dim is not None and "dim" not in state:
            state["dim"] = str(dim)
        self._engine_put_state(state)

    def write(self, batch: WriteBatch, *, version: int | None = None) -> WriteAck:
        vectors = (
            check_records(batch.upserts, self.dim, limits=self.limits)[1] if batch.upserts else None
        )
        tenant = check_tenant(batch.tenant)
        with self._write_lock:
            current = self.version
            if version is not None and version <= current:
                return WriteAck(current, (), False)
            if version is not None and version > current + 1:
                raise ReplicaGapError(current, version)
            deleted: list[str] = []
            if batch.deletes is not None or batch.delete_filter is not None:
                deleted = self._sidecar.delete_targets(batch.deletes, batch.delete_filter, tenant)
                if version is None:
                    present = self._sidecar.get(deleted, tenant=tenant)
                    deleted = [r.id for r in present]
            if version is None and not batch.upserts and not deleted:
                return WriteAck(current, (), False)
            new_version = current + 1 if version is None else version
            self._bump(new_version, None if vectors is None else int(vectors.shape[1]))
            if deleted:
                self._engine_delete([(tenant, i) for i in deleted])
            if batch.upserts:
                self._engine_upsert(
                    [replace(r, vector=v) for r, v in zip(batch.upserts, vectors)]  # type: ignore[arg-type]
                )
            sidecar_batch = WriteBatch(
                tuple(replace(r, vector=None) for r in batch.upserts),
                tuple(deleted) if deleted else None,
                None,
                tenant,
            )
            self._sidecar.write(sidecar_batch, version=new_version)
            return WriteAck(new_version, tuple(deleted), True)

    def changes_since(self, version: int, *, limit: int = 5000) -> Changes:
        with self._write_lock:
            changes = self._sidecar.changes_since(version, limit=limit)
            by_tenant: dict[str | None, list[str]] = {}
            for record in changes.records:
                by_tenant.setdefault(record.tenant, []).append(record.id)
            vectors = {
                (t, rid): v
                for t, ids in by_tenant.items()
                for rid, v in self._engine_vectors(t, ids).items()
            }
            changes.records = [
                replace(r, vector=vectors[(r.tenant, r.id)]) for r in changes.records
            ]
            return changes

    def apply_changes(self, changes: Changes) -> int:
        vectors = (
            check_records(changes.records, self.dim, limits=self.limits)[1]
            if changes.records
            else None
        )
        with self._write_lock:
            target = changes.upto if changes.full else max(self.version, changes.upto)
            if changes.since > self.version and not changes.full:
                raise ReplicaGapError(self.version, changes.since + 1)
            self._bump(target, None if vectors is None else int(vectors.shape[1]))
            if changes.full:
                self._engine_clear()
            if changes.tombstones:
                self._engine_delete([(t, i) for t, i, _ in changes.tombstones])
            if changes.records:
                self._engine_upsert(changes.records)
            stripped = replace(changes, records=[replace(r, vector=None) for r in changes.records])
            return self._sidecar.apply_changes(stripped)

    # ---- reads ---------------------------------------------------------------------------

    def get(
        self, ids: Sequence[str], *, tenant: str | None = None, include_vectors: bool = False
    ) -> list[Record]:
        found = self._sidecar.get(ids, tenant=tenant)
        if not include_vectors or not found:
            return found
        vectors = self._engine_vectors(tenant, [r.id for r in found])
        return [replace(r, vector=vectors.get(r.id)) for r in found]

    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        return self._sidecar.count(filter=filter, tenant=tenant)

    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        return self._sidecar.ids(filter=filter, tenant=tenant)

    def tenants(self) -> list[str | None]:
        return self._sidecar.tenants()

    def search(self, request: SearchRequest, *, stats: LexicalStats | None = None) -> ShardAnswer:
        request.require_query()
        answer = ShardAnswer(records=ShardRecords(self, request.tenant))
        if request.runs_dense:
            vector = check_vector(request.vector, self.dim, "query vector")
            if self.dim is None or self._sidecar.count(tenant=request.tenant) == 0:
                answer.dense = Leg.empty()
            else:
                answer.dense = self._engine_dense(
                    vector, request.depth, request.filter, request.tenant
                )
        if request.runs_lexical:
            # A lexical-only request returns k candidates: keep the hybrid depth. When the
            # legs fill, the sidecar also scores the engine's dense candidates on BM25.
            fill = request.fills_legs and answer.dense is not None
            lexical = self._sidecar.search(
                request.replace(mode=SearchMode.LEXICAL, vector=None, mmr=None, k=request.depth),
                stats=stats,
                also=list(answer.dense.ids) if fill and answer.dense is not None else (),
            )
            answer.lexical = lexical.lexical
            if fill and answer.dense is not None and answer.lexical is not None:
                answer.dense = self._fill_dense(answer.dense, answer.lexical, request)
        return answer

    def _fill_dense(self, dense: Leg, lexical: Leg, request: SearchRequest) -> Leg:
        """Cosine similarity of the lexical candidates the engine's dense leg did not
        return, from their stored vectors (one engine read)."""
        have = set(dense.ids)
        only = [rid for rid in lexical.ids if rid not in have]
        if not only:
            return replace(dense, ceiling=1.0)
        found = self.get(only, tenant=request.tenant, include_vectors=True)
        query = np.asarray(request.vector, dtype=np.float32)
        query = query / np.linalg.norm(query)
        extra = {}
        for record in found:
            if record.vector is not None:
                vector = np.asarray(record.vector, dtype=np.float32)
                extra[record.id] = float(vector @ query / np.linalg.norm(vector))
        return replace(dense, ceiling=1.0, extra=extra)

    def analyze(self, text: str) -> list[str]:
        return self._sidecar.analyze(text)

    def lexical_stats(self, terms: Sequence[str], *, tenant: str | None = None) -> LexicalStats:
        return self._sidecar.lexical_stats(terms, tenant=tenant)

    def read_setting(self, key: str) -> str | None:
        return self._engine_state().get(f"user.{key}")

    def write_setting(self, key: str, value: str) -> None:
        with self._write_lock:
            state = self._engine_state()
            state[f"user.{key}"] = value
            self._engine_put_state(state)

    def checkpoint(self) -> None:
        self._sidecar.checkpoint()

    def optimize(self) -> int:
        return self._sidecar.optimize()

    def close(self) -> None:
        self._sidecar.close()
