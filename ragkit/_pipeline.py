"""One search through a backend: one call for both legs, fusion once, optional MMR, hits.

See docs/architecture.md ("The flow of one query"): the backend answers both legs (merged
globally when it is a router) with the records behind the candidates; they are fused exactly
once, here. A backend with native hybrid search returns its own fused leg instead.
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


def run_search(backend: Shard, request: SearchRequest) -> SearchResult:
    answer = backend.search_final(request)
    fused = _rank(answer, request)
    if request.mmr is not None and request.vector is not None:
        fused = _mmr(answer.records, fused, request)
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
    if answer.fused is not None:
        return "engine"
    if request.mode is SearchMode.DENSE:
        return "cosine"
    if request.mode is SearchMode.LEXICAL:
        return "bm25"
    return request.fusion.value


def _rank(answer: ShardAnswer, request: SearchRequest) -> Fused:
    if answer.ranked is not None:  # the backend fused its own legs
        return answer.ranked
    if answer.fused is not None:  # the backend fused by itself (native hybrid)
        return single_leg(answer.fused, None)
    if request.mode is SearchMode.HYBRID:
        with stage("fuse", **{"ragkit.fusion": request.fusion.value}):
            return fuse(
                request.fusion,
                [answer.dense or Leg.empty(), answer.lexical or Leg.empty()],
                [request.alpha, 1.0 - request.alpha],
                rrf_k=request.rrf_k,
            )
    if request.mode is SearchMode.DENSE:
        return single_leg(answer.dense or Leg.empty(), 0)
    return single_leg(answer.lexical or Leg.empty(), 1)


def _mmr(records: RecordSource, fused: Fused, request: SearchRequest) -> Fused:
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
