"""An engine that runs both legs itself: the base of ``MilvusShard`` and ``QdrantShard``.

The engine keeps everything (vectors, text, metadata, its own lexical index) and answers both
legs; ragkit supplies what makes its answers ragkit's:

- **analysis**: the lexical leg scores ragkit's analyzed terms (``ragkit.analysis``: stop
  words, Snowball stemming), so a query means the same on every backend and query syntax is
  plain text;
- **raw scores, calibrated**: each leg returns raw scores (cosine; BM25, Lucene's IDF,
  ``k1 = 1.2``, ``b = 0.75``) with equal scores ordered by id, the lexical leg with its
  ceiling from the engine's document frequencies, and each leg scores the other's candidates
  (one restricted search per leg), so ``fusion="calibrated"`` works as on a LocalShard;
  ``fusion="native"`` returns the engine's own hybrid ranking instead;
- **filters**: translated to the engine's language through typed fields (``_remote``), or,
  for a filter the engine cannot say exactly, evaluated by ragkit over the tenant's metadata
  and sent as a list of ids (a scan per search: fine for rare filters, slow on big tenants);
- **tenants**: a tenant field the engine filters on, ids namespaced per tenant.

BM25 statistics are the engine's: per tenant on Qdrant (an IDF corpus filter), collection-wide
on Milvus (every tenant's documents count there).
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from ragkit._pipeline import apply_mmr
from ragkit._validation import check_records, check_tenant, check_vector, unique_ids
from ragkit.analysis import Analyzer
from ragkit.backends._remote import (
    FilterPrimitives,
    call_with_retries,
    ordered_leg,
    translate,
    typed_fields,
)
from ragkit.backends.base import Capabilities, Shard, ShardRecords
from ragkit.errors import InvalidInputError, ShardUnavailableError
from ragkit.filters import Filter, matches
from ragkit.fusion import Fusion, single_leg
from ragkit.request import SearchRequest
from ragkit.schema import Leg, LexicalStats, Record, SearchMode, ShardAnswer, Vector

E = TypeVar("E")
Hits = list[tuple[str, float]]
K1, B = 1.2, 0.75
_LOCKS_LOCK = threading.Lock()


class Scope(Generic[E]):
    """Which records a read may see: a tenant, an engine filter expression (or none), and
    an id list when ragkit evaluated (part of) the filter itself or restricts to candidates."""

    __slots__ = ("expr", "ids", "tenant")

    def __init__(self, tenant: str | None, expr: E | None, ids: list[str] | None) -> None:
        self.tenant, self.expr, self.ids = tenant, expr, ids

    def only(self, ids: Sequence[str]) -> Scope[E]:
        keep = list(ids) if self.ids is None else sorted(set(ids) & set(self.ids))
        return Scope(self.tenant, self.expr, keep)


class EngineShard(Shard, Generic[E]):
    """Implement the ``_engine_*`` hooks and ``primitives``; see the module docstring."""

    capabilities = Capabilities(native_hybrid=False, global_stats=False, calibrated=True)
    analyzer = Analyzer()
    primitives: FilterPrimitives[E]
    #: the engine's name, for errors
    engine: ClassVar[str]
    #: does the engine's BM25 count a tenant's documents only (else the collection's)?
    per_tenant_stats: ClassVar[bool]
    #: where the engine is, without credentials
    uri: str
    retries: int = 3
    #: an embedded engine that scans rather than indexes (milvus-lite, Qdrant's local mode)
    _local: bool = False
    #: BM25 statistics read once from an embedded engine, and when they were read
    _vocabulary: dict[str, tuple[int, Counter[str]]] | None = None
    _vocabulary_stamp: tuple[int, int] | None = None
    _writes: int = 0
    client: Any
    _owns_client: bool = False

    @staticmethod
    @abstractmethod
    def _is_transient(exc: BaseException) -> bool:
        """Worth retrying: the engine was unreachable or overloaded for a moment."""

    def _retry(self, call: Any) -> Any:
        """``call()`` with retries and backoff on transient errors; still failing, a
        ``ShardUnavailableError`` naming the engine and its URI."""
        try:
            if not self._local:
                return call_with_retries(call, self._is_transient, self.retries)
            with self._client_lock():  # an embedded engine's client is not thread-safe
                return call_with_retries(call, self._is_transient, self.retries)
        except Exception as exc:
            if self._is_transient(exc):
                raise ShardUnavailableError(f"{self.engine} at {self.uri}: {exc}") from exc
            raise

    def _client_lock(self) -> threading.RLock:
        """One lock per client, shared by every shard using it: held around each call to an
        embedded engine (async twins run in worker threads, and Qdrant's local mode does no
        locking of its own) and around each write (a write reads and writes the settings)."""
        lock = getattr(self.client, "_ragkit_lock", None)
        if lock is None:
            with _LOCKS_LOCK:
                lock = getattr(self.client, "_ragkit_lock", None) or threading.RLock()
                self.client._ragkit_lock = lock
        return lock

    @staticmethod
    def _document(record: Record) -> dict[str, Any]:
        """What every engine stores of a record beside its vectors: the id, tenant (``""``
        for the default one), text, metadata (JSON) and the typed filter fields (``f``)."""
        return {
            "rid": record.id,
            "tenant": record.tenant or "",
            "text": record.text,
            "meta": json.dumps(record.metadata, ensure_ascii=False),
            "f": typed_fields(record.metadata),
        }

    @staticmethod
    def _record(doc: dict[str, Any], vector: Any = None) -> Record:
        """The ``Record`` back from what ``_document`` stored."""
        array = None if vector is None else np.asarray(vector, dtype=np.float32)
        return Record(
            doc["rid"], doc["text"], json.loads(doc["meta"]), array, doc["tenant"] or None
        )

    # ---- the engine hooks ----------------------------------------------------------------

    @abstractmethod
    def _engine_dim(self) -> int | None:
        """The dense dimension of the collection, ``None`` before it exists."""

    @abstractmethod
    def _engine_create(self, dim: int) -> None:
        """Create the collection (on the first write, when the dimension is known)."""

    @abstractmethod
    def _engine_upsert(self, records: Sequence[Record], terms: Sequence[list[str]]) -> None:
        """Insert or replace records (with vectors) and their analyzed terms."""

    @abstractmethod
    def _engine_delete(self, tenant: str | None, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def _engine_get(
        self, tenant: str | None, ids: Sequence[str], vectors: bool
    ) -> dict[str, Record]: ...

    @abstractmethod
    def _engine_count(self, scope: Scope[E]) -> int: ...

    @abstractmethod
    def _engine_ids(self, scope: Scope[E]) -> list[str]: ...

    @abstractmethod
    def _engine_scan(self, scope: Scope[E] | None, fields: list[str]) -> Iterator[dict[str, Any]]:
        """These stored fields of every record in ``scope`` (``None``: the collection)."""

    @abstractmethod
    def _engine_dense(self, vector: Vector, n: int, scope: Scope[E]) -> Hits:
        """Up to ``n`` records by cosine similarity, best first."""

    @abstractmethod
    def _engine_lexical(self, terms: Counter[str], n: int, scope: Scope[E]) -> Hits:
        """Up to ``n`` records by BM25 over their terms (a term's query weight is its
        count), best first."""

    @abstractmethod
    def _engine_hybrid(
        self, vector: Vector, terms: Counter[str], n: int, scope: Scope[E], alpha: float
    ) -> Hits:
        """The engine's own hybrid ranking (``fusion="native"``)."""

    @abstractmethod
    def _engine_doc_freqs(
        self, tenant: str | None, terms: Sequence[str]
    ) -> tuple[int, dict[str, int]]:
        """The document count and each term's document frequency that the engine's BM25
        uses for a search of ``tenant``."""

    @abstractmethod
    def _engine_size(self) -> int:
        """The number of records in the collection, cheaply (for cache invalidation)."""

    @abstractmethod
    def _engine_settings(self) -> dict[str, str]: ...

    @abstractmethod
    def _engine_put_settings(self, settings: dict[str, str]) -> None: ...

    # ---- identity and settings -----------------------------------------------------------

    @property
    def dim(self) -> int | None:
        return self._engine_dim()

    @property
    def store_id(self) -> str:
        """Kept in the engine beside the collection (created on first use)."""
        settings = self._engine_settings()
        if "store_id" not in settings:
            settings["store_id"] = uuid.uuid4().hex
            self._engine_put_settings(settings)
        return settings["store_id"]

    def read_setting(self, key: str) -> str | None:
        return self._engine_settings().get(f"user.{key}")

    def write_setting(self, key: str, value: str) -> None:
        settings = self._engine_settings()
        settings[f"user.{key}"] = value
        self._engine_put_settings(settings)

    def analyze(self, text: str) -> list[str]:
        return self.analyzer.tokens(text)

    # ---- writes and reads ----------------------------------------------------------------

    def upsert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        _, vectors = check_records(records, self.dim, limits=self.limits)
        dim = int(vectors.shape[1])
        checked = [replace(r, vector=v) for r, v in zip(records, vectors)]
        terms = [self.analyze(r.text) for r in records]
        with self._client_lock():  # one write at a time: Qdrant's lengths are read, then written
            if self.dim is None:  # the first write creates the collection
                try:
                    self._engine_create(dim)
                except Exception:
                    if self.dim is None:  # (else another process created it meanwhile)
                        raise
            if self.dim != dim:
                raise InvalidInputError(
                    f"the records have {dim}-d vectors but the collection holds {self.dim}-d ones"
                )
            self._writes += 1
            self._engine_upsert(checked, terms)

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        present = self.present_targets(ids, filter, tenant)
        if present:
            with self._client_lock():
                self._writes += 1
                self._engine_delete(tenant, present)
        return len(present)

    def get(
        self, ids: Sequence[str], *, tenant: str | None = None, include_vectors: bool = False
    ) -> list[Record]:
        wanted = unique_ids(ids, limits=self.limits)
        tenant = check_tenant(tenant)
        if not wanted or self.dim is None:
            return []
        found = self._engine_get(tenant, wanted, include_vectors)
        return [found[i] for i in wanted if i in found]

    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        scope = self._scope(filter, check_tenant(tenant))
        return 0 if scope is None else self._engine_count(scope)

    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        scope = self._scope(filter, check_tenant(tenant))
        return [] if scope is None else self._engine_ids(scope)

    def tenants(self) -> list[str | None]:
        if self.dim is None:
            return []
        seen = {doc["tenant"] or None for doc in self._engine_scan(None, ["tenant"])}
        return sorted(seen, key=lambda t: (t is not None, t or ""))

    def _scope(self, flt: Filter | None, tenant: str | None) -> Scope[E] | None:
        """What a read of ``tenant`` through ``flt`` may see; ``None`` when nothing can."""
        if self.dim is None:
            return None
        if flt is None:
            return Scope(tenant, None, None)
        expr = translate(flt, self.primitives)
        if expr is not None:
            return Scope(tenant, expr, None)
        docs = self._engine_scan(Scope(tenant, None, None), ["rid", "meta"])
        ids = [d["rid"] for d in docs if matches(flt, json.loads(d["meta"]))]
        return Scope(tenant, None, ids) if ids else None

    # ---- search --------------------------------------------------------------------------

    def search(self, request: SearchRequest, *, stats: LexicalStats | None = None) -> ShardAnswer:
        """Each leg the request runs from the engine (raw scores, equal scores by id), or the
        engine's own hybrid ranking for ``fusion="native"``. ``stats`` is ignored: BM25
        statistics are the engine's."""
        request.require_query()
        tenant = check_tenant(request.tenant)
        answer = ShardAnswer(records=ShardRecords(self, tenant))
        vector = (
            check_vector(request.vector, self.dim, "query vector") if request.runs_dense else None
        )
        terms = Counter(self.analyze(request.text or "")) if request.runs_lexical else Counter()
        scope = self._scope(request.filter, tenant)
        hybrid = request.mode is SearchMode.HYBRID
        if hybrid and request.fusion is Fusion.NATIVE:
            assert vector is not None
            n = request.depth if request.mmr is not None else request.k
            hits = (
                [] if scope is None else self._engine_hybrid(vector, terms, n, scope, request.alpha)
            )
            ranked = single_leg(ordered_leg([i for i, _ in hits], [s for _, s in hits], n), None)
            if request.mmr is not None:
                ranked = apply_mmr(answer.records, ranked, request)
            answer.ranked, answer.native = ranked.head(request.k), True
            return answer
        if vector is not None:
            dense = self._ordered(
                lambda n, s: self._engine_dense(vector, n, s), request.depth, scope
            )
            answer.dense = replace(dense, ceiling=1.0)
        if request.runs_lexical:
            lexical = self._ordered(
                lambda n, s: self._engine_lexical(terms, n, s) if terms else [],
                request.depth,
                scope,
            )
            ceiling = None if scope is None else self._ceiling(terms, tenant)
            answer.lexical = replace(lexical, ceiling=ceiling)
        if request.fills_legs and answer.dense is not None and answer.lexical is not None:
            assert scope is not None and vector is not None
            answer.dense, answer.lexical = self._fill(
                answer.dense, answer.lexical, scope, vector, terms
            )
        return answer

    def _ordered(
        self, fetch: Callable[[int, Scope[E]], Hits], k: int, scope: Scope[E] | None
    ) -> Leg:
        """The top ``k`` with equal scores ordered by id: fetch past the k-th hit until the
        scores there drop, so every record tied with the k-th is seen."""
        if scope is None:
            return Leg.empty()
        n = k + 16
        while True:
            hits = fetch(n, scope)
            leg = ordered_leg([i for i, _ in hits], [s for _, s in hits], len(hits))
            if len(hits) < n or float(leg.scores[-1]) < float(leg.scores[k - 1]) - 1e-6:
                return ordered_leg(list(leg.ids), leg.scores.tolist(), k)
            n *= 2

    def _ceiling(self, terms: Counter[str], tenant: str | None) -> float | None:
        """The most any record can score on BM25 for these terms (each term's IDF times
        ``k1 + 1``, times its count), from the engine's statistics."""
        if not terms:
            return None
        n_docs, freqs = self._doc_freqs(tenant, sorted(terms))
        if n_docs == 0:
            return None
        return sum(
            count * math.log(1 + (n_docs - freqs.get(t, 0) + 0.5) / (freqs.get(t, 0) + 0.5))
            for t, count in terms.items()
        ) * (K1 + 1)

    def _doc_freqs(self, tenant: str | None, terms: Sequence[str]) -> tuple[int, dict[str, int]]:
        """The engine's document frequencies. A server counts on its indexes; an embedded
        engine would scan for every query, so its statistics are read in one scan and kept
        until this shard writes or the collection's size changes (a write by another process
        that keeps the size leaves them stale until then: the ceiling moves, not the hits)."""
        if not self._local:
            return self._engine_doc_freqs(tenant, terms)
        stamp = (self._writes, self._engine_size())
        if self._vocabulary is None or stamp != self._vocabulary_stamp:
            vocabulary: dict[str, tuple[int, Counter[str]]] = {}
            for doc in self._engine_scan(None, ["tenant", "terms"]):
                key = doc["tenant"] if self.per_tenant_stats else ""
                n_docs, counts = vocabulary.get(key, (0, Counter()))
                found = doc["terms"].split() if isinstance(doc["terms"], str) else doc["terms"]
                counts.update(set(found))
                vocabulary[key] = (n_docs + 1, counts)
            self._vocabulary, self._vocabulary_stamp = vocabulary, stamp
        key = (tenant or "") if self.per_tenant_stats else ""
        n_docs, counts = self._vocabulary.get(key, (0, Counter()))
        return n_docs, {t: counts[t] for t in terms}

    def _fill(
        self, dense: Leg, lexical: Leg, scope: Scope[E], vector: Vector, terms: Counter[str]
    ) -> tuple[Leg, Leg]:
        """Each leg's scores of the other leg's candidates it did not return (one search
        restricted to them per leg), for calibrated fusion."""
        only_lexical = sorted(set(lexical.ids) - set(dense.ids))
        only_dense = sorted(set(dense.ids) - set(lexical.ids))
        if only_lexical:
            hits = self._engine_dense(vector, len(only_lexical), scope.only(only_lexical))
            dense = replace(dense, extra=dict(hits))
        if only_dense and terms:
            hits = self._engine_lexical(terms, len(only_dense), scope.only(only_dense))
            lexical = replace(lexical, extra=dict(hits))
        return dense, lexical

    def close(self) -> None:
        """Close the client when ragkit made it; a client given to the shard is the caller's."""
        if self._owns_client:
            self.client.close()
