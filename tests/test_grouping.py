"""Search that answers with documents, acceptance 1: ``group_by`` and ``expand`` give the
same answer on 2, 3 and 8 partitions as on one shard, and the answer of a brute-force
reference over the records (scores computed directly, groups and windows built another way)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit import HybridStore
from ragkit.analysis import Analyzer
from ragkit.backends import LocalShard, ShardedStore
from ragkit.backends.sharded import LocalHost
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError
from ragkit.schema import SearchResult

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "omega",
    "sigma",
    "kappa",
    "theta",
    "zeta",
    "rho",
    "hybrid",
    "search",
]
EMBEDDER = HashingEmbedder(dim=32)
SOURCES = ["a", "b", "c", "d", "e"]

corpora = st.lists(
    st.tuples(st.sampled_from(SOURCES), st.lists(st.sampled_from(WORDS), min_size=1, max_size=8)),
    min_size=1,
    max_size=60,
)
query_words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)


def records(corpus: list[tuple[str, list[str]]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, text, metadata) per chunk; a source's chunks numbered in order, one in seven
    chunks without a source (a record that is not a chunk)."""
    position: Counter[str] = Counter()
    out = []
    for i, (source, words) in enumerate(corpus):
        text = " ".join(words)
        if i % 7 == 6:
            out.append((f"loose-{i}", text, {"kind": "note"}))
            continue
        out.append(
            (f"{source}#{position[source]}", text, {"source": source, "chunk": position[source]})
        )
        position[source] += 1
    return out


@contextmanager
def stores(
    corpus: list[tuple[str, list[str]]], partitions: int
) -> Iterator[tuple[HybridStore, HybridStore]]:
    single = HybridStore(backend=LocalShard(), embedder=EMBEDDER)
    hosts = [LocalHost(f"h{i}") for i in range(2)]
    sharded = HybridStore(
        backend=ShardedStore(hosts, partitions=partitions, replicas=1, heal_interval_s=None),
        embedder=EMBEDDER,
    )
    rows = records(corpus)
    try:
        for store in (single, sharded):
            store.add_texts(
                [t for _, t, _ in rows], [m for _, _, m in rows], [i for i, _, _ in rows]
            )
        yield single, sharded
    finally:
        single.close()
        sharded.close()


def brute_scores(
    rows: list[tuple[str, str, dict[str, Any]]], query: str, mode: str
) -> dict[str, float]:
    """Every record's score, computed directly: cosine for dense, BM25 (Lucene IDF, k1 1.2,
    b 0.75) for lexical; a record without a query term has no lexical score."""
    if mode == "dense":
        q = EMBEDDER.embed_query(query)
        docs = EMBEDDER.embed_documents([t for _, t, _ in rows])
        cos = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
        return {rid: float(c) for (rid, _, _), c in zip(rows, cos)}
    analyze = Analyzer().tokens
    terms = {rid: analyze(t) for rid, t, _ in rows}
    n, avg = len(terms), sum(map(len, terms.values())) / len(terms)
    df = Counter(term for ts in terms.values() for term in set(ts))
    scores: dict[str, float] = {}
    for term, qtf in Counter(analyze(query)).items():
        if term not in df:
            continue
        idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
        for rid, ts in terms.items():
            if tf := ts.count(term):
                norm = tf + 1.2 * (1 - 0.75 + 0.75 * len(ts) / avg)
                scores[rid] = scores.get(rid, 0.0) + qtf * idf * tf * 2.2 / norm
    return scores


def brute_groups(
    scores: dict[str, float], meta: dict[str, dict[str, Any]], size: int
) -> dict[str, tuple[float, list[float]]]:
    """Per source: its best score and its best ``size`` scores."""
    members: dict[str, list[float]] = {}
    for rid, score in scores.items():
        if "source" in meta[rid]:
            members.setdefault(meta[rid]["source"], []).append(score)
    return {key: (max(s), sorted(s, reverse=True)[:size]) for key, s in members.items()}


def same_answer(got: SearchResult, want: SearchResult) -> None:
    assert got.ids == want.ids
    assert [g.key for g in got.groups or ()] == [g.key for g in want.groups or ()]
    for a, b in zip(got, want):
        assert a.score == pytest.approx(b.score, rel=1e-5, abs=1e-7)
        assert [r.id for r in a.window or ()] == [r.id for r in b.window or ()]
        assert a.merged == b.merged


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    corpora,
    query_words,
    st.sampled_from([2, 3, 8]),
    st.sampled_from(["hybrid", "dense", "lexical"]),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(0, 2),
)
def test_groups_and_windows_on_partitions_equal_a_single_shard(
    corpus: list[tuple[str, list[str]]],
    words: list[str],
    partitions: int,
    mode: str,
    k: int,
    group_size: int,
    expand: int,
) -> None:
    query = " ".join(words)
    with stores(corpus, partitions) as (single, sharded):
        for options in (
            {"group_by": "source", "group_size": group_size, "expand": expand},
            {"expand": expand},
            {"group_by": "chunk", "candidates": 5},
        ):
            want = single.search(query, k=k, mode=mode, **options)
            same_answer(sharded.search(query, k=k, mode=mode, **options), want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora, query_words, st.sampled_from(["dense", "lexical"]), st.integers(1, 5))
def test_groups_equal_a_brute_force_reference(
    corpus: list[tuple[str, list[str]]], words: list[str], mode: str, group_size: int
) -> None:
    """With a pool holding every scored record, the groups are those of the scores computed
    directly: the ``k`` best group scores, each group's best members. (Among groups with
    equal scores either may be chosen.)"""
    query, k = " ".join(words), 3
    rows = records(corpus)
    meta = {rid: m for rid, _, m in rows}
    want = brute_groups(brute_scores(rows, query, mode), meta, group_size)
    best_scores = sorted((best for best, _ in want.values()), reverse=True)[:k]
    with stores(corpus, 3) as (single, sharded):
        for store in (single, sharded):
            got = store.search(
                query, k=k, mode=mode, group_by="source", group_size=group_size, candidates=100
            )
            assert got.groups is not None
            assert [g.score for g in got.groups] == pytest.approx(best_scores, rel=1e-4, abs=1e-5)
            assert got.hits == [h for g in got.groups for h in g.hits]
            for group in got.groups:
                best, scores = want[group.key]
                assert group.score == pytest.approx(best, rel=1e-4, abs=1e-5)
                assert [h.score for h in group.hits] == pytest.approx(scores, rel=1e-4, abs=1e-5)
                assert all(h.metadata["source"] == group.key for h in group.hits)


def brute_windows(
    ranked: list[str], rows: list[tuple[str, str, dict[str, Any]]], n: int
) -> list[tuple[str, list[str], set[str]]]:
    """(hit id, window ids, ids merged into it) for hits in rank order: each source's hit
    ranges joined where they overlap or touch (connected components), each component kept
    by its best hit, its window every chunk of the source in the joined range."""
    meta = {rid: m for rid, _, m in rows}
    parent = {rid: rid for rid in ranked}

    def root(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    chunked = [rid for rid in ranked if "source" in meta[rid]]
    span = {rid: (meta[rid]["chunk"] - n, meta[rid]["chunk"] + n) for rid in chunked}
    for i, a in enumerate(chunked):
        for b in chunked[i + 1 :]:
            same_source = meta[a]["source"] == meta[b]["source"]
            if same_source and span[a][0] <= span[b][1] + 1 and span[b][0] <= span[a][1] + 1:
                ra, rb = root(a), root(b)
                if ra != rb:  # the better-ranked root wins
                    first, second = sorted((ra, rb), key=ranked.index)
                    parent[second] = first
    out = []
    for rid in ranked:
        if root(rid) != rid:
            continue
        members = [m for m in ranked if root(m) == rid]
        if "source" not in meta[rid]:
            out.append((rid, [rid], set()))
            continue
        low = min(span[m][0] for m in members)
        high = max(span[m][1] for m in members)
        window = sorted(
            (m["chunk"], other)
            for other, m in meta.items()
            if m.get("source") == meta[rid]["source"] and low <= m["chunk"] <= high
        )
        out.append((rid, [w for _, w in window], set(members) - {rid}))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora, query_words, st.integers(1, 8), st.integers(1, 3), st.booleans())
def test_windows_equal_a_brute_force_reference(
    corpus: list[tuple[str, list[str]]], words: list[str], k: int, n: int, delete: bool
) -> None:
    query = " ".join(words)
    rows = records(corpus)
    with stores(corpus, 3) as (single, sharded):
        if delete and len(rows) > 2:  # a deleted chunk leaves a gap in its window
            gone = rows[len(rows) // 2][0]
            rows = [r for r in rows if r[0] != gone]
            single.delete([gone])
            sharded.delete([gone])
        for store in (single, sharded):
            ranked = store.search(query, k=k).ids
            got = store.search(query, k=k, expand=n)
            want = brute_windows(ranked, rows, n)
            assert [h.id for h in got] == [w[0] for w in want]
            for hit, (_, window, merged) in zip(got, want):
                assert [r.id for r in hit.window or ()] == window
                assert set(hit.merged or ()) == merged
                assert hit.window_text == "\n\n".join(r.text for r in hit.window or ())


def test_a_group_joins_its_chunks_in_source_order() -> None:
    from ragkit.grouping import group_passage

    store = HybridStore(embedder=EMBEDDER)
    store.add_texts(
        ["intro to search", "hybrid search fuses", "bm25 search scores", "unrelated"],
        [{"source": "doc", "chunk": i} for i in range(3)] + [{"source": "other", "chunk": 0}],
        ids=["doc#0", "doc#1", "doc#2", "other#0"],
    )
    result = store.search("search", k=1, group_by="source", group_size=3, mode="lexical")
    assert result.groups is not None and [g.key for g in result.groups] == ["doc"]
    text, chunks = group_passage(result.groups[0])
    assert chunks == ["doc#0", "doc#1", "doc#2"]
    assert text == "intro to search\n\nhybrid search fuses\n\nbm25 search scores"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"group_by": ""}, "group_by"),
        ({"group_by": 3}, "group_by"),
        ({"group_size": 0}, "group_size"),
        ({"expand": -1}, "expand"),
        ({"expand": True}, "expand"),
        ({"highlight": "yes"}, "highlight"),
    ],
)
def test_bad_grouping_options_name_the_value(options: dict[str, Any], named: str) -> None:
    with HybridStore(embedder=EMBEDDER) as store, pytest.raises(InvalidInputError, match=named):
        store.search("q", **options)


def _pages() -> HybridStore:
    store = HybridStore(embedder=EMBEDDER)
    store.add_texts(
        ["intro to search", "hybrid search fuses", "bm25 search scores", "bread rises"],
        [{"source": "doc", "chunk": i} for i in range(3)] + [{"source": "other", "chunk": 0}],
        ids=["doc#0", "doc#1", "doc#2", "other#0"],
    )
    return store


def test_the_langchain_retriever_returns_a_document_per_group_and_windows() -> None:
    from ragkit.retrievers.langchain import HybridRetriever

    with _pages() as store:
        docs = HybridRetriever(store=store, k=2, group_by="source", group_size=2).invoke("search")
        want = store.search("search", k=2, group_by="source", group_size=2)
        assert want.groups is not None and len(docs) == len(want.groups)
        info = docs[0].metadata["ragkit"]
        assert info["group"] == "doc" and info["score"] == want.groups[0].score
        assert info["chunks"] == sorted(want.groups[0].ids)  # joined in source order
        assert docs[0].page_content == "\n\n".join(
            store.get(info["chunks"])[i].text for i in range(len(info["chunks"]))
        )
        windowed = HybridRetriever(store=store, k=1, expand=1).invoke("fuses")
        assert windowed[0].id == "doc#1"
        assert (
            windowed[0].page_content
            == "intro to search\n\nhybrid search fuses\n\nbm25 search scores"
        )
        assert windowed[0].metadata["ragkit"]["window"] == ["doc#0", "doc#1", "doc#2"]


def test_the_llamaindex_retriever_returns_a_node_per_group_and_windows() -> None:
    from llama_index.core.schema import QueryBundle

    from ragkit.retrievers.llamaindex import HybridRetriever

    with _pages() as store:
        nodes = HybridRetriever(store, k=2, group_by="source", group_size=3).retrieve(
            QueryBundle("search")
        )
        want = store.search("search", k=2, group_by="source", group_size=3)
        assert want.groups is not None
        assert [n.node.metadata["ragkit"]["group"] for n in nodes] == [g.key for g in want.groups]
        assert [n.score for n in nodes] == [g.score for g in want.groups]
        assert (
            nodes[0].node.get_content()
            == "intro to search\n\nhybrid search fuses\n\nbm25 search scores"
        )
        assert "ragkit" in nodes[0].node.excluded_llm_metadata_keys
        windowed = HybridRetriever(store, k=1, expand=1).retrieve(QueryBundle("rises"))
        assert windowed[0].node.get_content() == "bread rises"  # a window of one chunk


def test_batch_and_async_searches_take_the_answer_options() -> None:
    import asyncio

    with _pages() as store:
        one = store.search("search", k=1, group_by="source", expand=1, highlight=True)
        batch = store.search_batch(
            ["search", "bread"], k=1, group_by="source", expand=1, highlight=True
        )
        twin = asyncio.run(
            store.asearch("search", k=1, group_by="source", expand=1, highlight=True)
        )
        for got in (batch[0], twin):
            assert got.ids == one.ids
            assert [g.key for g in got.groups or ()] == [g.key for g in one.groups or ()]
            assert got[0].window == one[0].window and got[0].highlights == one[0].highlights
        assert [g.key for g in batch[1].groups or ()] == ["other"]
