"""The Shard contract: one test suite every backend must pass.

Subclass ``ShardContract`` (or ``ReplicaContract`` for a shard that can be a partition
replica) in a test module and provide a ``make_shard`` fixture returning a factory that
creates a fresh, empty shard (pytest collects the inherited tests)::

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

from ragkit.analysis import Analyzer
from ragkit.backends.base import ReplicaGapError, ReplicaShard, RoutableShard, Shard, WriteBatch
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError
from ragkit.filters import matches, parse_filter
from ragkit.request import SearchRequest
from ragkit.schema import Candidate, LexicalStats, Record, SearchMode

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


def search_dense(shard: Shard, vector: np.ndarray, k: int, **options: Any) -> list[Candidate]:
    """The dense leg of ``shard.search`` as (id, score) pairs."""
    answer = shard.search(SearchRequest(vector=vector, k=k, mode=SearchMode.DENSE, **options))
    assert answer.dense is not None and answer.lexical is None
    return answer.dense.candidates()


def search_lexical(
    shard: Shard, text: str, k: int, stats: LexicalStats | None = None, **options: Any
) -> list[Candidate]:
    """The lexical leg of ``shard.search`` as (id, score) pairs."""
    request = SearchRequest(text=text, k=k, mode=SearchMode.LEXICAL, **options)
    answer = shard.search(request, stats=stats)
    assert answer.lexical is not None and answer.dense is None
    return answer.lexical.candidates()


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
        assert search_lexical(shard, "fox", 5) == []

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
        assert [c.id for c in search_lexical(filled, "volcanoes", 5)] == ["a"]
        assert "a" not in [c.id for c in search_lexical(filled, "jumps", 5)]

    def test_reupserting_identical_records_is_idempotent(self, filled: Shard) -> None:
        before = [c.id for c in search_lexical(filled, "quick fox", 8)]
        filled.upsert(make_records())
        assert filled.count() == len(CORPUS)
        assert [c.id for c in search_lexical(filled, "quick fox", 8)] == before

    def test_delete_by_ids_removes_from_both_legs(self, filled: Shard) -> None:
        assert filled.delete(["a", "c", "nope"]) == 2
        assert filled.count() == len(CORPUS) - 2
        assert filled.get(["a", "c"]) == []
        assert {"a", "c"}.isdisjoint(c.id for c in search_lexical(filled, "fox dog", 8))
        dense = search_dense(filled, query_vector("quick brown fox"), 8)
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
        got = search_dense(filled, query, 3)
        vectors = {r.id: np.asarray(r.vector) for r in make_records()}
        true = {i: float(np.dot(v, query)) for i, v in vectors.items()}
        best = sorted(true.values(), reverse=True)[:3]
        # Compare scores, not ids: records with equal similarity may come in either order.
        assert [c.score for c in got] == pytest.approx(best, abs=1e-5)
        for cand in got:
            assert cand.score == pytest.approx(true[cand.id], abs=1e-5)

    def test_dense_search_returns_k_hits_when_k_records_exist(self, filled: Shard) -> None:
        assert len(search_dense(filled, query_vector("anything"), 5)) == 5
        assert len(search_dense(filled, query_vector("anything"), 50)) == len(CORPUS)

    def test_lexical_search_matches_reference_bm25(self, filled: Shard) -> None:
        query = "the quick lazy cat"
        got = search_lexical(filled, query, 8)
        expected = reference_bm25(filled, query)
        assert [c.id for c in got] == [i for i, _ in expected]
        for cand, (_, score) in zip(got, expected):
            assert cand.score == pytest.approx(score, rel=1e-4)

    def test_lexical_search_treats_query_syntax_as_text(self, filled: Shard) -> None:
        for query in ['"quick" AND (fox*)', "title:quick OR fox~2", "fox) AND NOT ("]:
            got = search_lexical(filled, query, 8)
            assert {"a", "c"} & {c.id for c in got}, query
        assert search_lexical(filled, '"" () *:* AND OR', 8) == []

    # ---- filters --------------------------------------------------------------------------

    @pytest.mark.parametrize("spec", FILTERS, ids=[str(f) for f in FILTERS])
    def test_filters_match_reference_semantics(self, filled: Shard, spec: dict[str, Any]) -> None:
        flt = parse_filter(spec)
        expected = {rid for rid, _, meta in CORPUS if matches(flt, meta)}
        assert filled.count(filter=flt) == len(expected)
        dense = search_dense(filled, query_vector("fox cat computers energy"), 50, filter=flt)
        assert {c.id for c in dense} == expected
        lexical = {
            c.id for c in search_lexical(filled, "the of quick cat bits power", 50, filter=flt)
        }
        assert lexical <= expected

    def test_filtered_search_returns_k_hits_when_k_match(self, filled: Shard) -> None:
        flt = parse_filter({"animal": {"$in": ["fox", "cat"]}})
        got = search_dense(filled, query_vector("solar wind energy"), 3, filter=flt)
        assert len(got) == 3
        assert all(c.id in {"a", "b", "c", "f"} for c in got)

    # ---- tenants --------------------------------------------------------------------------

    def test_tenants_are_isolated(self, shard: Shard) -> None:
        shard.upsert(make_records(CORPUS[:4], tenant="t1"))
        shard.upsert(make_records([(f"{r}-2", t, m) for r, t, m in CORPUS[4:]], tenant="t2"))
        assert shard.count(tenant="t1") == 4
        assert shard.count(tenant="t2") == 4
        assert shard.count() == 0
        hits = search_lexical(shard, "quick fox cat bits", 10, tenant="t1")
        assert hits and all(not c.id.endswith("-2") for c in hits)
        dense = search_dense(shard, query_vector("energy"), 10, tenant="t2")
        assert len(dense) == 4 and all(c.id.endswith("-2") for c in dense)

    def test_the_same_id_in_two_tenants_is_two_records(self, shard: Shard) -> None:
        vec = query_vector("shared id")
        shard.upsert([Record("a1", "acme owns this", {"t": "acme"}, vec, "acme")])
        shard.upsert([Record("a1", "globex owns this", {"t": "globex"}, vec, "globex")])
        assert shard.get(["a1"], tenant="acme")[0].text == "acme owns this"
        assert shard.get(["a1"], tenant="globex")[0].text == "globex owns this"
        assert shard.get(["a1"]) == []  # the default tenant has no "a1"
        assert shard.delete(["a1"]) == 0  # a call without a tenant touches no other tenant
        assert shard.delete(["a1"], tenant="globex") == 1
        assert shard.get(["a1"], tenant="acme")[0].text == "acme owns this"
        assert shard.count(tenant="acme") == 1 and shard.count(tenant="globex") == 0

    # ---- one call answers both legs, with the records ------------------------------------

    def test_hybrid_search_answers_both_legs_with_their_records(self, filled: Shard) -> None:
        request = SearchRequest(
            text="quick fox", vector=query_vector("quick fox"), k=3, candidates=5
        )
        answer = filled.search(request)
        if type(filled).capabilities.native_hybrid:
            assert answer.fused is not None and len(answer.fused) == 3
            legs = [answer.fused]
        else:
            assert answer.dense is not None and answer.lexical is not None
            assert len(answer.dense) == 5  # request.depth candidates per leg
            legs = [answer.dense, answer.lexical]
        ids = [i for leg in legs for i in leg.ids]
        records = answer.records.fetch(ids)
        assert set(records) == set(ids)
        assert records[ids[0]].text == {r: t for r, t, _ in CORPUS}[ids[0]]

    def test_equal_scores_are_ordered_by_id(self, shard: Shard) -> None:
        vec = query_vector("identical")
        ids = ["m", "c", "x", "a", "k"]
        shard.upsert([Record(i, "identical text", {}, vec) for i in ids])
        assert [c.id for c in search_dense(shard, vec, 3)] == ["a", "c", "k"]
        assert [c.id for c in search_lexical(shard, "identical", 3)] == ["a", "c", "k"]

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
            search_lexical(filled, "fox", k)
        with pytest.raises(InvalidInputError):
            search_dense(filled, query_vector("fox"), k)

    # ---- async twins ----------------------------------------------------------------------

    async def test_async_twins_match_sync(self, filled: Shard) -> None:
        request = SearchRequest(text="quick fox", vector=query_vector("quick fox"), k=4)
        assert await filled.acount() == filled.count()
        got, want = await filled.asearch(request), filled.search(request)
        assert (got.dense, got.lexical, got.fused) == (want.dense, want.lexical, want.fused)
        assert [r.id for r in await filled.aget(["b"])] == ["b"]
        assert await filled.adelete(["b"]) == 1
        assert filled.count() == len(CORPUS) - 1


class ReplicaContract(ShardContract):
    """The Shard contract plus what a partition replica must do (``ReplicaShard``): report
    its BM25 statistics and take a router's (``RoutableShard``), versioned writes, idempotent
    and ordered delivery, and catch-up through ``changes_since``."""

    # ---- BM25 statistics a router reads (RoutableShard) ---------------------------------

    def test_lexical_stats_report_document_frequencies(self, filled: RoutableShard) -> None:
        terms = filled.analyze("quick cat qubits zebra")
        stats = filled.lexical_stats(terms)
        assert stats.doc_count == len(CORPUS)
        assert stats.doc_freqs.get(filled.analyze("quick")[0]) == 2
        assert stats.doc_freqs.get(filled.analyze("cat")[0]) == 2
        assert filled.analyze("zebra")[0] not in stats.doc_freqs

    def test_lexical_search_uses_supplied_global_stats(self, filled: RoutableShard) -> None:
        terms = filled.analyze("quick cat")
        local = filled.lexical_stats(terms)
        boosted = LexicalStats(
            local.doc_count * 10,
            local.total_length * 10,
            {t: (1 if t == terms[0] else 50) for t in terms},
        )
        plain = {c.id: c.score for c in search_lexical(filled, "quick cat", 8)}
        scored = {c.id: c.score for c in search_lexical(filled, "quick cat", 8, stats=boosted)}
        assert plain.keys() == scored.keys()
        assert plain != scored

    def test_bm25_statistics_are_per_tenant(self, make_shard: Callable[[], RoutableShard]) -> None:
        mixed, alone = make_shard(), make_shard()
        try:
            noise: Corpus = [(f"n{i}", f"alpha noise number {i}", {}) for i in range(6)]
            mixed.upsert(make_records(noise, tenant="t1"))
            mine: Corpus = [("m1", "alpha beta", {}), ("m2", "beta gamma", {})]
            mixed.upsert(make_records(mine, tenant="t2"))
            alone.upsert(make_records(mine, tenant="t2"))
            stats = mixed.lexical_stats(mixed.analyze("alpha beta"), tenant="t2")
            assert stats.doc_count == 2
            assert stats.doc_freqs[mixed.analyze("alpha")[0]] == 1
            # another tenant's documents neither change nor reveal anything in t2's scores
            got = search_lexical(mixed, "alpha beta", 5, tenant="t2")
            want = search_lexical(alone, "alpha beta", 5, tenant="t2")
            assert [c.id for c in got] == [c.id for c in want]
            assert [c.score for c in got] == pytest.approx([c.score for c in want], rel=1e-6)
        finally:
            mixed.close()
            alone.close()

    @pytest.fixture
    def replica_pair(self, make_shard: Callable[[], Shard]) -> Iterator[tuple[Any, Any]]:
        first, second = make_shard(), make_shard()
        assert isinstance(first, ReplicaShard) and isinstance(second, ReplicaShard)
        yield first, second
        first.close()
        second.close()

    def test_every_write_takes_the_next_version(self, shard: Shard) -> None:
        assert isinstance(shard, ReplicaShard)
        assert shard.version == 0
        shard.upsert(make_records()[:3])
        assert shard.version == 1
        assert shard.delete(["a"]) == 1 and shard.version == 2
        assert shard.delete(["nope"]) == 0 and shard.version == 2  # nothing changed

    def test_replicas_apply_versions_in_order_and_ignore_repeats(
        self, replica_pair: tuple[Any, Any]
    ) -> None:
        primary, replica = replica_pair
        batches = [
            WriteBatch(upserts=tuple(make_records()[:4])),
            WriteBatch(deletes=("b",)),
            WriteBatch(upserts=tuple(make_records()[4:])),
        ]
        acks = [primary.write(b) for b in batches]
        assert [a.version for a in acks] == [1, 2, 3] and acks[1].deleted == ("b",)
        with pytest.raises(ReplicaGapError):
            replica.write(batches[1], version=2)  # version 1 has not arrived
        for batch, ack in zip(batches, acks):
            forwarded = WriteBatch(batch.upserts, ack.deleted or None, None, batch.tenant)
            replica.write(forwarded, version=ack.version)
        assert replica.write(batches[0], version=1).changed is False  # a repeat is ignored
        assert replica.version == primary.version == 3
        assert sorted(replica.ids()) == sorted(primary.ids())

    def test_a_lagging_replica_catches_up_and_deletes_stay_deleted(
        self, replica_pair: tuple[Any, Any]
    ) -> None:
        source, lagging = replica_pair
        records = make_records()
        source.upsert(records[:5])
        lagging.apply_changes(source.changes_since(0))
        assert lagging.version == 1
        source.delete(["a", "b"])
        source.upsert(records[5:])
        source.upsert([Record("c", "rewritten text", {}, records[2].vector)])
        while lagging.version < source.version:
            lagging.apply_changes(source.changes_since(lagging.version, limit=2))
        assert sorted(lagging.ids()) == sorted(source.ids())
        assert lagging.get(["a", "b"]) == []
        assert lagging.get(["c"])[0].text == "rewritten text"
        assert lagging.version == source.version

    def test_changes_carry_vectors_and_tenants(self, replica_pair: tuple[Any, Any]) -> None:
        source, copy = replica_pair
        source.upsert(make_records(CORPUS[:3], tenant="t1"))
        copy.apply_changes(source.changes_since(0))
        (record,) = copy.get(["b"], tenant="t1", include_vectors=True)
        assert record.tenant == "t1" and record.vector is not None
        expected = make_records()[1].vector
        assert expected is not None
        np.testing.assert_allclose(record.vector, expected, rtol=1e-6)


def reference_bm25(
    shard: Shard, query: str, k1: float = 1.2, b: float = 0.75
) -> list[tuple[str, float]]:
    """A straightforward BM25 (Lucene IDF) over the shard's live records, for comparison."""
    analyze = shard.analyze if isinstance(shard, RoutableShard) else Analyzer().tokens
    ids = [rid for rid, _, _ in CORPUS]
    docs = {r.id: analyze(r.text) for r in shard.get(ids)}
    n = len(docs)
    avg = sum(len(t) for t in docs.values()) / n
    df = Counter(term for terms in docs.values() for term in set(terms))
    scores: dict[str, float] = {}
    for term, qtf in Counter(analyze(query)).items():
        if term not in df:
            continue
        idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
        for rid, terms in docs.items():
            tf = terms.count(term)
            if tf:
                norm = tf + k1 * (1 - b + b * len(terms) / avg)
                scores[rid] = scores.get(rid, 0.0) + qtf * idf * tf * (k1 + 1) / norm
    return sorted(scores.items(), key=lambda kv: (-kv[1], ids.index(kv[0])))
