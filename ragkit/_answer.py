"""The answer stages after ranking: constraints, decay, rerank, groups, windows, highlights.

``HybridStore.run`` has the backend rank the pool ``SearchRequest.core`` asks for (cached
like any search), then shapes it here, in this order:

1. ``query_syntax="simple"``: hits missing a required phrase or term, or holding an excluded
   one, are dropped (both legs' hits: a dense hit without the phrase goes too);
2. ``decay``: each score times its decay factor, then sorted again;
3. ``rerank``: the best ``candidates`` rescored by the reranker, then sorted again;
4. ``group_by``: the top ``k`` groups of ``group_size`` hits; else the top ``k`` hits;
5. ``expand``: each hit's window of neighbouring chunks, read in one round;
6. ``highlight``: the spans of query terms in each hit's text, and a snippet.

All of it runs on the ranked hits in this process, so a sharded store, a served cluster and
an engine answer exactly as one local shard does.
"""

from __future__ import annotations

import time

from ragkit.analysis import Analyzer
from ragkit.backends.base import Shard
from ragkit.filters import parse_filter
from ragkit.grouping import POSITION_KEY, SOURCE_KEY, group_hits, merge_windows, window_ranges
from ragkit.highlight import highlights
from ragkit.request import SearchRequest
from ragkit.rerank import rerank_scores
from ragkit.schema import Group, Hit, Record, SearchResult
from ragkit.tracing import stage

#: window ranges per filter sent to read neighbouring chunks
_RANGES_PER_READ = 64

_analyzer = Analyzer()


def shape_answer(
    backend: Shard, request: SearchRequest, core: SearchRequest, result: SearchResult
) -> SearchResult:
    """``result`` (the answer to ``core``) shaped by ``request``'s answer options."""
    hits = list(result.hits)  # (fresh objects: a cached answer is stored as JSON)
    scale = result.scale
    parsed = request.parsed
    if parsed is not None and parsed.constrains:
        hits = [hit for hit in hits if parsed.matches(_analyzer.tokens(hit.text))]
    if request.decay is not None:
        now = time.time()
        for hit in hits:
            hit.decay = request.decay.factor(hit.metadata, now)
            hit.fused_score = hit.score
            hit.score *= hit.decay
        hits.sort(key=lambda h: -h.score)
    if request.rerank is not None:
        with stage("rerank", **{"ragkit.hits": min(len(hits), request.candidates)}):
            hits = _reranked(request, core.text or "", hits[: request.candidates])
        scale = "rerank"
    groups = None
    if request.group_by is not None:
        groups = group_hits(hits, request.group_by, request.k, request.group_size)
    else:
        hits = hits[: request.k]
    if request.expand:
        with stage("expand", **{"ragkit.hits": len(hits)}):
            neighbours = _neighbours(backend, hits if groups is None else _flat(groups), request)
            if groups is None:
                hits = merge_windows(hits, request.expand, neighbours)
            for group in groups or ():
                group.hits = merge_windows(group.hits, request.expand, neighbours)
    if groups is not None:
        hits = _flat(groups)
    if request.highlight:
        terms = parsed.terms if parsed is not None else frozenset(_analyzer.tokens(core.text or ""))
        for hit, (spans, passage) in zip(hits, highlights([hit.text for hit in hits], terms)):
            hit.highlights, hit.snippet = spans, passage
    return SearchResult(
        hits,
        result.mode,
        partial=result.partial,
        missing_shards=list(result.missing_shards),
        scale=scale,
        groups=groups,
    )


def _flat(groups: list[Group]) -> list[Hit]:
    return [hit for group in groups for hit in group.hits]


def _reranked(request: SearchRequest, query: str, hits: list[Hit]) -> list[Hit]:
    assert request.rerank is not None
    scores = rerank_scores(request.rerank, query, hits)
    kept = []
    for hit, score in zip(hits, scores):
        if score is not None:  # (a compressor or postprocessor may drop a hit)
            if hit.fused_score is None:
                hit.fused_score = hit.score
            hit.rerank_score = hit.score = score
            kept.append(hit)
    kept.sort(key=lambda h: -h.score)
    return kept


def _neighbours(backend: Shard, hits: list[Hit], request: SearchRequest) -> list[Record]:
    """The chunks in the hits' windows, read by filter (``source`` and ``chunk`` range)."""
    clauses = [
        {SOURCE_KEY: source, POSITION_KEY: {"$gte": low, "$lte": high}}
        for source, ranges in window_ranges(hits, request.expand).items()
        for low, high in _union(ranges)
    ]
    ids: list[str] = []
    for start in range(0, len(clauses), _RANGES_PER_READ):
        part = clauses[start : start + _RANGES_PER_READ]
        flt = parse_filter(part[0] if len(part) == 1 else {"$or": part})
        ids.extend(backend.ids(filter=flt, tenant=request.tenant))
    return backend.get(ids, tenant=request.tenant) if ids else []


def _union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged
