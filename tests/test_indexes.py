"""The LocalShard legs against straightforward references: exact scan and a rebuilt index."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from ragkit.analysis import Analyzer
from ragkit.backends import LocalShard
from ragkit.filters import parse_filter
from ragkit.schema import Record
from ragkit.testing.shard_contract import search_dense, search_lexical

RNG = np.random.default_rng(7)
VOCAB = [f"w{i}" for i in range(400)]


def random_texts(n: int, rng: np.random.Generator) -> list[str]:
    # Zipf-like word choice: a few common words, a long tail.
    weights = 1.0 / np.arange(1, len(VOCAB) + 1)
    weights /= weights.sum()
    return [" ".join(rng.choice(VOCAB, size=rng.integers(3, 30), p=weights)) for _ in range(n)]


def clustered_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Embedding-like vectors: topic clusters in a low-dimensional subspace, plus noise.

    (Isotropic noise in all dimensions has no neighbourhood structure at all, unlike real
    sentence embeddings, and would measure HNSW on data nobody searches.)
    """
    basis = np.random.default_rng(0).standard_normal((8, dim))
    centers = rng.standard_normal((20, 8))
    latent = centers[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, 8))
    x = latent @ basis + 0.1 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def records(texts: list[str], vectors: np.ndarray, start: int = 0) -> list[Record]:
    return [
        Record(f"r{start + i}", t, {"bucket": (start + i) % 10}, vectors[i])
        for i, t in enumerate(texts)
    ]


def test_incremental_segments_and_deletes_equal_a_fresh_build() -> None:
    rng = np.random.default_rng(1)
    texts = random_texts(3000, rng)
    vectors = clustered_vectors(3000, 16, rng)
    incremental = LocalShard()
    for start in range(0, 3000, 97):  # many small batches: many segment merges
        incremental.upsert(records(texts[start : start + 97], vectors[start : start + 97], start))
    deleted = [f"r{i}" for i in range(0, 3000, 3)]
    incremental.delete(deleted)
    survivors = [i for i in range(3000) if i % 3]
    fresh = LocalShard()
    fresh.upsert([records([texts[i]], vectors[i : i + 1], i)[0] for i in survivors])
    for query in ["w1 w5 w77", "w300 w2", "w0", "w399 w398 w150 w3"]:
        a = search_lexical(incremental, query, 20)
        b = search_lexical(fresh, query, 20)
        assert [c.id for c in a] == [c.id for c in b]
        np.testing.assert_allclose([c.score for c in a], [c.score for c in b], rtol=1e-5)
    assert incremental.info()["lexical_segments"] <= 8  # logarithmic merging keeps them few


def test_bm25_factors_kept_between_searches_score_as_computed_afresh() -> None:
    """Each segment keeps the BM25 factors of the terms searches have needed, for one
    average length; searches that reuse them, and searches after writes that change the
    average, score exactly as a shard that never kept any."""
    rng = np.random.default_rng(5)
    texts = random_texts(1200, rng)
    vectors = clustered_vectors(1200, 8, rng)
    kept = LocalShard()
    kept.upsert(records(texts[:1000], vectors[:1000]))
    queries = ["w1 w5 w77", "w300 w2", "w1 w2 w3", "w0 w77 w150", "w1 w5 w77"]

    def afresh(n: int) -> LocalShard:
        shard = LocalShard()
        shard.upsert(records(texts[:n], vectors[:n]))
        return shard

    for n in (1000, 1100, 1200):
        if n > 1000:  # longer documents on average: every kept factor is stale
            kept.upsert(records(texts[n - 100 : n], vectors[n - 100 : n], n - 100))
        reference = afresh(n)
        for _ in range(2):  # the second pass reads factors the first one kept
            for query in queries:
                got, want = search_lexical(kept, query, 30), search_lexical(reference, query, 30)
                assert [c.id for c in got] == [c.id for c in want]
                assert [c.score for c in got] == [c.score for c in want]
        reference.close()
    kept.close()


@pytest.mark.parametrize("selectivity", [None, 0.5, 0.1, 0.01])
def test_hnsw_recall_against_exact_scan(selectivity: float | None) -> None:
    rng = np.random.default_rng(2)
    n, dim = 20_000, 32
    vectors = clustered_vectors(n, dim, rng)
    texts = ["t"] * n
    recs = [Record(f"r{i}", texts[i], {"u": float(rng.random())}, vectors[i]) for i in range(n)]
    ann = LocalShard(exact_threshold=1000)
    exact = LocalShard(exact_threshold=10**9)
    for shard in (ann, exact):
        shard.upsert(recs)
    assert ann.info()["hnsw"]
    flt = None if selectivity is None else parse_filter({"u": {"$lt": selectivity}})
    queries = clustered_vectors(50, dim, rng)
    recalls = []
    for q in queries:
        got = search_dense(ann, q, 10, filter=flt)
        want = search_dense(exact, q, 10, filter=flt)
        assert len(got) == 10
        if flt is not None:
            assert all(r.metadata["u"] < selectivity for r in ann.get([c.id for c in got]))
        recalls.append(len({c.id for c in got} & {c.id for c in want}) / 10)
    assert np.mean(recalls) >= 0.95


def test_ties_are_ordered_by_id_as_a_full_sort_by_score_then_id_would() -> None:
    from ragkit.backends.local._indexes import _ties_by_id

    rng = np.random.default_rng(3)
    ids = [f"id-{rng.integers(10**6):06d}-{i}" for i in range(500)]
    for _ in range(200):
        n = int(rng.integers(1, 120))
        rows = rng.choice(500, n, replace=False).astype(np.int64)
        scores = np.sort(rng.integers(0, 8, n).astype(np.float32) / 7)[::-1]  # many ties
        k = int(rng.integers(1, n + 3))
        want = np.lexsort((np.array([ids[r] for r in rows], dtype=object), -scores))[:k]
        assert _ties_by_id(rows, scores, ids, k).tolist() == want.tolist()


def test_a_growing_vocabulary_adds_nothing_the_garbage_collector_walks() -> None:
    """Every full collection walks every container object alive. An analyzer holding one
    per distinct word (PyStemmer's own cache kept a list per word, 10,000 per analyzer and
    one analyzer per shard) made a 48,000-record sharded store's full collections take about
    100 ms, pausing every thread."""
    analyzer = Analyzer()
    words = " ".join(f"token{i}x running" for i in range(20_000))
    gc.collect()
    before = len(gc.get_objects())
    terms = analyzer.tokens(words)
    del terms
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert analyzer.tokens("Running token7x") == ["run", "token7x"]
