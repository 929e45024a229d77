"""The caches a HybridStore consults: query embeddings, results, similar queries."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ragkit.cache import CacheBackend, MemoryCache, SafeCache, digest
from ragkit.embeddings import Embedder
from ragkit.request import SearchRequest
from ragkit.schema import Hit, Record, SearchMode, SearchResult


@dataclass(frozen=True, slots=True)
class CacheSlot:
    """Where a result goes: its key and its bucket for similar queries, both under the
    store state read before the search."""

    key: str
    bucket: str


@dataclass
class CacheStats:
    hits: dict[str, int] = field(
        default_factory=lambda: {"embedding": 0, "result": 0, "semantic": 0}
    )
    misses: dict[str, int] = field(default_factory=lambda: {"embedding": 0, "result": 0})

    def ratio(self, kind: str) -> float:
        total = self.hits.get(kind, 0) + self.misses.get(kind, 0)
        return self.hits.get(kind, 0) / total if total else 0.0


def _result_to_json(result: SearchResult) -> bytes:
    return json.dumps(
        {
            "mode": result.mode.value,
            "partial": result.partial,
            "missing": result.missing_shards,
            "scale": result.scale,
            "hits": [
                [
                    h.record.id,
                    h.record.text,
                    h.record.metadata,
                    h.record.tenant,
                    h.score,
                    h.dense_score,
                    h.dense_rank,
                    h.lexical_score,
                    h.lexical_rank,
                ]
                for h in result.hits
            ],
        },
        ensure_ascii=False,
    ).encode()


def _result_from_json(raw: bytes) -> SearchResult:
    data = json.loads(raw)
    hits = [
        Hit(Record(rid, text, meta, None, tenant), score, ds, dr, ls, lr)
        for rid, text, meta, tenant, score, ds, dr, ls, lr in data["hits"]
    ]
    return SearchResult(
        hits, SearchMode(data["mode"]), data["partial"], list(data["missing"]), scale=data["scale"]
    )


class StoreCaches:
    """Embedding, result and semantic caches for one store (``namespace``: its identity).

    ``state`` reads the store's current ``state_key``, its identity and generation (``None``:
    unknown, do not cache): results are filed under it, so neither another store (a copied or
    restored directory included) nor a later state of this one is ever answered from them."""

    def __init__(
        self,
        embedder: Embedder,
        namespace: str,
        state: Callable[[], str | None],
        *,
        backend: CacheBackend | None,
        query_embeddings: bool,
        results: bool,
        result_ttl_s: float | None,
        semantic_threshold: float | None,
        semantic_max_entries: int = 2000,
    ) -> None:
        self.embedder = embedder
        self.namespace = namespace
        self.state = state
        shared = SafeCache(backend) if backend is not None else None
        self.embedding_cache = (
            shared
            if shared is not None
            else (SafeCache(MemoryCache(10_000)) if query_embeddings else None)
        )
        self.result_cache = (shared or SafeCache(MemoryCache(10_000))) if results else None
        self.document_cache = shared  # passages only with a shared backend: ingest is large
        self.result_ttl_s = result_ttl_s
        self.semantic_threshold = semantic_threshold
        self._semantic: dict[str, list[tuple[NDArray[np.float32], str]]] = {}
        self._semantic_max = semantic_max_entries
        self._lock = threading.Lock()
        self.stats = CacheStats()

    # ---- embeddings -----------------------------------------------------------------------

    def _embedding_key(self, text: str) -> str:
        return "emb:" + digest(self.embedder.model_id, str(self.embedder.dim), text)

    def query_vector(self, text: str) -> tuple[NDArray[np.float32], bool]:
        """The query's vector and whether it came from the cache."""
        cache = self.embedding_cache
        if cache is not None:
            raw = cache.get(self._embedding_key(text))
            if raw is not None:
                self.stats.hits["embedding"] += 1
                return np.frombuffer(raw, dtype=np.float32).copy(), True
            self.stats.misses["embedding"] += 1
        vector = np.asarray(self.embedder.embed_query(text), dtype=np.float32)
        if cache is not None:
            cache.set(self._embedding_key(text), vector.tobytes())
        return vector, False

    def _cached_vectors(
        self,
        cache: SafeCache | None,
        kind: str,
        texts: Sequence[str],
        embed: Callable[[Sequence[str]], NDArray[np.float32]],
    ) -> NDArray[np.float32]:
        """Vectors for ``texts``, embedding (in one batch) only those not in ``cache``."""
        if cache is None:
            return np.asarray(embed(texts), dtype=np.float32)
        keys = [
            f"{kind}:" + digest(self.embedder.model_id, str(self.embedder.dim), t) for t in texts
        ]
        found: dict[int, NDArray[np.float32]] = {}
        for i, key in enumerate(keys):
            raw = cache.get(key)
            if raw is not None:
                found[i] = np.frombuffer(raw, dtype=np.float32).copy()
        missing = [i for i in range(len(texts)) if i not in found]
        self.stats.hits["embedding"] += len(found)
        self.stats.misses["embedding"] += len(missing)
        if missing:
            fresh = embed([texts[i] for i in missing])
            for i, vector in zip(missing, fresh):
                found[i] = np.asarray(vector, dtype=np.float32)
                cache.set(keys[i], found[i].tobytes())
        return np.vstack([found[i] for i in range(len(texts))])

    def query_vectors(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._cached_vectors(self.embedding_cache, "emb", texts, self.embedder.embed_queries)

    def document_vectors(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Passage vectors, reusing cached ones (only with a shared cache backend)."""
        return self._cached_vectors(
            self.document_cache, "doc", texts, self.embedder.embed_documents
        )

    # ---- results --------------------------------------------------------------------------

    def _request_key(self, request: SearchRequest, vector_given: bool, state: str) -> str:
        """The full request: options, text, the model, and the vector when the caller gave
        one (a vector computed from the text by the store's embedder adds nothing)."""
        vector = digest(request.vector_bytes().hex()) if vector_given else None
        query = json.dumps([request.text, vector, self.embedder.model_id])
        return "res:" + digest(self.namespace, state, request.options_json(), query)

    def _bucket(self, request: SearchRequest, state: str) -> str:
        """Requests whose results a similar query may share: every option equal."""
        return digest(self.namespace, state, request.options_json())

    def lookup(
        self, request: SearchRequest, vector_given: bool
    ) -> tuple[SearchResult | None, CacheSlot | None]:
        """A cached result (exact request, else a similar query) and where to store a fresh
        one: under the state read now, before the search runs, so a result computed while a
        write lands is filed under the older state and never served after it."""
        cache = self.result_cache
        if cache is None:
            return None, None
        state = self.state()
        if state is None:  # the store cannot tell: never cache
            return None, None
        key = self._request_key(request, vector_given, state)
        slot = CacheSlot(key, self._bucket(request, state))
        raw = cache.get(key)
        if raw is not None:
            self.stats.hits["result"] += 1
            return _result_from_json(raw), slot
        if self.semantic_threshold is not None and request.vector is not None:
            similar = self._similar(slot.bucket, request.vector)
            if similar is not None:
                raw = cache.get(similar)
                if raw is not None:
                    self.stats.hits["semantic"] += 1
                    return _result_from_json(raw), slot
        self.stats.misses["result"] += 1
        return None, slot

    def _similar(self, bucket: str, vector: NDArray[np.float32]) -> str | None:
        with self._lock:
            entries = self._semantic.get(bucket, [])
        if not entries:
            return None
        unit = vector / np.linalg.norm(vector)
        sims = np.vstack([v for v, _ in entries]) @ unit
        best = int(np.argmax(sims))
        threshold = self.semantic_threshold or 1.0
        return entries[best][1] if sims[best] >= threshold else None

    def store(self, slot: CacheSlot | None, result: SearchResult, request: SearchRequest) -> None:
        cache = self.result_cache
        if cache is None or slot is None or result.partial:
            return  # a partial answer is never cached: the next search may be complete
        cache.set(slot.key, _result_to_json(result), self.result_ttl_s)
        if self.semantic_threshold is not None and request.vector is not None:
            vector = request.vector
            with self._lock:
                entries = self._semantic.setdefault(slot.bucket, [])
                entries.append((vector / np.linalg.norm(vector), slot.key))
                del entries[: max(0, len(entries) - self._semantic_max)]
