"""Issue 4, acceptance 1: a ShardedStore answers exactly like one LocalShard holding all
records: same top-10 ids in the same order, every mode, with and without filters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit import HybridStore
from ragkit.backends import LocalShard, ShardedStore
from ragkit.embeddings import HashingEmbedder

VOCAB = [
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
    "vector",
    "keyword",
]
EMBEDDER = HashingEmbedder(dim=32)

docs = st.lists(
    st.tuples(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=12), st.integers(0, 3)),
    min_size=1,
    max_size=60,
)
queries = st.lists(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=4), min_size=1, max_size=4)
filters = st.sampled_from([None, {"g": 1}, {"g": {"$in": [0, 2]}}, {"g": {"$ne": 3}}])
layouts = st.sampled_from([(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (8, 1), (8, 3)])


def build(backend: Any, corpus: list[tuple[list[str], int]]) -> HybridStore:
    store = HybridStore(backend=backend, embedder=EMBEDDER)
    store.add_texts(
        [" ".join(words) for words, _ in corpus],
        metadatas=[{"g": g} for _, g in corpus],
        ids=[f"doc-{i:03d}" for i in range(len(corpus))],
    )
    return store


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs, queries, filters, layouts, st.sampled_from(["relative_score", "rrf", "dbsf"]))
def test_sharded_answers_equal_a_single_shard(
    corpus: list[tuple[list[str], int]],
    query_words: list[list[str]],
    flt: Any,
    layout: tuple[int, int],
    fusion: str,
) -> None:
    n_shards, replicas = layout
    single = build(LocalShard(), corpus)
    sharded = build(
        ShardedStore([LocalShard(name=f"s{i}") for i in range(n_shards)], replicas=replicas),
        corpus,
    )
    try:
        for words in query_words:
            query = " ".join(words)
            for mode in ("hybrid", "dense", "lexical"):
                want = single.search(query, k=10, mode=mode, filter=flt, fusion=fusion)
                got = sharded.search(query, k=10, mode=mode, filter=flt, fusion=fusion)
                assert got.ids == want.ids, (mode, query)
                assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-5)
                assert not got.partial
    finally:
        single.close()
        sharded.close()
