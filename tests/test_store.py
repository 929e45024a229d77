"""HybridStore: the public API users hold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ragkit import Hit, HybridStore, RagkitError, Record, SearchRequest, SearchResult
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError
from ragkit.schema import SearchMode

TEXTS = [
    "Hybrid search combines BM25 keyword scores with vector similarity.",
    "BM25 ranks documents by term frequency and inverse document frequency.",
    "Vector search embeds text into dense vectors and compares them by cosine.",
    "Reciprocal rank fusion merges ranked lists using their ranks only.",
    "Paris is the capital of France and sits on the Seine.",
    "The error code E1234 means the disk quota was exceeded.",
]


@pytest.fixture
def filled(store: HybridStore) -> HybridStore:
    store.add_texts(
        TEXTS,
        metadatas=[{"i": i, "kind": "ir" if i < 4 else "misc"} for i in range(6)],
        ids=[f"d{i}" for i in range(6)],
    )
    return store


def test_add_texts_returns_ids_and_generates_them_when_absent(store: HybridStore) -> None:
    ids = store.add_texts(["one text", "another text"])
    assert len(set(ids)) == 2 and all(isinstance(i, str) for i in ids)
    assert [r.text for r in store.get(ids)] == ["one text", "another text"]


def test_hybrid_hits_carry_fused_and_per_leg_scores(filled: HybridStore) -> None:
    result = filled.search("BM25 keyword scores", k=3)
    assert isinstance(result, SearchResult) and len(result) == 3
    top = result[0]
    assert isinstance(top, Hit)
    assert top.dense_rank is not None and top.lexical_rank is not None
    assert top.dense_score is not None and top.lexical_score is not None
    assert [h.score for h in result] == sorted((h.score for h in result), reverse=True)


def test_hit_leg_fields_are_none_when_a_leg_did_not_find_it(filled: HybridStore) -> None:
    result = filled.search("E1234", k=6)
    found = {h.id: h for h in result}
    assert found["d5"].lexical_rank == 1
    assert any(h.lexical_rank is None and h.dense_rank is not None for h in result)


@pytest.mark.parametrize("mode", ["dense", "lexical"])
def test_single_leg_modes_use_that_legs_raw_score(filled: HybridStore, mode: str) -> None:
    result = filled.search("capital of France", k=2, mode=mode)
    top = result[0]
    assert top.id == "d4"
    raw = top.dense_score if mode == "dense" else top.lexical_score
    assert top.score == raw
    other = top.lexical_score if mode == "dense" else top.dense_score
    assert other is None


@pytest.mark.parametrize("fusion", ["rrf", "relative_score", "dbsf"])
def test_every_fusion_method_runs(filled: HybridStore, fusion: str) -> None:
    result = filled.search("reciprocal rank fusion", k=3, fusion=fusion)
    assert result[0].id == "d3"


def test_alpha_one_is_dense_order_and_zero_is_lexical_order(filled: HybridStore) -> None:
    query = "vector similarity cosine"
    dense = filled.search(query, k=6, mode="dense").ids
    lexical = filled.search(query, k=6, mode="lexical").ids
    assert filled.search(query, k=6, alpha=1.0).ids[: len(dense)] == dense
    assert filled.search(query, k=len(lexical), alpha=0.0).ids == lexical


def test_filter_restricts_every_mode(filled: HybridStore) -> None:
    for mode in ("hybrid", "dense", "lexical"):
        result = filled.search("search capital code", k=6, mode=mode, filter={"kind": "misc"})
        assert result.ids and all(h.metadata["kind"] == "misc" for h in result)


def test_mmr_diversifies_results(store: HybridStore) -> None:
    copies = ["solar panels convert sunlight to power"] * 4
    store.add_texts([*copies, "wind turbines make power"], ids=["s1", "s2", "s3", "s4", "w"])
    plain = store.search("solar panels power", k=2, mode="dense").ids
    diverse = store.search("solar panels power", k=2, mode="dense", mmr=0.3).ids
    assert all("solar" in r.text for r in store.get(plain))
    assert any("wind" in r.text for r in store.get(diverse))


def test_search_by_vector_and_search_batch_agree_with_search(filled: HybridStore) -> None:
    query = "inverse document frequency"
    vector = filled.embedder.embed_query(query)
    assert filled.search_by_vector(vector, k=3).ids == filled.search(query, k=3, mode="dense").ids
    assert filled.search_by_vector(vector, k=3, query=query).ids == filled.search(query, k=3).ids
    batch = filled.search_batch([query, "Paris"], k=3)
    assert [r.ids for r in batch] == [filled.search(q, k=3).ids for q in (query, "Paris")]


def test_delete_and_count(filled: HybridStore) -> None:
    assert filled.count() == 6
    assert filled.count({"kind": "ir"}) == 4
    assert filled.delete(filter={"kind": "ir"}) == 4
    assert filled.delete(ids=["d4"]) == 1
    assert filled.count() == 1
    assert filled.search("BM25", k=5).ids == ["d5"]


def test_upsert_embeds_records_without_vectors_and_keeps_given_ones(store: HybridStore) -> None:
    given = np.ones(64, dtype=np.float32)
    original = Record("v", "with vector", {}, None)
    store.upsert([original, Record("w", "given vector", {}, given)])
    assert original.vector is None  # the caller's record is not modified
    got = {r.id: r for r in store.get(["v", "w"], include_vectors=True)}
    np.testing.assert_allclose(got["w"].vector, given)
    np.testing.assert_allclose(
        got["v"].vector, store.embedder.embed_query("with vector"), rtol=1e-5
    )


def test_tenants_scope_search_and_count(store: HybridStore) -> None:
    store.add_texts(["alpha doc about cats"], tenant="t1")
    store.add_texts(["beta doc about cats"], tenant="t2")
    assert store.count(tenant="t1") == 1
    assert [h.text for h in store.search("cats", tenant="t2")] == ["beta doc about cats"]
    assert store.search("cats").ids == []


async def test_async_twins(store: HybridStore) -> None:
    ids = await store.aadd_texts(["async one", "async two"], metadatas=[{"n": 1}, {"n": 2}])
    assert await store.acount() == 2
    result = await store.asearch("async one", k=1)
    assert result.ids == [ids[0]]
    assert [r.id for r in await store.aget(ids)] == ids
    batch = await store.asearch_batch(["async two"], k=1)
    assert batch[0].ids == [ids[1]]
    vector = store.embedder.embed_query("async two")
    assert (await store.asearch_by_vector(vector, k=1)).ids == [ids[1]]
    assert await store.adelete(ids=[ids[0]]) == 1
    assert await store.acount({"n": 2}) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "semantic"},
        {"fusion": "borda"},
        {"alpha": 1.5},
        {"alpha": "0.5"},
        {"k": 0},
        {"k": -3},
        {"candidates": 0},
        {"mmr": 2.0},
        {"tenant": ""},
        {"filter": {"x": {"$regex": "a"}}},
        {"filter": {"x": {"$gt": ["a"]}}},
    ],
)
def test_bad_search_parameters_raise_ragkit_errors(filled: HybridStore, kwargs: dict) -> None:
    with pytest.raises(RagkitError):
        filled.search("BM25", **kwargs)


def test_empty_query_is_rejected(filled: HybridStore) -> None:
    with pytest.raises(RagkitError, match="query"):
        filled.search("   ")


def test_path_and_backend_together_are_rejected(tmp_path) -> None:
    from ragkit.backends import LocalShard

    with LocalShard() as shard, pytest.raises(RagkitError, match="either path or backend"):
        HybridStore(tmp_path, backend=shard, embedder=HashingEmbedder(8))


@pytest.mark.parametrize("method", ["search", "search_batch"])
def test_a_mistyped_search_option_is_an_error_not_ignored(store: HybridStore, method: str) -> None:
    store.add_texts(["alpha beta"], metadatas=[{"g": 1}])
    query: Any = "alpha" if method == "search" else ["alpha"]
    with pytest.raises(TypeError, match="filtr"):
        getattr(store, method)(query, filtr={"g": 2})


def test_a_search_request_flows_unchanged_to_the_backend(store: HybridStore) -> None:
    store.add_texts(["alpha beta", "gamma delta"], ids=["a", "g"])
    request = store.request("alpha", k=1, mode="lexical", filter={"$not": {"x": 1}})
    assert request.k == 1 and request.mode is SearchMode.LEXICAL
    assert store.run(request).ids == ["a"]
    with pytest.raises(InvalidInputError, match="fusion='best'"):
        SearchRequest(text="alpha", fusion="best")  # type: ignore[arg-type]
