"""The compiled query kernels of a LocalShard against plain numpy and Python references."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ragkit.backends import LocalShard
from ragkit.backends.local import _kernels as kernels
from ragkit.backends.local._arrays import GrowableArray
from ragkit.fusion import Fused, ranked_by_score
from ragkit.request import SearchRequest
from ragkit.schema import Record


def _matrix_with_ties(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit rows, a third of them copies of others (equal scores at every cut)."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    copies = rng.integers(0, n, n // 3)
    x[rng.integers(0, n, n // 3)] = x[copies]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _reference_top(scores: np.ndarray, k: int) -> set[int]:
    """Every position whose score is at least the k-th best."""
    if k >= len(scores):
        return set(range(len(scores)))
    kth = np.sort(scores)[::-1][k - 1]
    return set(np.flatnonzero(scores >= kth).tolist())


@pytest.mark.parametrize("dim", [4, 13, 384])
def test_a_rows_dense_score_does_not_depend_on_the_other_rows(dim: int) -> None:
    rng = np.random.default_rng(dim)
    matrix = _matrix_with_ties(rng, 300, dim)
    query = rng.standard_normal(dim).astype(np.float32)
    everything = kernels.dot_rows(matrix, np.arange(300, dtype=np.int64), query)
    some = rng.choice(300, 40, replace=False).astype(np.int64)
    gathered = np.ascontiguousarray(matrix[some])
    alone = kernels.dot_rows(gathered, np.arange(40, dtype=np.int64), query)
    assert alone.tobytes() == everything[some].tobytes()
    np.testing.assert_allclose(everything, matrix.astype(np.float64) @ query, atol=1e-5)


@pytest.mark.parametrize("k", [1, 7, 50, 299, 400])
@pytest.mark.parametrize("filtered", [False, True])
def test_exact_top_is_a_full_fixed_order_scans_top_k_with_ties(k: int, filtered: bool) -> None:
    rng = np.random.default_rng(k)
    matrix = _matrix_with_ties(rng, 300, 384)
    query = matrix[5] + 0.01 * rng.standard_normal(384).astype(np.float32)
    excluded = rng.random(300) < 0.4 if filtered else None
    rows, scores, tied = kernels.exact_top(matrix, query, k, excluded, 1e-3)
    assert tied == bool(np.any(scores[1:] == scores[:-1]))
    full = kernels.dot_rows(matrix, np.arange(300, dtype=np.int64), query)
    allowed = np.flatnonzero(~excluded) if excluded is not None else np.arange(300)
    want = {int(allowed[i]) for i in _reference_top(full[allowed], k)}
    assert set(rows.tolist()) == want
    assert scores.tobytes() == full[rows].tobytes()


def _awkward_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit rows with ties, plus rows the int8 codes fit badly: one large component among
    small ones, all components equal, all zero (a padded row), and a long non-unit row."""
    matrix = _matrix_with_ties(rng, n, dim)
    matrix[0] = 0.0
    matrix[0, 0] = 1.0
    matrix[1] = np.float32(1.0 / np.sqrt(dim))
    matrix[2] = 0.0
    matrix[3] = 1e-3 * rng.standard_normal(dim)
    matrix[3, -1] = 0.9
    matrix[4] *= 40.0
    return matrix


@pytest.mark.parametrize("dim", [4, 13, 384])
@pytest.mark.parametrize("k", [1, 7, 50, 299, 400])
@pytest.mark.parametrize("filtered", [False, True])
def test_the_int8_scan_finds_exact_tops_rows_and_scores(dim: int, k: int, filtered: bool) -> None:
    rng = np.random.default_rng(dim * 1000 + k)
    matrix = _awkward_rows(rng, 300, dim)
    codes, steps = kernels.quantize(matrix)
    excluded = rng.random(300) < 0.4 if filtered else None
    for query in (matrix[5] + 0.01 * rng.standard_normal(dim), rng.standard_normal(dim)):
        query = query.astype(np.float32)
        rows, scores, tied = kernels.coded_top(codes, steps, matrix, query, k, excluded, 1e-3)
        want_rows, want_scores, want_tied = kernels.exact_top(matrix, query, k, excluded, 1e-3)
        assert rows.tolist() == want_rows.tolist()
        assert scores.tobytes() == want_scores.tobytes()
        assert tied == want_tied


@pytest.mark.parametrize("dim", [4, 384, 1536])
def test_a_coded_score_is_within_its_bound_of_the_exact_score(dim: int) -> None:
    rng = np.random.default_rng(dim)
    matrix = _awkward_rows(rng, 500, dim)
    # Components that sit half a step from a code: the largest rounding there is.
    matrix[5:50] = np.float32(0.5) / 127 * rng.integers(-254, 254, (45, dim))
    matrix[5:50, 0] = 1.0
    codes, steps = kernels.quantize(matrix)
    assert np.abs(codes.astype(np.int32)).max() <= 127
    assert np.abs(codes[steps == 0]).sum() == 0
    for query in (rng.standard_normal(dim), np.ones(dim), matrix[7]):
        query = query.astype(np.float32)
        coded = np.empty(500, dtype=np.float32)
        kernels._coded_scores_c(codes, steps, query, coded)
        exact = matrix.astype(np.float64) @ query.astype(np.float64)
        q_l1 = np.abs(query.astype(np.float64)).sum()
        bound = steps * q_l1 * (kernels._CODE_ERROR_BASE + dim * kernels._CODE_ERROR_PER_DIM)
        assert np.all(np.abs(coded - exact) <= bound)
        assert np.abs(coded - exact).max() > 0.01 * bound.max()  # the bound is not vacuous


def test_an_unindexed_shard_scans_codes_that_follow_writes_and_reopen(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    shard = LocalShard(tmp_path / "kb", exact_threshold=400)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    shard.upsert([Record(f"r{i}", f"text {i}", {}, vectors[i]) for i in range(300)])
    shard.delete([f"r{i}" for i in range(0, 300, 3)])
    shard.upsert([Record(f"r{i}", f"text {i}", {}, -vectors[i]) for i in range(1, 300, 7)])
    dense = shard._ix.dense
    assert dense.codes is not None and dense.steps is not None
    assert len(dense.codes) == len(dense.steps) == len(dense.matrix)
    unit = dense.matrix.view
    np.testing.assert_array_equal(dense.codes.view, kernels.quantize(unit)[0])
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    request = {"k": 25, "mode": "dense"}
    before = [shard.search(SearchRequest(vector=q, **request)).dense for q in queries]
    shard.close()
    reopened = LocalShard(tmp_path / "kb", exact_threshold=400)
    after = [reopened.search(SearchRequest(vector=q, **request)).dense for q in queries]
    assert all(a is not None and a == b for a, b in zip(before, after))
    # The same search by the BLAS product (no codes) gives the same legs, bit for bit.
    reopened._ix.dense.codes = reopened._ix.dense.steps = None
    blas = [reopened.search(SearchRequest(vector=q, **request)).dense for q in queries]
    assert all(a == b for a, b in zip(before, blas))
    codes, steps = kernels.quantize(reopened._ix.dense.matrix.view)
    reopened._ix.dense.codes, reopened._ix.dense.steps = (
        GrowableArray.wrap(codes),
        GrowableArray.wrap(steps),
    )
    # Past the threshold the HNSW graph takes over and the codes are dropped.
    more = rng.standard_normal((200, 16)).astype(np.float32)
    reopened.upsert([Record(f"m{i}", "more", {}, more[i]) for i in range(200)])
    assert reopened._ix.dense.hnsw is not None and reopened._ix.dense.codes is None
    reopened.close()


@pytest.mark.parametrize("spread", [0.2, 1e-4, 30.0])  # cosines; one crowded bin; far out
@pytest.mark.parametrize("filtered", [False, True])
def test_the_floor_in_a_known_range_is_at_most_the_kth_best(spread: float, filtered: bool) -> None:
    rng = np.random.default_rng(int(spread * 10) + filtered)
    values = (rng.standard_normal(5000) * spread).astype(np.float32)
    values[:50] = np.float32(1.0004)  # the top bin (and rounding past 1)
    skip = rng.random(5000) < 0.3 if filtered else kernels.NO_MASK
    kept = values[~skip] if filtered else values
    for k in (1, 10, 100, 999, len(kept), len(kept) + 1):
        floor = kernels._floor_in_range_c(values, skip, k, *kernels.UNIT_RANGE)
        if k >= len(kept):
            assert floor == -np.inf
            continue
        assert floor <= np.sort(kept)[-k]
        if spread == 0.2:  # few candidates beyond the k best
            assert (kept >= floor).sum() <= k + 60


@pytest.mark.parametrize("known", [None, (0.0, 1.0), (0.0, 40.0), (-3.0, 0.5)])
def test_best_k_keeps_every_score_equal_to_the_kth_best_first(
    known: tuple[float, float] | None,
) -> None:
    # ``known``: no range, the values' own range, one too wide, one too narrow (values
    # outside it); the result never depends on it.
    lo, hi = known or (np.nan, np.nan)
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.5, 0.9])
    assert kernels.best_k(scores, 3, lo, hi).tolist() == [1, 5, 0, 2, 4]
    assert kernels.best_k(scores, 2, lo, hi).tolist() == [1, 5]
    assert kernels.best_k(scores, 10, lo, hi).tolist() == [1, 5, 0, 2, 4, 3]
    assert kernels.best_k(scores, 0, lo, hi).tolist() == []
    assert kernels.best_k(np.full(7, 0.25), 3, lo, hi).tolist() == list(range(7))
    rng = np.random.default_rng(1)
    for n, k in [(5000, 100), (2600, 1), (300, 299), (50, 60)]:
        values = np.round(rng.beta(2.0, 5.0, size=n), 2)  # rounded: many ties
        got = kernels.best_k(values, k, lo, hi)
        assert set(got.tolist()) == _reference_top(values, k)
        assert np.all(np.diff(values[got]) <= 0)


@pytest.mark.parametrize("outliers", [0, 3])
def test_the_top_k_floor_leaves_few_candidates_even_with_outliers(outliers: int) -> None:
    """A few huge scores put nearly every other score in one histogram bin; the bin is
    narrowed again, so the candidates above the floor stay a few times k."""
    rng = np.random.default_rng(outliers)
    values = rng.random(200_000)
    values[:outliers] = 1e6
    for k in (1, 100, 1000):
        floor = kernels._floor_of_top_c(values, np.zeros(0, dtype=bool), k)
        kth = np.sort(values)[::-1][k - 1]
        assert floor <= kth
        assert int((values >= floor).sum()) <= 3 * k + 64
        assert set(kernels.best_k(values, k, np.nan, np.nan).tolist()) == _reference_top(values, k)


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    vocab = [f"w{i}" for i in range(60)]
    weights = 1.0 / np.arange(1, 61)
    weights /= weights.sum()
    return [" ".join(rng.choice(vocab, size=rng.integers(2, 25), p=weights)) for _ in range(n)]


def _plain_bm25(texts: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> dict[int, float]:
    """Lucene's BM25, one document at a time."""
    docs = [t.split() for t in texts]
    avg = sum(map(len, docs)) / len(docs)
    out: dict[int, float] = {}
    for row, words in enumerate(docs):
        counts = Counter(words)
        score = 0.0
        for term in query.split():
            df = sum(term in d for d in docs)
            if not counts[term]:
                continue
            idf = math.log(1.0 + (len(docs) - df + 0.5) / (df + 0.5))
            tf = counts[term]
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(words) / avg))
        if score:
            out[row] = score
    return out


@pytest.mark.parametrize("batches", [1, 5])
def test_bm25_scores_every_matching_record_as_plain_bm25(batches: int) -> None:
    rng = np.random.default_rng(batches)
    texts = _texts(rng, 400)
    shard = LocalShard(dense=False)
    try:
        for part in np.array_split(np.arange(400), batches):  # several index segments
            shard.upsert([Record(f"r{i:03d}", texts[i], {"odd": int(i % 2)}) for i in part])
        for query in ["w0 w1", "w3 w3 w40", "w59", "w7 w12 w0 w33"]:
            want = _plain_bm25(texts, query)
            for flt in (None, {"odd": 1}):
                request = SearchRequest(text=query, mode="lexical", k=400, filter=flt)
                leg = shard.search(request).lexical
                assert leg is not None
                got = dict(zip(leg.ids, np.asarray(leg.scores).tolist()))
                expected = {
                    f"r{row:03d}": score
                    for row, score in want.items()
                    if flt is None or row % 2 == 1
                }
                assert got.keys() == expected.keys()
                for rid, score in expected.items():
                    assert got[rid] == pytest.approx(score, rel=1e-6)
            # the accumulator is left zeroed for the next search
            assert not shard._ix.lexical._acc.any()
    finally:
        shard.close()


def test_rank_order_is_ranked_by_scores_order() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        scores = rng.choice([0.2, 0.5, 0.7], n).astype(np.float64)
        ranks = rng.choice([0, 1, 2, 3], (2, n)).astype(np.int64)
        fused = Fused([f"id{i}" for i in range(n)], scores, np.zeros((2, n)), ranks)
        order, tied = kernels.rank_order(scores, ranks)

        def key(i: int, scores: np.ndarray = scores, ranks: np.ndarray = ranks) -> tuple:
            present = [(int(ranks[leg, i]), leg) for leg in range(2) if ranks[leg, i] > 0]
            rank, leg = min(present) if present else (np.iinfo(np.int64).max, 0)
            return (-scores[i], rank, leg)

        keys = [key(i) for i in range(n)]
        # tied: two records differ only by id, and the caller falls back to ranked_by_score
        assert tied == (len(set(keys)) < n)
        if not tied:
            assert list(fused.take(order).ids) == list(ranked_by_score(fused).ids)


def test_no_search_waits_on_the_compiler(tmp_path: Path) -> None:
    """``warm()`` compiles every kernel for the argument types searches pass: filtered,
    tenant, HNSW and exact, deleted rows, every mode. A search that compiled a new
    specialization would stall for seconds."""
    kernels.warm()
    dispatchers = {
        name: getattr(kernels, name)
        for name in dir(kernels)
        if hasattr(getattr(kernels, name), "signatures")
    }
    before = {name: len(d.signatures) for name, d in dispatchers.items()}
    rng = np.random.default_rng(11)
    texts = _texts(rng, 300)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    for threshold, path in ((50, None), (10_000, None), (50, tmp_path / "kb")):
        shard = LocalShard(path, exact_threshold=threshold)
        try:
            shard.upsert(
                [
                    Record(f"r{i}", texts[i], {"n": i % 3}, vectors[i], "t" if i % 4 else None)
                    for i in range(300)
                ]
            )
            shard.delete(["r1", "r2", "r8"], tenant=None)
            if path is not None:  # indexes loaded from a checkpoint, not built in memory
                shard.checkpoint()
                shard.close()
                shard = LocalShard(path, exact_threshold=threshold)
            for mode in ("hybrid", "dense", "lexical"):
                for flt in (None, {"n": 1}):
                    for tenant in (None, "t"):
                        request = SearchRequest(
                            text="w0 w3 w11", vector=vectors[7], mode=mode, k=5,
                            filter=flt, tenant=tenant,
                        )  # fmt: skip
                        answer = shard.search(request)
                        assert answer.dense is not None or answer.lexical is not None
        finally:
            shard.close()
    assert {name: len(d.signatures) for name, d in dispatchers.items()} == before
