"""Core value types: records going in, hits and results coming out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit._legs import Candidate, Fused, Leg

__all__ = [
    "Candidate",
    "Fused",
    "Group",
    "Hit",
    "Leg",
    "LexicalStats",
    "Record",
    "RecordMap",
    "RecordSource",
    "SearchMode",
    "SearchResult",
    "ShardAnswer",
    "Vector",
]

Vector = NDArray[np.float32]


class SearchMode(StrEnum):
    """Which legs a search runs: both (fused), the vector leg only or the BM25 leg only."""

    HYBRID = "hybrid"
    DENSE = "dense"
    LEXICAL = "lexical"


@dataclass(slots=True)
class Record:
    """One stored item: an id, its text, JSON metadata, an optional vector and tenant.

    ``vector`` is filled in by the store's embedder when it is ``None`` on write.
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: Vector | None = None
    tenant: str | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        same_vector = (self.vector is None and other.vector is None) or (
            self.vector is not None
            and other.vector is not None
            and np.array_equal(self.vector, other.vector)
        )
        return (
            self.id == other.id
            and self.text == other.text
            and self.metadata == other.metadata
            and self.tenant == other.tenant
            and same_vector
        )

    __hash__ = None  # type: ignore[assignment]  # mutable value type


class RecordSource(ABC):
    """Where the records behind an answer's candidates come from: already in hand (a router
    received them with the legs) or read on demand (an embedded shard)."""

    @abstractmethod
    def fetch(self, ids: Sequence[str], *, vectors: bool = False) -> dict[str, Record]:
        """The records for ``ids`` that exist (with vectors if asked), by id."""


class RecordMap(RecordSource):
    """Records already in hand."""

    def __init__(self, records: Mapping[str, Record] | None = None) -> None:
        self.records: dict[str, Record] = dict(records or {})

    def fetch(self, ids: Sequence[str], *, vectors: bool = False) -> dict[str, Record]:
        return {i: self.records[i] for i in ids if i in self.records}


class ShardAnswer:
    """A backend's answer to one ``SearchRequest``, one shape for every backend:

    - ``dense`` and ``lexical``: each leg the request runs, candidates best first with their
      raw scores (a backend may compute them when first read: ``legs``);
    - ``ranked``: the final ranking, when the backend made it: the top ``k`` (and any tied
      with the k-th), MMR applied where asked. A LocalShard ranks a calibrated hybrid search
      itself, exactly as ``ragkit.fusion`` would; an engine with native hybrid search
      returns its own fusion (``native``: the scores are the engine's, not ragkit's);
    - ``records``: the records behind the candidates;
    - ``missing``: partitions that could not answer (beside those the legs name).

    ``legs``: a function giving ``(dense, lexical)`` when they are first read, for a backend
    that turns its candidates into record ids only when someone needs them.
    """

    __slots__ = ("_dense", "_legs", "_lexical", "_missing", "native", "ranked", "records")

    def __init__(
        self,
        dense: Leg | None = None,
        lexical: Leg | None = None,
        *,
        ranked: Fused | None = None,
        native: bool = False,
        records: RecordSource | None = None,
        missing: Sequence[str] = (),
        legs: Callable[[], tuple[Leg | None, Leg | None]] | None = None,
    ) -> None:
        self._dense, self._lexical, self._legs = dense, lexical, legs
        self.ranked, self.native = ranked, native
        self.records: RecordSource = records if records is not None else RecordMap()
        self._missing = tuple(missing)

    def _resolve(self) -> None:
        if self._legs is not None:
            self._dense, self._lexical = self._legs()
            self._legs = None

    @property
    def dense(self) -> Leg | None:
        self._resolve()
        return self._dense

    @dense.setter
    def dense(self, leg: Leg | None) -> None:
        self._resolve()
        self._dense = leg

    @property
    def lexical(self) -> Leg | None:
        self._resolve()
        return self._lexical

    @lexical.setter
    def lexical(self, leg: Leg | None) -> None:
        self._resolve()
        self._lexical = leg

    @property
    def fused(self) -> Leg | None:
        """An engine's own fused ranking as a leg (ids and its scores); ``None`` otherwise."""
        if not self.native or self.ranked is None:
            return None
        return Leg(self.ranked.ids, np.asarray(self.ranked.scores, dtype=np.float32))

    @property
    def missing(self) -> list[str]:
        """Partitions that could not answer. Legs still to be computed (``legs``) name none:
        a backend that computes its legs on demand passes what is missing as ``missing``."""
        legs = () if self._legs is not None else (self._dense, self._lexical)
        named = {name for leg in legs if leg is not None for name in leg.missing}
        return sorted(named | set(self._missing))


@dataclass(slots=True, frozen=True)
class LexicalStats:
    """Corpus statistics for BM25, so a router can score every shard identically.

    ``doc_freqs`` maps analyzed terms to the number of live records containing them.
    """

    doc_count: int
    total_length: int
    doc_freqs: Mapping[str, int]

    @property
    def avg_length(self) -> float:
        return self.total_length / self.doc_count if self.doc_count else 0.0

    @staticmethod
    def combine(parts: list[LexicalStats]) -> LexicalStats:
        """Sum the statistics of disjoint shards into the statistics of their union."""
        freqs: dict[str, int] = {}
        for part in parts:
            for term, df in part.doc_freqs.items():
                freqs[term] = freqs.get(term, 0) + df
        return LexicalStats(
            doc_count=sum(p.doc_count for p in parts),
            total_length=sum(p.total_length for p in parts),
            doc_freqs=freqs,
        )


@dataclass(slots=True)
class Hit:
    """One search result: the record, its final score, and what each leg said about it.

    ``dense_score`` / ``lexical_score`` are the legs' raw scores (cosine similarity, BM25) and
    ``dense_rank`` / ``lexical_rank`` their 1-based ranks; ``None`` where the record was not
    among that leg's candidates (or the leg did not run).
    """

    record: Record
    score: float
    dense_score: float | None = None
    dense_rank: int | None = None
    lexical_score: float | None = None
    lexical_rank: int | None = None
    #: ``highlight=True``: the character spans ``(start, end)`` of query terms in the text,
    #: in order, and a short passage of the text around the best of them
    highlights: list[tuple[int, int]] | None = None
    snippet: str | None = None
    #: ``expand=n``: the chunks around this one in order (itself included), and the ids of
    #: lower-ranked hits whose windows overlapped this one's and were merged into it
    window: list[Record] | None = None
    merged: list[str] | None = None
    #: ``decay`` or ``rerank``: the fused score before them, the decay factor applied and the
    #: reranker's score (``score`` is then the reranker's, or the decayed fused score)
    fused_score: float | None = None
    decay: float | None = None
    rerank_score: float | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def window_text(self) -> str:
        """The window's chunks joined by blank lines (the hit's own text without ``expand``)."""
        if not self.window:
            return self.record.text
        return "\n\n".join(record.text for record in self.window)

    @property
    def text(self) -> str:
        return self.record.text

    @property
    def metadata(self) -> dict[str, Any]:
        return self.record.metadata

    def score_info(self, rank: int, scale: str) -> dict[str, Any]:
        """What the framework adapters put under ``metadata["ragkit"]``: the rank, the score
        and its scale (``SearchResult.scale``), and each leg's raw score and rank."""
        info: dict[str, Any] = {
            "rank": rank,
            "score": self.score,
            "scale": scale,
            "dense_score": self.dense_score,
            "dense_rank": self.dense_rank,
            "lexical_score": self.lexical_score,
            "lexical_rank": self.lexical_rank,
        }
        for name in ("fused_score", "decay", "rerank_score", "highlights", "snippet", "merged"):
            value = getattr(self, name)
            if value is not None:
                info[name] = value
        if self.window is not None:
            info["window"] = [record.id for record in self.window]
        return info


@dataclass(slots=True)
class Group:
    """One group of a grouped search (``group_by``): the field's value, the group's score
    (its best hit's) and its best hits, best first."""

    key: Any
    score: float
    hits: list[Hit] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [hit.id for hit in self.hits]


@dataclass(slots=True)
class SearchResult:
    """The hits of one search, best first, plus how complete the answer is.

    ``partial`` is true when some shard could not answer and the store's policy allowed a
    partial answer; ``missing_shards`` names them. ``scale`` says what the hit scores mean:
    ``"calibrated"`` (a hybrid search with the default fusion: [0, 1], comparable across
    queries, see ``ragkit.fusion``), ``"cosine"`` (dense only), ``"bm25"`` (lexical only),
    ``"relative_score"``, ``"rrf"`` or ``"dbsf"`` (ordered within the query only), or
    ``"engine"`` (a backend's own hybrid scores).
    """

    hits: list[Hit]
    mode: SearchMode
    partial: bool = False
    missing_shards: list[str] = field(default_factory=list)
    scale: str = "calibrated"
    #: how the answer was produced: latency_ms, embedding_cache_hit, result_cache_hit
    info: dict[str, Any] = field(default_factory=dict)
    #: ``group_by``: the groups, best first (``hits`` then holds their hits in that order)
    groups: list[Group] | None = None

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, index: int) -> Hit:
        return self.hits[index]

    @property
    def ids(self) -> list[str]:
        return [hit.record.id for hit in self.hits]
