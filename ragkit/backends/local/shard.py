"""LocalShard: the embedded default backend (one directory, no server)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

from ragkit._rowids import RowIds
from ragkit._validation import check_records, check_tenant, check_vector, unique_ids
from ragkit.analysis import Analyzer
from ragkit.backends.base import (
    Capabilities,
    ReplicaGapError,
    ReplicaShard,
    WriteAck,
    WriteBatch,
    position_order,
)
from ragkit.backends.local import _kernels as kernels
from ragkit.backends.local._checkpoints import Checkpoints
from ragkit.backends.local._directory import LOG_FILE, adopt_store, check_store_directory
from ragkit.backends.local._following import Following
from ragkit.backends.local._indexes import NO_ROWS, ShardIndexes
from ragkit.backends.local._records import (
    DEFAULT_ROW_CACHE_BYTES,
    Closed,
    NewRow,
    RecordLog,
    Removed,
    StoredRow,
)
from ragkit.backends.local._replica import ReplicaSide, stored_record
from ragkit.errors import InvalidInputError, StaleWriteError, StoreError
from ragkit.filters import Filter
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.request import SearchRequest
from ragkit.schema import Leg, LexicalStats, Record, RecordSource, ShardAnswer
from ragkit.tracing import stage

log = logging.getLogger(__name__)


def _cache_bytes(megabytes: float) -> int:
    if isinstance(megabytes, bool) or not isinstance(megabytes, int | float) or megabytes < 0:
        raise InvalidInputError(
            f"record_cache_mb={megabytes!r}: expected a number of megabytes >= 0 (0: no cache)"
        )
    return int(megabytes * 2**20)


class _LocalRecords(RecordSource):
    """The records behind a LocalShard answer. Hits whose ids are still rows of the index
    the search ran on are read by doc number; anything else by id."""

    def __init__(self, shard: LocalShard, tenant: str | None) -> None:
        self._shard = shard
        self._tenant = tenant
        self._indexes = shard._ix

    def fetch(self, ids: Sequence[str], *, vectors: bool = False) -> dict[str, Record]:
        if isinstance(ids, RowIds) and ids.names is self._indexes.rows.ids:
            found = self._shard.records_at(ids.rows, self._indexes, self._tenant, vectors)
            if found is not None:
                return found
        records = self._shard.get(list(ids), tenant=self._tenant, include_vectors=vectors)
        return {r.id: r for r in records}


#: settings key prefix of the positions fenced writes recorded (``WriteBatch.fence``)
FENCE_PREFIX = "fence:"


class LocalShard(Following, Checkpoints, ReplicaSide, ReplicaShard):
    """A shard in one directory: SQLite (WAL) as the source of truth, hnswlib + numpy for
    the dense leg, a BM25 inverted index for the lexical leg, columnar metadata for filters.

    Every write is one SQLite transaction with the next version number; the indexes are
    derived, checkpointed to a versioned directory (``DIR/checkpoint-<seq>-<token>/``) with
    the log position they cover, and brought up to date from SQLite on open, so a crash
    loses no acknowledged write and never needs a manual repair. Directory locking and
    following other writers live in ``_following``, loading, checkpoints and optimize in
    ``_checkpoints``; this class keeps identity, reads, writes and search.

    Setup:
        .. code-block:: bash

            pip install ragkit

    Key init args:
        path: the directory (``None``: in memory, nothing persisted).
        exact_threshold: live rows (or rows left by a filter) up to which dense search is an
            exact scan; above it HNSW is used (default 10,000).
        hnsw_m, ef_construction, ef_search: HNSW graph parameters.
        bm25_k1, bm25_b: BM25 parameters (Lucene defaults 1.2 / 0.75).
        checkpoint_every: log entries between automatic index checkpoints.
        dense: ``False`` keeps no vectors (the lexical sidecar of a vector-only engine, such
            as ``ChromaShard``): no dense leg, records come back without vectors.
        read_only: look at a directory another process writes, without its lock.
        shared: let several processes write this directory (each opens it with
            ``shared=True``): writes take a directory-wide writer lock in turn, and every
            read first catches the indexes up with what the others committed (one SQLite
            read when nothing changed).
        record_cache_mb: memory for the text and metadata of recently returned hits, so a
            hit seen before is not read from SQLite again (default 32; 0 turns it off).
        text_fields: metadata fields indexed as text fields of their own (``"title"``,
            ``"section"``), so a search's ``field_weights`` can weigh a match in them
            against one in the record's text (BM25F; the record's text is the field
            ``"text"``). The store keeps them: ``None`` (the default) opens it with the
            ones it has (none for a new store); others change them, and the indexes are
            rebuilt once, from SQLite.

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            from ragkit.backends import LocalShard
            store = HybridStore(backend=LocalShard("./my-shard"))
    """

    capabilities = Capabilities(
        native_hybrid=False, global_stats=True, fenced_writes=True, text_fields=True
    )

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        exact_threshold: int = 10_000,
        hnsw_m: int = 16,
        ef_construction: int = 64,
        ef_search: int = 128,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        checkpoint_every: int = 100_000,
        synchronous: str = "NORMAL",
        num_threads: int = 2,
        dense: bool = True,
        create: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        read_only: bool = False,
        shared: bool = False,
        record_cache_mb: float = DEFAULT_ROW_CACHE_BYTES / 2**20,
        text_fields: Sequence[str] | None = None,
    ) -> None:
        if read_only and path is None:
            raise InvalidInputError("read_only=True needs a store directory (path)")
        if shared and (path is None or read_only):
            raise InvalidInputError(
                "shared=True needs a store directory (path) opened for writing (not read_only)"
            )
        self.read_only = read_only
        self.shared = shared
        self.path = Path(path) if path is not None else None
        self.name = name or (str(self.path) if self.path else "memory")
        self._dense_args: dict[str, Any] = {
            "exact_threshold": exact_threshold,
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "num_threads": num_threads,
        }
        self._bm25 = (bm25_k1, bm25_b)
        requested_fields = None if text_fields is None else _check_text_fields(text_fields)
        self.text_fields: tuple[str, ...] = ()
        self.keeps_vectors = dense
        self.checkpoint_every = checkpoint_every
        self.limits = limits
        self._lock = threading.RLock()
        self._lock_file: Any = None
        self._writer_file: Any = None  # shared mode: the directory-wide writer lock
        self._writer_depth = 0
        self._applied = 0  # the log seq the indexes hold every write up to
        if self.path is not None:
            check_store_directory(self.path, create=create and not read_only)
            if not read_only:
                self._acquire_dir_lock()
        self._indexer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragkit-dense")
        try:
            kernels.warm()
            self._log: RecordLog = RecordLog(
                self.path / LOG_FILE if self.path else None,
                synchronous=synchronous,
                read_only=read_only,
                cache_bytes=_cache_bytes(record_cache_mb),
            )
            if self.path is not None and not read_only:
                adopt_store(self.path, self._log)
            self.text_fields = self._kept_text_fields(requested_fields)
            self._analyzer = Analyzer()
            self._dim: int | None = None
            self._ix = self._fresh_indexes()
            with self._exclusive(catch_up=False):
                self._log.reload_counters()
                self._open()
        except BaseException:
            self._release()
            raise

    def _kept_text_fields(self, requested: tuple[str, ...] | None) -> tuple[str, ...]:
        """The text fields the store keeps (``requested`` replaces them, unless read-only:
        then they hold for this process only)."""
        stored_json = self._log.setting(_TEXT_FIELDS_SETTING)
        stored = tuple(json.loads(stored_json)) if stored_json else ()
        if requested is None:
            return stored
        if requested != stored and not self.read_only:
            self._log.set_setting(_TEXT_FIELDS_SETTING, json.dumps(list(requested)))
        return requested

    @property
    def store_id(self) -> str:
        """A stable identity kept in the store (caches are keyed by it, not by the path)."""
        return self._log.store_id

    @property
    def generation(self) -> int:
        """Moves with every write, whoever made it: the version, read from SQLite."""
        return self._log.read_version()

    @property
    def state_key(self) -> str:
        """The id, the version and the random token of the write that made it (see
        ``_records``): a copy of the directory takes a new id when it is opened, and two
        stores that write the same number of times still differ by their tokens."""
        return f"{self._log.store_id}:{self._log.state_key()}"

    # ---- lifecycle -----------------------------------------------------------------------

    def _fresh_indexes(self) -> ShardIndexes:
        return ShardIndexes(
            self._analyzer,
            dense_args=self._dense_args if self.keeps_vectors else None,
            bm25=self._bm25,
            indexer=self._indexer,
            text_fields=self.text_fields,
        )

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(
                f"{self.path} is open read-only; open it without read_only=True to change it"
            )

    def close(self) -> None:
        """Checkpoint the indexes and release the directory; any later call is a clear
        ``StoreError``."""
        with self._lock:
            if isinstance(self._log, Closed):
                return
            with self._exclusive():
                self._close_indexes()
            self._release()

    def _release(self) -> None:
        log_ = getattr(self, "_log", None)
        if isinstance(log_, RecordLog):
            log_.close()
        # Every later use of the log is a clear StoreError (instead of AttributeError).
        self._log = cast(RecordLog, Closed(self.name))
        self._ix = cast(ShardIndexes, Closed(self.name))
        self._indexer.shutdown()
        self._release_locks()

    # ---- writes --------------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        if self._dim is None:  # fixed by the first write: read once, not on every search
            value = self._log.setting("dim")
            self._dim = int(value) if value is not None else None
        return self._dim

    @property
    def version(self) -> int:
        return self._log.version

    @property
    def horizon(self) -> int:
        return int(self._log.setting("horizon") or 0)

    def _commit(
        self,
        rows: Sequence[NewRow],
        deletes: Sequence[tuple[str | None, str, int]],
        version: int,
        *,
        settings: dict[str, str] | None = None,
        wipe: bool = False,
    ) -> list[Removed]:
        docs, removed = self._log.write(
            rows, deletes, version=version, settings=settings, wipe=wipe
        )
        self._ix.remove(removed)
        self._ix.append(
            [
                StoredRow(doc, r.id, r.tenant, r.text, r.metadata, r.vector, r.version)
                for doc, r in zip(docs, rows)
            ]
        )
        self._applied = self._log.seq
        self._maybe_checkpoint()
        return removed

    def write(self, batch: WriteBatch, *, version: int | None = None) -> WriteAck:
        self._check_writable()
        payloads, vectors = self._check_records(batch.upserts) if batch.upserts else ([], None)
        tenant = check_tenant(batch.tenant)
        with self._exclusive():
            current = self._log.version
            if version is not None and version <= current:
                return WriteAck(current, (), False)  # already applied: delivery is at-least-once
            if version is not None and version > current + 1:
                raise ReplicaGapError(current, version)
            deleted: list[str] = []
            if batch.deletes is not None or batch.delete_filter is not None:
                wanted = self.delete_targets(batch.deletes, batch.delete_filter, tenant)
                if version is None:  # the primary resolves; replicas apply what it resolved
                    wanted = [r.id for r in self._log.existing([(tenant, i) for i in wanted])]
                deleted = wanted
            fences = self._fences(batch.fence)
            if version is None and not batch.upserts and not deleted and not fences:
                return WriteAck(current, (), False)
            new_version = current + 1 if version is None else version
            rows = self._new_rows(batch.upserts, payloads, vectors, [new_version] * len(payloads))
            deletes = [(tenant, i, new_version) for i in deleted]
            settings = {**(self._dim_setting(vectors) or {}), **fences}
            self._commit(rows, deletes, new_version, settings=settings)
            return WriteAck(new_version, tuple(deleted), True)

    def _fences(self, fence: tuple[tuple[str, str], ...]) -> dict[str, str]:
        """The settings that record ``fence`` (under the writer lock: what another process
        committed is already visible); ``StaleWriteError`` when any key holds a position at
        or past the one asked."""
        stale, out = [], {}
        for key, position in fence:
            held = self._log.setting(FENCE_PREFIX + key)
            if held is not None and position_order(held) >= position_order(position):
                stale.append(key)
            out[FENCE_PREFIX + key] = position
        if stale:
            raise StaleWriteError(stale)
        return out

    def _check_records(self, records: Sequence[Record]) -> tuple[list[str], Any]:
        if self.keeps_vectors:
            return check_records(records, self.dim, limits=self.limits)
        return check_records(records, None, vectors=False, limits=self.limits)[0], None

    def _new_rows(
        self,
        records: Sequence[Record],
        payloads: Sequence[str],
        vectors: Any,
        versions: Sequence[int],
    ) -> list[NewRow]:
        return [
            NewRow(
                r.id,
                r.tenant,
                r.text,
                payload,
                b"" if vectors is None else bytes(vectors[i].tobytes()),
                version,
            )
            for i, (r, payload, version) in enumerate(zip(records, payloads, versions))
        ]

    def _dim_setting(self, vectors: Any) -> dict[str, str] | None:
        if vectors is None or self.dim is not None:
            return None
        return {"dim": str(vectors.shape[1])}

    # ---- reads ---------------------------------------------------------------------------

    def get(
        self, ids: Sequence[str], *, tenant: str | None = None, include_vectors: bool = False
    ) -> list[Record]:
        """Records of ``tenant`` for ``ids`` in the given order; unknown ids are skipped."""
        wanted = unique_ids(ids)
        found = self._log.get(wanted, check_tenant(tenant), vectors=include_vectors)
        return [stored_record(found[i], include_vectors) for i in wanted if i in found]

    def tenants(self) -> list[str | None]:
        self._follow()
        with self._lock:
            return list(self._ix.rows.tenants)

    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        check_tenant(tenant)
        self._follow()
        with self._lock:
            mask = self._ix.mask(filter, tenant)
            names = self._ix.rows.ids
            return [names[r] for r in np.flatnonzero(mask.allowed).tolist()]

    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        check_tenant(tenant)
        self._follow()
        with self._lock:
            return self._ix.mask(filter, tenant).count

    def search(
        self,
        request: SearchRequest,
        *,
        stats: LexicalStats | None = None,
        also: Sequence[str] = (),
    ) -> ShardAnswer:
        """Both legs of ``request`` under the shard lock, and for a calibrated hybrid search
        without MMR the final ranking too (``ShardAnswer.ranked``: fused here on row numbers,
        with the same result as fusing the legs, ``ShardIndexes.ranked``). The legs are
        turned into record ids when first read (a store answered by ``ranked`` never reads
        them), from the indexes the search ran on. ``also``: ids another engine found (a
        sidecar's dense candidates) to score on these legs too (``Leg.extra``)."""
        request.require_query()
        query = None
        if request.runs_dense:
            if not self.keeps_vectors:
                raise InvalidInputError(f"{self.name} keeps no vectors: it has no dense leg")
            query = request.vector
            if query is None or query.shape != (self.dim,) or query.dtype != np.float32:
                query = check_vector(query, self.dim, "query vector")  # (else: checked)
        self._follow()
        depth = request.depth
        dense = lexical = None
        with self._lock:
            ix = self._ix
            mask = ix.mask(request.filter, request.tenant, request.required)
            if query is not None:
                with stage("search_dense", **{"ragkit.backend": self.name}) as span:
                    dense = ix.dense_candidates(query, depth, mask)
                    span.set_attribute("ragkit.hits", len(dense.rows))
            if request.runs_lexical and request.text is not None:
                with stage("search_lexical", **{"ragkit.backend": self.name}) as span:
                    lexical = ix.lexical_candidates(
                        request.text, depth, mask, request.tenant, stats, request.field_weights
                    )
                    span.set_attribute("ragkit.hits", len(lexical[1]))
            also_rows = NO_ROWS
            if also:
                found = self._log.existing([(request.tenant, rid) for rid in also])
                also_rows = ix.rows.rows_of([r.doc for r in found])
                also_rows = also_rows[mask.allowed[also_rows]]
            ranked = None
            if (
                dense is not None
                and dense.unit is not None
                and lexical is not None
                and request.mmr is None
                and request.fills_legs
            ):
                with stage("fuse", **{"ragkit.fusion": request.fusion.value}):
                    ranked = ix.ranked(dense, lexical, request.alpha, request.k)
        fill = request.fills_legs or bool(also)

        def legs() -> tuple[Leg | None, Leg | None]:
            with self._lock:  # the indexes the search ran on (kept if optimize replaced them)
                return ix.legs(dense, lexical, fill=fill, also=also_rows)

        return ShardAnswer(ranked=ranked, records=_LocalRecords(self, request.tenant), legs=legs)

    def analyze(self, text: str) -> list[str]:
        return self._analyzer.tokens(text)

    def lexical_stats(self, terms: Sequence[str], *, tenant: str | None = None) -> LexicalStats:
        self._follow()
        with self._lock:
            return self._ix.lexical_stats(terms, check_tenant(tenant))

    def read_setting(self, key: str) -> str | None:
        return self._log.setting(f"user.{key}")

    def write_setting(self, key: str, value: str) -> None:
        self._check_writable()
        self._log.set_setting(f"user.{key}", value)


#: the store's text fields (a JSON list), kept in its settings
_TEXT_FIELDS_SETTING = "text_fields"


def _check_text_fields(names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise InvalidInputError(
            f"text_fields must be a list of metadata field names, got {names!r:.80}"
        )
    if "text" in names or len(set(names)) != len(names):
        raise InvalidInputError(
            f"text_fields {list(names)!r:.80}: each name once, and not 'text' (the record's "
            "own text is that field)"
        )
    return tuple(names)
