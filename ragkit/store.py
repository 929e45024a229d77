"""HybridStore: the one object users hold (see docs/architecture.md, "The flow of one query")."""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypedDict, Unpack

import numpy as np
from numpy.typing import NDArray

from ragkit import tracing
from ragkit._answer import shape_answer
from ragkit._async import in_thread
from ragkit._opening import open_path, resolve_embedder
from ragkit._pipeline import Pipeline
from ragkit._validation import (
    as_list,
    check_dim,
    check_ids,
    check_query,
    check_record_list,
    check_tenant,
    check_vectors,
    metadata_json,
    unique_ids,
)
from ragkit.backends.base import ReplicaShard, Searcher, Shard, WriteBatch, position_order
from ragkit.cache import CacheBackend
from ragkit.cache._store import StoreCaches
from ragkit.decay import Decay
from ragkit.embeddings import Embedder
from ragkit.errors import InvalidInputError, StoreError
from ragkit.filters import Filter, parse_filter
from ragkit.fusion import DEFAULT_RRF_K, Fusion
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.query_syntax import QuerySyntax
from ragkit.request import DEFAULT_CANDIDATES, TITLE_FIELD_WEIGHTS, SearchRequest
from ragkit.schema import Record, SearchMode, SearchResult
from ragkit.tracing import cache_outcome, stage

WRITE_BATCH = 4096
FilterSpec = dict[str, Any] | Filter | None


class SearchOptions(TypedDict, total=False):
    """The options every search method takes (the fields of ``SearchRequest`` other than the
    query; ``None`` means the store's default). A keyword not listed here is a ``TypeError``,
    never silently ignored."""

    k: int
    mode: str | SearchMode | None
    filter: FilterSpec
    fusion: str | Fusion | None
    alpha: float | None
    candidates: int | None
    mmr: float | None
    tenant: str | None
    rrf_k: int | None
    field_weights: dict[str, float] | None
    group_by: str | None
    group_size: int
    expand: int
    highlight: bool
    decay: dict[str, Any] | Decay | None
    rerank: Any
    query_syntax: str | QuerySyntax


class HybridStore:
    """Hybrid BM25 + vector search over any ragkit backend, with real offline embeddings.

    Setup:
        .. code-block:: bash

            pip install torch==2.13.0 && pip install "ragkit[local]"

    Key init args:
        path: a directory for a persistent store (``None``: in memory).
        embedder: any ``ragkit.embeddings.Embedder``. Default: the one the store was built
            with, or ``LocalEmbedder()`` (all-MiniLM-L6-v2) for a new store.
        backend: a Shard (``LocalShard``, ``ShardedStore``, ``ChromaShard``, ...) instead of
            ``path``.
        text_fields: metadata fields (``"title"``, ``"section"``) indexed as text fields of
            their own for BM25F (a store directory or in memory; see ``LocalShard``). The
            store keeps them: ``None`` opens it with the ones it has.
        field_weights: the store's default weights per text field (``{"title": 2.0,
            "text": 1.0}``). ``None``: ``TITLE_FIELD_WEIGHTS`` (title twice, text once) on a
            store that indexes ``title``, else plain BM25 over the record's text;
            ``{"text": 1.0}`` is plain BM25 on any store.
        fusion / alpha / candidates / rrf_k: search defaults (``calibrated``, 0.5, 100, 60;
            ``relative_score`` on a backend without calibrated scores, such as Weaviate).
            Calibrated scores are in [0, 1] and comparable across queries, so a score
            threshold is meaningful (see ``ragkit.fusion``).
        cache, result_cache, semantic_cache_threshold: caches (see ``ragkit.cache``).
        limits: what the store accepts (``ragkit.limits.Limits``).
        create: ``False`` opens an existing store only (a folder without one is an error).
        trust_stored_embedder: rebuild a remote (OpenAI-compatible) embedder or a model path
            recorded in the store directory; off by default, so a directory from elsewhere
            never sends your key or queries anywhere.
        read_only: look at a store another process holds open (searches, gets, counts; any
            write is a ``StoreError``). It answers from the state it opened at;
            ``store.backend.refresh()`` catches up.
        shared: let several processes write the store directory at once (every one opens
            it with ``shared=True``; web workers, stream consumers). Writes take turns on a
            directory lock; reads see every committed write.

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            store = HybridStore("./kb")

    Add documents:
        .. code-block:: python

            ids = store.add_texts(
                ["Paris is the capital of France.", "Berlin is the capital of Germany."],
                metadatas=[{"country": "fr"}, {"country": "de"}],
            )

    Delete:
        .. code-block:: python

            store.delete(ids=[ids[0]])
            store.delete(filter={"country": "de"})

    Search:
        .. code-block:: python

            result = store.search("capital of France", k=3)
            for hit in result:
                print(hit.score, hit.dense_rank, hit.lexical_rank, hit.text)

    Search with filter:
        .. code-block:: python

            store.search("capital", filter={"country": {"$in": ["fr", "de"]}})

    Search with score:
        .. code-block:: python

            hit = store.search("capital", mode="lexical", k=1)[0]
            hit.score, hit.lexical_score          # BM25

    Async:
        .. code-block:: python

            result = await store.asearch("capital of France")

    Use as retriever:
        .. code-block:: python

            from ragkit.retrievers.langchain import HybridRetriever   # langchain extra
            retriever = HybridRetriever(store=store, k=4)
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        embedder: Embedder | None = None,
        backend: Shard | None = None,
        fusion: str | Fusion | None = None,
        alpha: float = 0.5,
        candidates: int | None = None,
        rrf_k: int = DEFAULT_RRF_K,
        text_fields: Sequence[str] | None = None,
        field_weights: dict[str, float] | None = None,
        cache: CacheBackend | None = None,
        query_embedding_cache: bool = True,
        result_cache: bool = False,
        result_ttl_s: float | None = 300.0,
        semantic_cache_threshold: float | None = None,
        cache_namespace: str | None = None,
        record_query_text: bool = False,
        limits: Limits = DEFAULT_LIMITS,
        create: bool = True,
        trust_stored_embedder: bool = False,
        read_only: bool = False,
        shared: bool = False,
    ) -> None:
        if path is not None and backend is not None:
            raise InvalidInputError("pass either path or backend, not both")
        if backend is not None and text_fields:
            raise InvalidInputError(
                "text_fields are indexed by the backend: pass LocalShard(text_fields=...) as "
                "backend, or text_fields with a path"
            )
        self.limits = limits
        self._closed = False
        # The store's defaults for the options a caller leaves out, validated up front.
        self._defaults = SearchRequest(
            fusion=fusion or Fusion.CALIBRATED,  # type: ignore[arg-type]  # strings accepted
            alpha=alpha,
            rrf_k=rrf_k,
            candidates=DEFAULT_CANDIDATES if candidates is None else candidates,
            field_weights=field_weights,
        )
        self.backend: Shard = (
            backend
            if backend is not None
            else open_path(
                path,
                create=create,
                limits=limits,
                read_only=read_only,
                shared=shared,
                text_fields=text_fields,
            )
        )
        # Every search runs through one Searcher: the pipeline over the backend's legs, or
        # the backend's own (a served cluster's client runs whole searches in its service).
        self._searcher: Searcher = self.backend.searcher() or Pipeline(self.backend)
        if fusion is None and not self.backend.capabilities.calibrated:
            self._defaults = self._defaults.replace(fusion=Fusion.RELATIVE_SCORE)
        if field_weights is None and "title" in self.text_fields:
            self._defaults = self._defaults.replace(field_weights=dict(TITLE_FIELD_WEIGHTS))
        try:
            self.embedder = resolve_embedder(self.backend, embedder, trusted=trust_stored_embedder)
            backend_ = self.backend
            self.caches = StoreCaches(
                self.embedder,
                cache_namespace or backend_.store_id,
                lambda: backend_.state_key,
                backend=cache,
                query_embeddings=query_embedding_cache,
                results=result_cache,
                result_ttl_s=result_ttl_s,
                semantic_threshold=semantic_cache_threshold,
            )
            self.record_query_text = record_query_text
            self._latencies_ms: deque[float] = deque(maxlen=10_000)
            self._counters = {"searches": 0, "writes": 0}
        except BaseException:
            if backend is None:
                self.backend.close()
            raise

    @property
    def text_fields(self) -> tuple[str, ...]:
        """The metadata fields the backend indexes as text fields of their own (BM25F)."""
        if not self.backend.capabilities.text_fields:
            return ()
        return tuple(getattr(self.backend, "text_fields", ()))

    @property
    def default_fusion(self) -> str:
        return self._defaults.fusion.value

    @property
    def default_alpha(self) -> float:
        return self._defaults.alpha

    @property
    def default_rrf_k(self) -> int:
        return self._defaults.rrf_k

    # ---- writes -------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        tenant: str | None = None,
    ) -> list[str]:
        """Embed and store texts; returns their ids (new UUIDs where ``ids`` is None).

        The whole input is validated before anything is embedded or written. Records are
        written in batches of 4096, each one transaction; an existing id (in ``tenant``) is
        replaced.
        """
        text_list = as_list(texts, "texts")
        metadata_list = None if metadatas is None else as_list(metadatas, "metadatas")
        if metadata_list is not None:
            if len(metadata_list) != len(text_list):
                raise InvalidInputError(
                    f"got {len(metadata_list)} metadatas for {len(text_list)} texts; "
                    "metadatas must hold one dict per text"
                )
            for position, metadata in enumerate(metadata_list):
                if not isinstance(metadata, dict):
                    raise InvalidInputError(
                        f"metadatas[{position}] is {type(metadata).__name__}; "
                        "each metadata must be a dict"
                    )
        id_given = None if ids is None else as_list(ids, "ids")
        if id_given is not None and len(id_given) != len(text_list):
            raise InvalidInputError(
                f"got {len(id_given)} ids for {len(text_list)} texts; ids must hold one per text"
            )
        id_list = (
            check_ids(id_given, limits=self.limits)
            if id_given is not None
            else [uuid.uuid4().hex for _ in text_list]
        )
        records = [
            Record(record_id, text, metadata_list[i] if metadata_list else {}, None, tenant)
            for i, (record_id, text) in enumerate(zip(id_list, text_list))
        ]
        self.upsert(records)
        return id_list

    def upsert(self, records: Sequence[Record]) -> None:
        """Store records, embedding those without a vector. Validated before any write."""
        self._check_open()
        prepared = self._checked(records)
        with stage("write", **{"ragkit.records": len(prepared)}):
            for start in range(0, len(prepared), WRITE_BATCH):
                batch = self._embedded(prepared[start : start + WRITE_BATCH])
                with stage("upsert", **{"ragkit.backend": self.backend.name}):
                    self.backend.upsert(batch)
                self._wrote()

    def _checked(self, records: Sequence[Record]) -> list[Record]:
        """Validated copies of ``records`` (given vectors checked against the embedder)."""
        records = check_record_list(as_list(records, "records"), self.limits)
        prepared: list[Record] = []
        for record in records:
            metadata_json(record.metadata, f"record {record.id!r}", self.limits)
            prepared.append(replace(record, metadata=dict(record.metadata)))
        given = [r for r in prepared if r.vector is not None]
        if given:
            matrix = check_vectors(
                [r.vector for r in given], self.embedder.dim, [r.id for r in given]
            )
            for record, vector in zip(given, matrix):
                record.vector = vector
        return prepared

    def _embedded(self, batch: list[Record]) -> list[Record]:
        missing = [r for r in batch if r.vector is None]
        if missing:
            with stage("embed", **{"ragkit.texts": len(missing)}):
                vectors = self.caches.document_vectors([r.text for r in missing])
            for record, vector in zip(missing, vectors):
                record.vector = vector
        return batch

    def write_fenced(
        self,
        records: Sequence[Record] = (),
        *,
        deletes: Sequence[str] | None = None,
        delete_filter: FilterSpec = None,
        tenant: str | None = None,
        fence: Mapping[str, str],
    ) -> None:
        """Delete (``deletes`` ids and/or those passing ``delete_filter``) then upsert
        ``records``, all of ``tenant``, in one transaction, only if for every key of
        ``fence`` the position the store holds is older than the one given; the positions
        are stored with the write. Otherwise ``StaleWriteError`` (naming the keys) and nothing
        is written. A writer that lost its lease while paused therefore never overwrites
        what a newer writer did. Positions are dash-separated integers (Redis stream ids).
        Needs a backend with ``capabilities.fenced_writes`` (a local store directory)."""
        self._check_open()
        if not self.backend.capabilities.fenced_writes or not isinstance(
            self.backend, ReplicaShard
        ):
            raise StoreError(
                f"the {self.backend.name} backend does not take fenced writes (a local store "
                "directory does)"
            )
        tenant = check_tenant(tenant, self.limits)
        prepared = self._checked(records)
        strays = [r.id for r in prepared if r.tenant != tenant]
        if strays:
            raise InvalidInputError(f"records {strays[:3]} are not of tenant {tenant!r}")
        for key, position in fence.items():
            if not isinstance(key, str) or not key:
                raise InvalidInputError(f"fence keys are non-empty strings, got {key!r}")
            position_order(position)
        with stage("write", **{"ragkit.records": len(prepared), "ragkit.fenced": True}):
            batch = WriteBatch(
                upserts=tuple(self._embedded(prepared)),
                deletes=None if deletes is None else tuple(unique_ids(deletes, limits=self.limits)),
                delete_filter=parse_filter(delete_filter, self.limits),
                tenant=tenant,
                fence=tuple(sorted(fence.items())),
            )
            self.backend.write(batch)
            self._wrote()

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: FilterSpec = None,
        tenant: str | None = None,
    ) -> int:
        """Delete records of ``tenant`` by ids and/or filter; returns how many were deleted."""
        self._check_open()
        wanted = None if ids is None else unique_ids(ids, limits=self.limits)
        flt = parse_filter(filter, self.limits)
        with stage("write", **{"ragkit.operation": "delete"}):
            deleted = self.backend.delete(
                wanted, filter=flt, tenant=check_tenant(tenant, self.limits)
            )
            self._wrote()
            return deleted

    def clear(self, *, tenant: str | None = None) -> int:
        """Delete every record of ``tenant`` (the default tenant when None)."""
        ids = self.backend.ids(tenant=check_tenant(tenant))
        deleted = self.backend.delete(ids, tenant=tenant) if ids else 0
        self._wrote()
        return deleted

    def ids(self, filter: FilterSpec = None, *, tenant: str | None = None) -> list[str]:
        """Ids of the records of ``tenant`` passing ``filter``."""
        self._check_open()
        return self.backend.ids(
            filter=parse_filter(filter, self.limits), tenant=check_tenant(tenant, self.limits)
        )

    def get(
        self, ids: Sequence[str], *, tenant: str | None = None, include_vectors: bool = False
    ) -> list[Record]:
        """Records of ``tenant`` by id, in the order asked; unknown ids are skipped."""
        self._check_open()
        return self.backend.get(
            unique_ids(ids, limits=self.limits),
            tenant=check_tenant(tenant, self.limits),
            include_vectors=include_vectors,
        )

    def count(self, filter: FilterSpec = None, *, tenant: str | None = None) -> int:
        self._check_open()
        return self.backend.count(
            filter=parse_filter(filter, self.limits), tenant=check_tenant(tenant, self.limits)
        )

    # ---- reads --------------------------------------------------------------------------

    def request(
        self,
        query: str | None = None,
        *,
        vector: Sequence[float] | NDArray[np.floating] | None = None,
        k: int = 10,
        mode: str | SearchMode | None = None,
        filter: FilterSpec = None,
        fusion: str | Fusion | None = None,
        alpha: float | None = None,
        candidates: int | None = None,
        mmr: float | None = None,
        tenant: str | None = None,
        rrf_k: int | None = None,
        field_weights: dict[str, float] | None = None,
        group_by: str | None = None,
        group_size: int = 1,
        expand: int = 0,
        highlight: bool = False,
        decay: dict[str, Any] | Decay | None = None,
        rerank: Any = None,
        query_syntax: str | QuerySyntax = QuerySyntax.PLAIN,
    ) -> SearchRequest:
        """A validated ``SearchRequest`` with this store's defaults for the options left out
        (``mode`` defaults to hybrid with text, dense with only a vector)."""
        d = self._defaults
        if mode is None:
            mode = SearchMode.HYBRID if query is not None else SearchMode.DENSE
        request = SearchRequest(  # validated as it is built, against this store's limits
            text=query,
            vector=vector,  # type: ignore[arg-type]
            k=k,
            mode=mode,  # type: ignore[arg-type]  # strings are accepted
            filter=filter,  # type: ignore[arg-type]  # a dict is parsed
            fusion=d.fusion if fusion is None else fusion,  # type: ignore[arg-type]
            alpha=d.alpha if alpha is None else alpha,
            candidates=d.candidates if candidates is None else candidates,
            mmr=mmr,
            tenant=tenant,
            rrf_k=d.rrf_k if rrf_k is None else rrf_k,
            field_weights=d.field_weights if field_weights is None else field_weights,
            group_by=group_by,
            group_size=group_size,
            expand=expand,
            highlight=highlight,
            decay=decay,  # type: ignore[arg-type]  # a dict is parsed
            rerank=rerank,
            query_syntax=query_syntax,  # type: ignore[arg-type]  # strings are accepted
            limits=self.limits,
        )
        if request.vector is not None:
            check_dim(request.vector, self.embedder.dim, "query vector")
        if request.field_weights is not None and not self.backend.capabilities.text_fields:
            raise InvalidInputError(
                f"field_weights needs a backend that indexes text fields (a LocalShard opened "
                f"with text_fields=...); the {self.backend.name} backend scores the record's "
                "text only"
            )
        return request

    def search(self, query: str, **options: Unpack[SearchOptions]) -> SearchResult:
        """Search by text. Options (``SearchOptions``, all keyword-only):

        ``k`` hits (default 10); ``mode``: ``hybrid`` (default), ``dense`` or ``lexical``;
        ``filter`` (see ``ragkit.filters``); ``fusion``: ``calibrated`` (the default),
        ``relative_score``, ``rrf`` or ``dbsf``; ``alpha`` weighs the dense leg (``1 - alpha``
        the lexical leg);
        ``candidates``: hits each leg contributes to fusion; ``mmr``: a lambda in [0, 1] that
        re-ranks the fused candidates for diversity; ``tenant``; ``rrf_k``.

        Shaping the answer: ``group_by`` a metadata field (``"source"``: whole documents;
        ``k`` groups of ``group_size`` hits, in ``result.groups``); ``expand=n``: each hit
        with the ``n`` chunks either side of it (``hit.window``); ``highlight=True``: the
        spans of query terms (``hit.highlights``) and a ``hit.snippet``; ``decay``: a
        recency factor on the score (``ragkit.decay``); ``rerank``: a reranker after fusion
        (``ragkit.rerank``). The query is plain text unless ``query_syntax="simple"``
        (phrases, ``+required``, ``-excluded``, ``OR``: ``ragkit.query_syntax``).
        """
        options.setdefault("mode", SearchMode.HYBRID)
        if not isinstance(query, str):  # (a vector-only search is search_by_vector)
            check_query(query, self.limits)
        return self.run(self.request(query, **options))

    def search_by_vector(
        self,
        vector: Sequence[float] | NDArray[np.floating],
        *,
        query: str | None = None,
        **options: Unpack[SearchOptions],
    ) -> SearchResult:
        """Search with a precomputed query vector; with ``query`` text too, a hybrid search
        (the options are those of ``search``)."""
        return self.run(self.request(query, vector=vector, **options))

    def search_batch(
        self, queries: Sequence[str], **options: Unpack[SearchOptions]
    ) -> list[SearchResult]:
        """Search many queries with the same options (those of ``search``); embeds the
        queries in one batch."""
        if isinstance(queries, str):
            raise InvalidInputError("search_batch takes a list of queries, not a single string")
        options.setdefault("mode", SearchMode.HYBRID)
        requests = [self.request(q, **options) for q in queries]
        if requests and self._needs_embedding(requests[0]):
            with stage("embed", **{"ragkit.texts": len(requests)}):
                vectors = self.caches.query_vectors([r.scored_text or "" for r in requests])
            requests = [r.replace(vector=v) for r, v in zip(requests, vectors)]
        return [self.run(r) for r in requests]

    @staticmethod
    def _needs_embedding(request: SearchRequest) -> bool:
        return request.vector is None and (request.runs_dense or request.mmr is not None)

    def run(self, request: SearchRequest) -> SearchResult:
        """Run a ``SearchRequest`` (see ``request()``): embeds the query text when the request
        needs a vector, consults the result cache, searches the backend."""
        self._check_open()
        started = time.perf_counter()
        attrs: dict[str, Any] = {}
        if tracing.enabled():
            attrs = {
                "ragkit.mode": request.mode.value,
                "ragkit.k": request.k,
                "ragkit.fusion": request.fusion.value,
                "ragkit.alpha": request.alpha,
                "ragkit.filtered": request.filter is not None,
                "ragkit.tenant": request.tenant,
            }
            if self.record_query_text and request.text is not None:
                attrs["ragkit.query"] = request.text
        embedding_hits = self.caches.stats.hits["embedding"]
        vector_given = request.vector is not None
        # What the backend ranks: the answer options (groups, windows, decay, ...) shape
        # its ranking afterwards, here (``ragkit._answer``).
        core = request.core(self.limits)
        shaped = core is not request
        with stage("search", **attrs) as root:
            if self._needs_embedding(core) and core.text is not None:
                with stage("embed") as span:
                    vector, cached = self.caches.query_vector(core.text)
                    cache_outcome(span, "embedding", cached)
                core = core.replace(vector=vector)
            result: SearchResult | None = None
            slot = None
            if self.caches.result_cache is not None:
                with stage("cache.lookup") as span:
                    result, slot = self.caches.lookup(core, vector_given)
                    cache_outcome(span, "result", result is not None)
            cached = result is not None
            if result is None:
                result = self._searcher.run(core)
                self.caches.store(slot, result, core)
            if shaped:
                with stage("answer"):
                    result = shape_answer(self.backend, request, core, result)
            root.set_attribute("ragkit.hits", len(result))
            root.set_attribute("ragkit.partial", result.partial)
        elapsed = (time.perf_counter() - started) * 1000
        result.info = {
            "latency_ms": elapsed,
            "result_cache_hit": cached,
            "embedding_cache_hit": self.caches.stats.hits["embedding"] > embedding_hits,
        }
        self._latencies_ms.append(elapsed)
        self._counters["searches"] += 1
        return result

    def _wrote(self) -> None:
        self._counters["writes"] += 1

    def optimize(self) -> int:
        """Drop deleted and replaced records from the indexes (see ``LocalShard.optimize``;
        it also runs by itself when dead rows dominate). Returns the dead entries dropped."""
        self._check_open()
        return self.backend.optimize()

    def backup(self, dest: str | os.PathLike[str]) -> dict[str, Any]:
        """Write a crash-consistent copy of the store to ``dest`` (absent or an empty
        directory) while writes go on: SQLite's online backup of each record log plus the
        checkpoint it covers, written beside ``dest`` and renamed into place. A local store
        is copied as of one moment; an on-disk sharded store partition by partition, each
        consistent. Open the copy with ``ragkit restore`` (or directly): it takes an
        identity of its own, so caches never mix it with this store. Returns what the
        backup's ``BACKUP.json`` records (store id, version, records, created_at)."""
        self._check_open()
        with stage("backup", **{"ragkit.backend": type(self.backend).__name__}):
            return self.backend.backup(dest)

    abackup = in_thread(backup)

    def stats(self) -> dict[str, Any]:
        """The store (records, tenants, embedder, generation, index state and disk use), then
        this handle's own counters: searches, writes, cache hit ratios and search latency
        percentiles since it opened; shard health for a sharded store."""
        latencies = np.array(self._latencies_ms) if self._latencies_ms else np.zeros(1)
        stats = self.caches.stats
        backend = self.backend
        out: dict[str, Any] = {
            "records": backend.count(),
            "tenants": len(backend.tenants()),
            "embedder": {"model_id": self.embedder.model_id, "dim": self.embedder.dim},
            "generation": backend.generation,
            "backend": type(backend).__name__,
            "searches": self._counters["searches"],
            "writes": self._counters["writes"],
            "cache": {
                "embedding_hit_ratio": stats.ratio("embedding"),
                "result_hit_ratio": stats.ratio("result"),
                "semantic_hits": stats.hits["semantic"],
                "hits": dict(stats.hits),
                "misses": dict(stats.misses),
            },
            "latency_ms": {
                "p50": float(np.percentile(latencies, 50)),
                "p95": float(np.percentile(latencies, 95)),
                "p99": float(np.percentile(latencies, 99)),
            },
        }
        out.update(backend.stats())  # what this kind of backend reports about itself
        return out

    # ---- async twins --------------------------------------------------------------------

    # Each blocking method above in a worker thread (``ragkit._async``).
    aadd_texts = in_thread(add_texts)
    aupsert = in_thread(upsert)
    adelete = in_thread(delete)
    aget = in_thread(get)
    acount = in_thread(count)
    arun = in_thread(run)
    asearch = in_thread(search)
    asearch_by_vector = in_thread(search_by_vector)
    asearch_batch = in_thread(search_batch)

    # ---- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Persist the indexes and release the store's directory; any later call is a
        clear ``StoreError``."""
        self._closed = True
        self.backend.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this HybridStore is closed; open the store again to use it")

    def __enter__(self) -> HybridStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
