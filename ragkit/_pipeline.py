"""One search through a backend: one call for both legs, fusion once, optional MMR, hits.

See docs/architecture.md ("The flow of one query"): the backend answers both legs (merged
globally when it is a router) with the records behind the candidates; they are fused exactly
once, here, unless the backend made the final ranking itself (``ShardAnswer.ranked``: a
LocalShard ranks a calibrated hybrid search on row numbers, a native hybrid engine fuses its
own), which is taken as it is.
"""

from __future__ import annotations

from math import isnan

import numpy as np

from ragkit.backends.base import Shard
from ragkit.fusion import Fused, fuse, minmax_normalize, single_leg
from ragkit.mmr import mmr_select
from ragkit.request import SearchRequest
from ragkit.schema import Hit, Leg, RecordSource, SearchMode, SearchResult, ShardAnswer
from ragkit.tracing import stage


class Pipeline:
    """The ``Searcher`` of every backend that answers legs (``Shard.search``)."""

    def __init__(self, backend: Shard) -> None:
        self.backend = backend

    def run(self, request: SearchRequest) -> SearchResult:
        return run_search(self.backend, request)


def run_search(backend: Shard, request: SearchRequest) -> SearchResult:
    answer = backend.search(request)
    fused = answer.ranked if answer.ranked is not None else _ranking(answer, request)
    missing = answer.missing
    return SearchResult(
        _hits(answer.records, fused.head(request.k)),
        request.mode,
        partial=bool(missing),
        missing_shards=missing,
        scale=score_scale(answer, request),
    )


def score_scale(answer: ShardAnswer, request: SearchRequest) -> str:
    """What the scores of this answer's hits mean (``SearchResult.scale``)."""
    if answer.native:
        return "engine"
    if request.mode is SearchMode.DENSE:
        return "cosine"
    if request.mode is SearchMode.LEXICAL:
        return "bm25"
    return request.fusion.value


def _ranking(answer: ShardAnswer, request: SearchRequest) -> Fused:
    """The legs fused (hybrid) or one leg ranked, then MMR where asked."""
    if request.mode is SearchMode.HYBRID:
        with stage("fuse", **{"ragkit.fusion": request.fusion.value}):
            fused = fuse(
                request.fusion,
                [answer.dense or Leg.empty(), answer.lexical or Leg.empty()],
                [request.alpha, 1.0 - request.alpha],
                rrf_k=request.rrf_k,
            )
    elif request.mode is SearchMode.DENSE:
        fused = single_leg(answer.dense or Leg.empty(), 0)
    else:
        fused = single_leg(answer.lexical or Leg.empty(), 1)
    if request.mmr is not None and request.vector is not None:
        fused = apply_mmr(answer.records, fused, request)
    return fused


def apply_mmr(records: RecordSource, fused: Fused, request: SearchRequest) -> Fused:
    """Re-rank the fused pool (``request.candidates`` of it) for diversity (``ragkit.mmr``)."""
    assert request.vector is not None and request.mmr is not None
    pool = fused.head(request.candidates)
    found = records.fetch(pool.ids, vectors=True)
    keep = [i for i, rid in enumerate(pool.ids) if rid in found and found[rid].vector is not None]
    pool = pool.take(keep)
    if not pool.ids:
        return pool
    vectors = np.vstack([np.asarray(found[rid].vector) for rid in pool.ids]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = minmax_normalize(pool.scores)
    if request.mode is SearchMode.DENSE:  # raw cosine is already a relevance in [-1, 1]
        query = np.asarray(request.vector, dtype=np.float32)
        relevance = (vectors @ (query / np.linalg.norm(query))).astype(np.float64)
    return pool.take(mmr_select(relevance, vectors, request.k, request.mmr))


def _hits(records: RecordSource, fused: Fused) -> list[Hit]:
    with stage("hydrate", **{"ragkit.hits": len(fused)}):
        found = records.fetch(fused.ids)
    # One conversion per column, not per hit (NaN: the leg did not score it; rank 0: not
    # among its candidates).
    leg_scores = [[None if isnan(s) else s for s in row] for row in fused.leg_scores.tolist()]
    leg_ranks = [[r or None for r in row] for row in fused.leg_ranks.tolist()]
    # (Hit's fields in order: record, score, dense_score, dense_rank, lexical_score,
    # lexical_rank; positional, which is cheaper per hit than keywords)
    return [
        Hit(record, score, dense_score, dense_rank, lexical_score, lexical_rank)
        for rid, score, dense_score, dense_rank, lexical_score, lexical_rank in zip(
            fused.ids,
            fused.scores.tolist(),
            leg_scores[0],
            leg_ranks[0],
            leg_scores[1],
            leg_ranks[1],
        )
        if (record := found.get(rid)) is not None  # (else deleted since the search)
    ]
