"""The Shard contract: one test suite every backend must pass.

Subclass ``ShardContract`` in a test module and provide a ``make_shard`` fixture returning a
factory that creates a fresh, empty shard (pytest collects the inherited tests)::

    class TestMyShard(ShardContract):
        @pytest.fixture
        def make_shard(self, tmp_path):
            return lambda: MyShard(tmp_path / "s")

Vectors come from ``HashingEmbedder``, so the suite needs no model and is deterministic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from ragkit.backends.base import Shard
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError
from ragkit.filters import matches, parse_filter
from ragkit.schema import LexicalStats, Record

DIM = 32
_EMBEDDER = HashingEmbedder(dim=DIM)

Corpus = list[tuple[str, str, dict[str, Any]]]

CORPUS: Corpus = [
    ("a", "The quick brown fox jumps over the lazy dog", {"animal": "fox", "n": 1, "tags": ["x"]}),
    ("b", "A lazy cat sleeps in the warm sun all day", {"animal": "cat", "n": 2, "tags": ["y"]}),
    ("c", "Foxes and dogs are both canines of the wild", {"animal": "fox", "n": 3}),
    ("d", "Quantum computers use qubits instead of bits", {"topic": "cs", "n": 4, "ok": True}),
    ("e", "Classical computers process bits with transistors", {"topic": "cs", "n": 5.5}),
    ("f", "The cat chased the quick mouse around the house", {"animal": "cat", "ok": False}),
    (
        "g",
        "Solar panels convert sunlight into electricity",
        {"topic": "energy", "tags": ["x", "y"]},
    ),
    ("h", "Wind turbines generate power from moving air", {"topic": "energy", "n": 8}),
]

FILTERS: list[dict[str, Any]] = [
    {"animal": "fox"},
    {"animal": {"$ne": "fox"}},
    {"n": {"$gt": 2}},
    {"n": {"$gte": 2, "$lt": 5}},
    {"n": {"$lte": 1}},
    {"topic": {"$in": ["cs", "energy"]}},
    {"topic": {"$nin": ["cs"]}},
    {"ok": {"$exists": True}},
    {"ok": True},
    {"tags": {"$contains": "x"}},
    {"animal": {"$contains": "a"}},
    {"$or": [{"animal": "cat"}, {"n": {"$gte": 8}}]},
    {"$and": [{"topic": "cs"}, {"n": {"$gt": 4}}]},
    {"$not": {"animal": "fox"}},
]


def make_records(corpus: Corpus = CORPUS, tenant: str | None = None) -> list[Record]:
    vectors = _EMBEDDER.embed_documents([text for _, text, _ in corpus])
    return [
        Record(rid, text, dict(meta), vectors[i], tenant)
        for i, (rid, text, meta) in enumerate(corpus)
    ]


def query_vector(text: str) -> np.ndarray:
    return _EMBEDDER.embed_query(text)


class ShardContract:
    """Inherit and provide ``make_shard``; every test runs against your backend."""

    @pytest.fixture
    def make_shard(self) -> Callable[[], Shard]:
        raise NotImplementedError("provide a make_shard fixture")

    @pytest.fixture
    def shard(self, make_shard: Callable[[], Shard]) -> Iterator[Shard]:
        shard = make_shard()
        yield shard
        shard.close()

    @pytest.fixture
    def filled(self, shard: Shard) -> Shard:
        shard.upsert(make_records())
        return shard

    # ---- writes and reads -----------------------------------------------------------------

    def test_empty_shard_counts_zero_and_finds_nothing(self, shard: Shard) -> None:
        assert shard.count() == 0
        assert shard.get(["a"]) == []
        assert shard.search_lexical("fox", 5) == []

    def test_upsert_then_get_returns_records_in_asked_order(self, filled: Shard) -> None:
        got = filled.get(["c", "a", "missing"])
        assert [r.id for r in got] == ["c", "a"]
        assert got[1].text == CORPUS[0][1]
        assert got[1].metadata == CORPUS[0][2]

    def test_get_with_vectors_returns_the_stored_vector(self, filled: Shard) -> None:
        (record,) = filled.get(["d"], include_vectors=True)
        assert record.vector is not None
        expected = make_records()[3].vector
        assert expected is not None
        np.testing.assert_allclose(np.asarray(record.vector), np.asarray(expected), rtol=1e-6)

    def test_count_counts_every_record(self, filled: Shard) -> None:
        assert filled.count() == len(CORPUS)

    def test_ids_lists_records_passing_a_filter(self, filled: Shard) -> None:
        assert sorted(filled.ids()) == sorted(rid for rid, _, _ in CORPUS)
        assert sorted(filled.ids(filter=parse_filter({"animal": "cat"}))) == ["b", "f"]
        assert filled.ids(tenant="nobody") == []

    def test_upsert_replaces_existing_id(self, filled: Shard) -> None:
        vec = query_vector("volcanoes erupt lava")
        filled.upsert([Record("a", "Volcanoes erupt lava", {"animal": "none"}, vec)])
        assert filled.count() == len(CORPUS)
        assert filled.get(["a"])[0].text == "Volcanoes erupt lava"
        assert [c.id for c in filled.search_lexical("volcanoes", 5)] == ["a"]
        assert "a" not in [c.id for c in filled.search_lexical("jumps", 5)]

    def test_reupserting_identical_records_is_idempotent(self, filled: Shard) -> None:
        before = [c.id for c in filled.search_lexical("quick fox", 8)]
        filled.upsert(make_records())
        assert filled.count() == len(CORPUS)
        assert [c.id for c in filled.search_lexical("quick fox", 8)] == before

    def test_delete_by_ids_removes_from_both_legs(self, filled: Shard) -> None:
        assert filled.delete(["a", "c", "nope"]) == 2
        assert filled.count() == len(CORPUS) - 2
        assert filled.get(["a", "c"]) == []
        assert {"a", "c"}.isdisjoint(c.id for c in filled.search_lexical("fox dog", 8))
        dense = filled.search_dense(query_vector("quick brown fox"), 8)
        assert {"a", "c"}.isdisjoint(c.id for c in dense)

    def test_delete_by_filter(self, filled: Shard) -> None:
        assert filled.delete(filter=parse_filter({"topic": "energy"})) == 2
        assert filled.count(filter=parse_filter({"topic": "energy"})) == 0
        assert filled.count() == len(CORPUS) - 2

    def test_delete_without_ids_or_filter_is_an_error(self, filled: Shard) -> None:
        with pytest.raises(InvalidInputError):
            filled.delete()
        assert filled.count() == len(CORPUS)

    # ---- the two legs ---------------------------------------------------------------------

    def test_dense_search_ranks_by_cosine_similarity(self, filled: Shard) -> None:
        query = query_vector("lazy cat in the sun")
        got = filled.search_dense(query, 3)
        vectors = {r.id: np.asarray(r.vector) for r in make_records()}
        true = {i: float(np.dot(v, query)) for i, v in vectors.items()}
        best = sorted(true.values(), reverse=True)[:3]
        # Compare scores, not ids: records with equal similarity may come in either order.
        assert [c.score for c in got] == pytest.approx(best, abs=1e-5)
        for cand in got:
            assert cand.score == pytest.approx(true[cand.id], abs=1e-5)

    def test_dense_search_returns_k_hits_when_k_records_exist(self, filled: Shard) -> None:
        assert len(filled.search_dense(query_vector("anything"), 5)) == 5
        assert len(filled.search_dense(query_vector("anything"), 50)) == len(CORPUS)

    def test_lexical_search_matches_reference_bm25(self, filled: Shard) -> None:
        query = "the quick lazy cat"
        got = filled.search_lexical(query, 8)
        expected = reference_bm25(filled, query)
        assert [c.id for c in got] == [i for i, _ in expected]
        for cand, (_, score) in zip(got, expected):
            assert cand.score == pytest.approx(score, rel=1e-4)

    def test_lexical_search_treats_query_syntax_as_text(self, filled: Shard) -> None:
        for query in ['"quick" AND (fox*)', "title:quick OR fox~2", "fox) AND NOT ("]:
            got = filled.search_lexical(query, 8)
            assert {"a", "c"} & {c.id for c in got}, query
        assert filled.search_lexical('"" () *:* AND OR', 8) == []

    def test_lexical_stats_report_document_frequencies(self, filled: Shard) -> None:
        terms = filled.analyze("quick cat qubits zebra")
        stats = filled.lexical_stats(terms)
        assert stats.doc_count == len(CORPUS)
        assert stats.doc_freqs.get(filled.analyze("quick")[0]) == 2
        assert stats.doc_freqs.get(filled.analyze("cat")[0]) == 2
        assert filled.analyze("zebra")[0] not in stats.doc_freqs

    def test_lexical_search_uses_supplied_global_stats(self, filled: Shard) -> None:
        terms = filled.analyze("quick cat")
        local = filled.lexical_stats(terms)
        boosted = LexicalStats(
            local.doc_count * 10,
            local.total_length * 10,
            {t: (1 if t == terms[0] else 50) for t in terms},
        )
        plain = {c.id: c.score for c in filled.search_lexical("quick cat", 8)}
        scored = {c.id: c.score for c in filled.search_lexical("quick cat", 8, stats=boosted)}
        assert plain.keys() == scored.keys()
        assert plain != scored

    # ---- filters --------------------------------------------------------------------------

    @pytest.mark.parametrize("spec", FILTERS, ids=[str(f) for f in FILTERS])
    def test_filters_match_reference_semantics(self, filled: Shard, spec: dict[str, Any]) -> None:
        flt = parse_filter(spec)
        expected = {rid for rid, _, meta in CORPUS if matches(flt, meta)}
        assert filled.count(filter=flt) == len(expected)
        dense = filled.search_dense(query_vector("fox cat computers energy"), 50, filter=flt)
        assert {c.id for c in dense} == expected
        lexical = {
            c.id for c in filled.search_lexical("the of quick cat bits power", 50, filter=flt)
        }
        assert lexical <= expected

    def test_filtered_search_returns_k_hits_when_k_match(self, filled: Shard) -> None:
        flt = parse_filter({"animal": {"$in": ["fox", "cat"]}})
        got = filled.search_dense(query_vector("solar wind energy"), 3, filter=flt)
        assert len(got) == 3
        assert all(c.id in {"a", "b", "c", "f"} for c in got)

    # ---- tenants --------------------------------------------------------------------------

    def test_tenants_are_isolated(self, shard: Shard) -> None:
        shard.upsert(make_records(CORPUS[:4], tenant="t1"))
        shard.upsert(make_records([(f"{r}-2", t, m) for r, t, m in CORPUS[4:]], tenant="t2"))
        assert shard.count(tenant="t1") == 4
        assert shard.count(tenant="t2") == 4
        assert shard.count() == 0
        hits = shard.search_lexical("quick fox cat bits", 10, tenant="t1")
        assert hits and all(not c.id.endswith("-2") for c in hits)
        dense = shard.search_dense(query_vector("energy"), 10, tenant="t2")
        assert len(dense) == 4 and all(c.id.endswith("-2") for c in dense)

    # ---- validation: bad input changes nothing --------------------------------------------

    def test_bad_records_are_rejected_and_change_nothing(self, filled: Shard) -> None:
        good = make_records([("new", "a fresh record", {})])[0]
        bad_batches = [
            [good, Record("x", "   ", {}, good.vector)],
            [good, Record("x", "text", {}, np.ones(DIM + 1, dtype=np.float32))],
            [good, Record("x", "text", {}, np.full(DIM, np.nan, dtype=np.float32))],
            [good, Record("new", "dup id", {}, good.vector)],
            [good, Record("x", "text", {"when": object()}, good.vector)],
            [good, Record(7, "text", {}, good.vector)],  # type: ignore[arg-type]
        ]
        for batch in bad_batches:
            with pytest.raises(InvalidInputError):
                filled.upsert(batch)
        assert filled.count() == len(CORPUS)
        assert filled.get(["new", "x"]) == []

    @pytest.mark.parametrize("k", [0, -1, 1.5, True])
    def test_non_positive_k_is_rejected(self, filled: Shard, k: Any) -> None:
        with pytest.raises(InvalidInputError):
            filled.search_lexical("fox", k)
        with pytest.raises(InvalidInputError):
            filled.search_dense(query_vector("fox"), k)

    # ---- async twins ----------------------------------------------------------------------

    async def test_async_twins_match_sync(self, filled: Shard) -> None:
        query = query_vector("quick fox")
        assert await filled.acount() == filled.count()
        assert await filled.asearch_dense(query, 4) == filled.search_dense(query, 4)
        assert await filled.asearch_lexical("fox", 4) == filled.search_lexical("fox", 4)
        assert [r.id for r in await filled.aget(["b"])] == ["b"]
        assert await filled.adelete(["b"]) == 1
        assert filled.count() == len(CORPUS) - 1


def reference_bm25(
    shard: Shard, query: str, k1: float = 1.2, b: float = 0.75
) -> list[tuple[str, float]]:
    """A straightforward BM25 (Lucene IDF) over the shard's live records, for comparison."""
    ids = [rid for rid, _, _ in CORPUS]
    docs = {r.id: shard.analyze(r.text) for r in shard.get(ids)}
    n = len(docs)
    avg = sum(len(t) for t in docs.values()) / n
    df = Counter(term for terms in docs.values() for term in set(terms))
    scores: dict[str, float] = {}
    for term, qtf in Counter(shard.analyze(query)).items():
        if term not in df:
            continue
        idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
        for rid, terms in docs.items():
            tf = terms.count(term)
            if tf:
                norm = tf + k1 * (1 - b + b * len(terms) / avg)
                scores[rid] = scores.get(rid, 0.0) + qtf * idf * tf * (k1 + 1) / norm
    return sorted(scores.items(), key=lambda kv: (-kv[1], ids.index(kv[0])))
