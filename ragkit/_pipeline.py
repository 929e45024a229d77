"""One search through a backend: each leg, fusion once, optional MMR, hydration.

See ARCHITECTURE.md ("The flow of one query"): the legs' candidates are fused exactly once,
here, after any backend has merged each leg globally.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ragkit._params import SearchParams
from ragkit.backends.base import Shard
from ragkit.fusion import DEFAULT_RRF_K, Fused, fuse, minmax_normalize
from ragkit.mmr import mmr_select
from ragkit.schema import Candidate, Hit, SearchMode, SearchResult
from ragkit.tracing import stage


def run_search(
    backend: Shard,
    text: str | None,
    vector: NDArray[np.float32] | None,
    params: SearchParams,
    *,
    rrf_k: int = DEFAULT_RRF_K,
) -> SearchResult:
    dense: list[Candidate] = []
    lexical: list[Candidate] = []
    run_dense = params.mode is not SearchMode.LEXICAL
    run_lexical = params.mode is not SearchMode.DENSE and text is not None
    n = params.candidates if params.mode is SearchMode.HYBRID or params.mmr else params.k
    native = getattr(backend, "search_hybrid", None)
    if params.mode is SearchMode.HYBRID and native is not None and vector is not None and text:
        # A backend with native hybrid search (Weaviate) fuses by itself: it gets the whole
        # request, and its fused scores come back without per-leg scores.
        found = native(
            text,
            vector,
            params.candidates if params.mmr else params.k,
            alpha=params.alpha,
            fusion=params.fusion,
            filter=params.filter,
            tenant=params.tenant,
        )
        fused = [Fused(c.id, c.score, [None, None], [None, None]) for c in found]
        if params.mmr is not None:
            fused = _mmr(backend, fused, vector, params)
        return SearchResult(_hydrate(backend, fused[: params.k]), params.mode)
    if run_dense and vector is not None:
        with stage("search_dense", **{"ragkit.backend": backend.name}) as span:
            dense = backend.search_dense(vector, n, filter=params.filter, tenant=params.tenant)
            span.set_attribute("ragkit.hits", len(dense))
    if run_lexical and text is not None:
        with stage("search_lexical", **{"ragkit.backend": backend.name}) as span:
            lexical = backend.search_lexical(text, n, filter=params.filter, tenant=params.tenant)
            span.set_attribute("ragkit.hits", len(lexical))
    if params.mode is SearchMode.HYBRID:
        with stage("fuse", **{"ragkit.fusion": params.fusion.value}):
            fused = fuse(
                params.fusion,
                [dense, lexical],
                [params.alpha, 1.0 - params.alpha],
                rrf_k=rrf_k,
            )
    else:
        leg = dense if params.mode is SearchMode.DENSE else lexical
        slot = 0 if params.mode is SearchMode.DENSE else 1
        fused = [
            Fused(
                c.id,
                c.score,
                [c.score if i == slot else None for i in range(2)],
                [rank if i == slot else None for i in range(2)],
            )
            for rank, c in enumerate(leg, start=1)
        ]
    if params.mmr is not None and vector is not None:
        fused = _mmr(backend, fused, vector, params)
    missing = sorted(
        {name for leg in (dense, lexical) for name in getattr(leg, "missing_shards", ())}
    )
    return SearchResult(
        _hydrate(backend, fused[: params.k]),
        params.mode,
        partial=bool(missing),
        missing_shards=missing,
    )


def _mmr(
    backend: Shard, fused: list[Fused], vector: NDArray[np.float32], params: SearchParams
) -> list[Fused]:
    pool = fused[: params.candidates]
    records = {r.id: r for r in backend.get([f.id for f in pool], include_vectors=True)}
    pool = [f for f in pool if records.get(f.id) is not None]
    stored = [records[f.id].vector for f in pool]
    if not pool or any(v is None for v in stored):
        return pool
    vectors = np.vstack([np.asarray(v) for v in stored]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = minmax_normalize(np.array([f.score for f in pool], dtype=np.float64))
    if params.mode is SearchMode.DENSE:  # raw cosine is already a relevance in [-1, 1]
        relevance = vectors @ (vector / np.linalg.norm(vector))
    order = mmr_select(relevance, vectors, params.k, params.mmr or 0.0)
    return [pool[i] for i in order]


def _hydrate(backend: Shard, fused: list[Fused]) -> list[Hit]:
    with stage("hydrate", **{"ragkit.hits": len(fused)}):
        records = {r.id: r for r in backend.get([f.id for f in fused])}
    hits = []
    for f in fused:
        record = records.get(f.id)
        if record is None:  # deleted between search and hydrate
            continue
        hits.append(
            Hit(
                record,
                f.score,
                dense_score=f.leg_scores[0],
                dense_rank=f.leg_ranks[0],
                lexical_score=f.leg_scores[1],
                lexical_rank=f.leg_ranks[1],
            )
        )
    return hits
