"""Scale-out part 1, acceptance 1: a ShardedStore answers exactly like one LocalShard holding
every record (ids, fused scores, each leg's raw score and rank) over partition counts, replica
counts, both routing modes, every fusion, filters and tenants, and still exactly while one
replica host is down."""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sharding import faulty_hosts

from ragkit import HybridStore
from ragkit.backends import LocalShard, ShardedStore
from ragkit.backends.sharded import LocalHost
from ragkit.backends.sharded import host as host_module
from ragkit.backends.sharded.host import HostSearch
from ragkit.embeddings import HashingEmbedder
from ragkit.request import SearchRequest

VOCAB = "alpha beta gamma delta omega sigma kappa theta zeta rho hybrid search vector keyword"
WORDS = VOCAB.split()
EMBEDDER = HashingEmbedder(dim=32)
TENANTS = [None, "acme", "globex"]

docs = st.lists(
    st.tuples(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=12),
        st.integers(0, 3),
        st.sampled_from(TENANTS),
    ),
    min_size=1,
    max_size=70,
)
queries = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), min_size=1, max_size=3)
filters = st.sampled_from([None, {"g": 1}, {"g": {"$in": [0, 2]}}, {"g": {"$ne": 3}}])
layouts = st.tuples(
    st.sampled_from([1, 3, 8, 16]), st.integers(1, 3), st.sampled_from(["id", "tenant"])
)


def fill(store: HybridStore, corpus: list[tuple[list[str], int, str | None]]) -> None:
    for tenant in TENANTS:
        rows = [(i, words, g) for i, (words, g, t) in enumerate(corpus) if t == tenant]
        if rows:
            store.add_texts(
                [" ".join(words) for _, words, _ in rows],
                metadatas=[{"g": g} for _, _, g in rows],
                ids=[f"doc-{i:03d}" for i, _, _ in rows],
                tenant=tenant,
            )


def same(got: Any, want: Any) -> None:
    assert got.ids == want.ids
    assert not got.partial
    for a, b in zip(got, want):
        assert a.score == pytest.approx(b.score, rel=1e-5, abs=1e-7)
        assert (a.dense_rank, a.lexical_rank) == (b.dense_rank, b.lexical_rank)
        for x, y in ((a.dense_score, b.dense_score), (a.lexical_score, b.lexical_score)):
            assert (x is None) == (y is None)
            if x is not None:
                assert x == pytest.approx(y, rel=1e-5, abs=1e-6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs,
    queries,
    filters,
    layouts,
    st.sampled_from(["relative_score", "rrf", "dbsf"]),
    st.sampled_from(TENANTS),
    st.booleans(),
)
def test_sharded_answers_equal_a_single_shard(
    corpus: list[tuple[list[str], int, str | None]],
    query_words: list[list[str]],
    flt: Any,
    layout: tuple[int, int, str],
    fusion: str,
    tenant: str | None,
    one_host_down: bool,
) -> None:
    partitions, replicas, route_by = layout
    single = HybridStore(backend=LocalShard(), embedder=EMBEDDER)
    hosts = faulty_hosts(4)
    router = ShardedStore(
        hosts,
        partitions=partitions,
        replicas=replicas,
        route_by=route_by,
        heal_interval_s=None,
        deadline_s=5.0,
    )
    sharded = HybridStore(backend=router, embedder=EMBEDDER)
    try:
        fill(single, corpus)
        fill(sharded, corpus)
        if one_host_down and replicas > 1:
            hosts[partitions % 4].down = True  # every partition still has an in-sync replica
        for words in query_words:
            query = " ".join(words)
            for mode in ("hybrid", "dense", "lexical"):
                options = {"k": 10, "mode": mode, "filter": flt, "fusion": fusion}
                want = single.search(query, tenant=tenant, **options)
                got = sharded.search(query, tenant=tenant, **options)
                same(got, want)
        assert sharded.count(tenant=tenant) == single.count(tenant=tenant)
    finally:
        single.close()
        for host in hosts:
            host.down = False
        sharded.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(  # weighted toward a calibrated hybrid search, the case with most of its own code
    texts=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=12), min_size=20),
    mode=st.sampled_from(["hybrid", "hybrid", "dense", "lexical"]),
    fusion=st.sampled_from(["calibrated", "calibrated", "rrf", "relative_score"]),
    depth=st.integers(4, 12),
    k=st.integers(1, 4),
    mmr=st.sampled_from([None, None, 0.5]),
)
def test_a_host_asked_for_one_partition_answers_as_its_merge_would(
    texts: list[list[str]],
    mode: str,
    fusion: str,
    depth: int,
    k: int,
    mmr: float | None,
) -> None:
    """A host asked for one partition skips the merge over partitions (its legs are already
    in order) and reads the records by row; its answer is the merge's, field by field."""
    host = LocalHost("h0")
    store = HybridStore(
        backend=ShardedStore([host], partitions=1, replicas=1, heal_interval_s=None),
        embedder=EMBEDDER,
    )
    store.add_texts([" ".join(words) for words in texts])
    text = " ".join(texts[0][:3])
    request = SearchRequest(
        text=text, vector=EMBEDDER.embed_query(text), k=k, mode=mode, fusion=fusion, mmr=mmr
    )
    same_host_answer(host, HostSearch(request, (0,), None, depth, record_depth=depth))
    store.close()


def test_a_host_asked_for_one_partition_answers_as_its_merge_would_on_varied_texts() -> None:
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(1, 13))) for _ in range(80)]
    host = LocalHost("h0")
    store = HybridStore(
        backend=ShardedStore([host], partitions=1, replicas=1, heal_interval_s=None),
        embedder=EMBEDDER,
    )
    store.add_texts(texts)
    for text in texts[:10]:
        for k in (1, 3, 5):
            request = SearchRequest(text=text, vector=EMBEDDER.embed_query(text), k=k)
            same_host_answer(host, HostSearch(request, (0,), None, 20, record_depth=20))
    store.close()


def _legs_only(search: Any) -> Any:
    """The shard's search without its own ranking: the host merges and fuses the legs."""

    def legs(request: SearchRequest, stats: Any = None) -> Any:
        answer = search(request, stats=stats)
        answer.ranked = None
        return answer

    return legs


def same_host_answer(host: LocalHost, query: HostSearch) -> None:
    partitions = host.host
    fast = partitions.call_search(query)
    shard = partitions._shard(0)
    with (  # the merge over partitions, and the records chosen by fusing the merged legs
        mock.patch.object(host_module, "_as_host_leg", lambda *args: None),
        mock.patch.object(shard, "search", _legs_only(shard.search)),
    ):
        merged = partitions.call_search(query)
    for got, want in ((fast.dense, merged.dense), (fast.lexical, merged.lexical)):
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got.ids == want.ids and got.extra == want.extra
            assert got.scores.dtype == want.scores.dtype == np.float32
            assert np.array_equal(got.scores, want.scores)
            assert (got.exhausted, got.ceiling) == (want.exhausted, want.ceiling)
    assert sorted(fast.records) == sorted(merged.records) and fast.versions == merged.versions
