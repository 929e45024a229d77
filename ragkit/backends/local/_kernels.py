"""The compiled inner loops of a LocalShard's query path (numba, compiled once and cached).

Measured on SciFact (``bench/bench_speed.py --stages``), the numpy query path spent most of
its millisecond in about a hundred small numpy calls (5-10 us each right after the dense scan
has evicted the caches): BM25 accumulation, top-k selection and fusion. Each is one loop
here, called once per query.

Every score computed here is computed the same way wherever it is needed, whatever else the
shard holds, so a sharded store and one shard agree bit for bit:

- ``dot_rows``: a row's dot product with the query in a fixed order (eight partial sums over
  the dimensions, then added in order), never the BLAS kernel's shape-dependent order;
- BM25: each posting's factor ``tf (k1 + 1) / (tf + k1 (1 - b + b len / avg_len))`` in float64,
  summed per row in query-term order (a row lives in one segment);
- calibrated fusion: ``alpha clip(dense, 0, 1)`` then ``+ (1 - alpha) clip(bm25 / ceiling, 0,
  1)``, the same operations in the same order as ``ragkit.fusion.add_calibrated``.

Functions here hold no lock: callers hold the shard's lock, which also guards the scratch
arrays they pass in.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

_compile = numba.njit(cache=True, nogil=True)


def _dot_rows(
    matrix: NDArray[np.float32], rows: NDArray[np.int64], query: NDArray[np.float32]
) -> NDArray[np.float32]:
    dim = matrix.shape[1]
    full = dim - dim % 8
    out = np.empty(len(rows), dtype=np.float32)
    for i in range(len(rows)):
        v = matrix[rows[i]]
        # Eight partial sums in fixed lanes (the compiler vectorizes them; the order of
        # additions never depends on the rows or the matrix's shape).
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
        for j in range(0, full, 8):
            s0 += v[j] * query[j]
            s1 += v[j + 1] * query[j + 1]
            s2 += v[j + 2] * query[j + 2]
            s3 += v[j + 3] * query[j + 3]
            s4 += v[j + 4] * query[j + 4]
            s5 += v[j + 5] * query[j + 5]
            s6 += v[j + 6] * query[j + 6]
            s7 += v[j + 7] * query[j + 7]
        total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        for j in range(full, dim):
            total += v[j] * query[j]
        out[i] = total
    return out


_BINS = 512


def _floor_of_top(values: NDArray[Any], skip: NDArray[np.bool_], k: int) -> float:
    """A value at most the ``k``-th largest of ``values`` (those not in ``skip``; an empty
    ``skip`` skips none) with few values between the two: the smallest value of the
    histogram bin that holds the k-th largest, the bin narrowed again (at most four times)
    while it holds many values (a few outliers put most scores in one bin). Passes that
    never branch on how values compare with each other, where an exact selection
    mispredicts on every fresh query."""
    filtered = len(skip) > 0
    lo, hi = np.inf, -np.inf
    count = 0
    for i in range(len(values)):
        if filtered and skip[i]:
            continue
        lo = min(lo, values[i])
        hi = max(hi, values[i])
        count += 1
    if count <= k:
        return -np.inf
    above = 0  # values greater than every value in the window [lo, hi]
    counts = np.zeros(_BINS + 1, dtype=np.int64)
    for _ in range(4):
        if hi <= lo:
            return lo
        scale = _BINS / (hi - lo)
        counts[:] = 0
        for i in range(len(values)):
            if (filtered and skip[i]) or values[i] < lo or values[i] > hi:
                continue
            counts[int((values[i] - lo) * scale)] += 1
        seen = above
        edge = _BINS
        while edge > 0 and seen + counts[edge] < k:
            seen += counts[edge]
            edge -= 1
        # The k-th largest is in bin ``edge``: the window becomes that bin's values (a
        # value's bin grows with the value, so every value of a higher bin is greater).
        new_lo, new_hi = np.inf, -np.inf
        for i in range(len(values)):
            if (filtered and skip[i]) or values[i] < lo or values[i] > hi:
                continue
            if int((values[i] - lo) * scale) == edge:
                new_lo = min(new_lo, values[i])
                new_hi = max(new_hi, values[i])
        lo, hi, above = new_lo, new_hi, seen
        if counts[edge] <= 2 * k + 64:
            break
    return lo


_RANGE_BINS = 4096
#: A range holding every cosine computed in float32 (within 1 + n 2^-24 of [-1, 1]).
UNIT_RANGE = (-1.001, 1.001)


def _floor_in_range(
    values: NDArray[Any], skip: NDArray[np.bool_], k: int, lo: float, hi: float
) -> float:
    """As ``_floor_of_top`` when a range ``[lo, hi]`` holding the values is known (cosines,
    BM25 scores under the query's ceiling, fused scores): one pass fills a fine histogram
    and the floor is the lower edge of the bin below the one holding the k-th largest.
    Values outside the range are still right: they count in the end bins. Falls back to
    ``_floor_of_top`` when that bin is crowded, or is the lowest (which may hold values
    far below ``lo``)."""
    filtered = len(skip) > 0
    scale = _RANGE_BINS / (hi - lo)
    counts = np.zeros(_RANGE_BINS + 1, dtype=np.int64)
    total = 0
    for i in range(len(values)):
        keep = not (filtered and skip[i])
        b = min(max(int((values[i] - lo) * scale), 0), _RANGE_BINS)
        counts[b] += keep
        total += keep
    if total <= k:
        return -np.inf
    seen = 0
    edge = _RANGE_BINS
    while edge > 0 and seen + counts[edge] < k:
        seen += counts[edge]
        edge -= 1
    if edge == 0 or counts[edge] > 2 * k + 64:
        return _floor_of_top_c(values, skip, k)
    # Every value in bin ``edge`` is at least its lower edge, less rounding in the bin's
    # computation: one bin lower is a floor with room to spare.
    return lo + (edge - 1) / scale


def _best_of(values: NDArray[Any], positions: NDArray[np.int64], k: int) -> NDArray[np.int64]:
    """Of ``positions``, those whose value is at least the ``k``-th best among them, best
    first (stable on equal values)."""
    order = np.argsort(-values[positions], kind="mergesort")
    if len(order) <= k:
        return positions[order]
    kth = values[positions[order[k - 1]]]
    keep = k
    while keep < len(order) and values[positions[order[keep]]] >= kth:
        keep += 1
    return positions[order[:keep]]


def _best_k(values: NDArray[np.float64], k: int, lo: float, hi: float) -> NDArray[np.int64]:
    """Positions of the ``k`` best values plus any others equal to the k-th best, best first
    (stable on equal values). ``[lo, hi]``: a range known to hold the values (NaN: none).

    Sharded and unsharded stores must agree on which of several equally scored records make
    the top k; keeping the ties lets the shard order them by id (``ShardIndexes._ordered``).
    """
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    none = np.empty(0, dtype=np.bool_)
    if np.isnan(lo) or np.isnan(hi) or not hi > lo:
        floor = _floor_of_top_c(values, none, k)
    else:
        floor = _floor_in_range_c(values, none, k, lo, hi)
    candidates = np.empty(len(values), dtype=np.int64)
    found = 0
    for i in range(len(values)):
        candidates[found] = i
        found += values[i] >= floor
    return _best_of_c(values, candidates[:found], k)


def _exact_top(
    rough: NDArray[np.float32],
    excluded: NDArray[np.bool_],
    matrix: NDArray[np.float32],
    query: NDArray[np.float32],
    k: int,
    slack: float,
) -> tuple[NDArray[np.int64], NDArray[np.float32], bool]:
    filtered = len(excluded) > 0
    floor = _floor_in_range_c(rough, excluded, k, UNIT_RANGE[0], UNIT_RANGE[1]) - slack
    candidates = np.empty(len(rough), dtype=np.int64)
    found = 0
    for i in range(len(rough)):
        candidates[found] = i
        found += rough[i] >= floor and not (filtered and excluded[i])  # (no branch on rough)
    return _rescored_top_c(matrix, candidates[:found], query, k)


def _rescored_top(
    matrix: NDArray[np.float32], rows: NDArray[np.int64], query: NDArray[np.float32], k: int
) -> tuple[NDArray[np.int64], NDArray[np.float32], bool]:
    """The ``k`` best of candidate ``rows`` by their ``dot_rows`` score (plus ties at the
    k-th), best first, and whether two of them score the same."""
    exact = dot_rows(matrix, rows, query)
    best = _best_of_c(exact, np.arange(len(rows)), k)
    top = exact[best]
    return rows[best], top, _has_ties_c(top)


def quantize(vectors: NDArray[np.float32]) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """Rows as int8 codes and a step each (the row's largest magnitude / 127): a row is
    ``step * codes`` to within half a step per component. ``coded_top`` scans these, a
    quarter of the matrix's bytes, and rescores its candidates from the matrix itself."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"quantize takes a 2-d array of rows, got shape {vectors.shape}")
    if vectors.size == 0:
        return np.zeros(vectors.shape, dtype=np.int8), np.zeros(len(vectors), dtype=np.float32)
    steps = (np.abs(vectors).max(axis=1) / np.float32(127)).astype(np.float32)
    divisor = np.where(steps > 0, steps, np.float32(1))[:, None]
    codes = np.clip(np.rint(vectors / divisor), -127, 127).astype(np.int8)
    return codes, steps


def _coded_scores(
    codes: NDArray[np.int8],
    steps: NDArray[np.float32],
    query: NDArray[np.float32],
    out: NDArray[np.float32],
) -> None:
    # Compiled with reassociation allowed, so the compiler vectorizes the sum; these scores
    # only choose candidates (their error is bounded in ``_coded_top``), never rank them.
    dim = codes.shape[1]
    for i in range(codes.shape[0]):
        acc = np.float32(0.0)
        row = codes[i]
        for j in range(dim):
            acc += np.float32(row[j]) * query[j]
        out[i] = acc * steps[i]


#: A coded row's score is within ``step * |query|_1 * (_CODE_ERROR_BASE + dim *
#: _CODE_ERROR_PER_DIM)`` of its exact score: half a step per component (and the float32
#: rounding of the division), plus the rounding of both float32 sums, each at most
#: ``dim * 2**-24`` of its terms' magnitudes (at most ``127`` steps times ``|query|_1``),
#: with 1% to spare.
_CODE_ERROR_BASE = 0.5 + 1e-4
_CODE_ERROR_PER_DIM = 2 * 127 * 2.0**-24 * 1.01


def _coded_top(
    codes: NDArray[np.int8],
    steps: NDArray[np.float32],
    excluded: NDArray[np.bool_],
    matrix: NDArray[np.float32],
    query: NDArray[np.float32],
    k: int,
    slack: float,
) -> tuple[NDArray[np.int64], NDArray[np.float32], bool]:
    n, dim = codes.shape
    filtered = len(excluded) > 0
    q_l1 = 0.0
    for j in range(dim):
        q_l1 += abs(query[j])
    per_step = q_l1 * (_CODE_ERROR_BASE + dim * _CODE_ERROR_PER_DIM)
    rough = np.empty(n, dtype=np.float32)
    _coded_scores_c(codes, steps, query, rough)
    low = np.empty(n, dtype=np.float32)  # at most each row's exact score
    for i in range(n):
        low[i] = rough[i] - (steps[i] * per_step + slack)
    # At most the k-th best exact score: every row of the top k (and its ties) can reach it.
    floor = _floor_in_range_c(low, excluded, k, UNIT_RANGE[0], UNIT_RANGE[1])
    candidates = np.empty(n, dtype=np.int64)
    found = 0
    for i in range(n):
        candidates[found] = i
        reach = rough[i] + (steps[i] * per_step + slack)
        found += reach >= floor and not (filtered and excluded[i])  # (no branch on rough)
    return _rescored_top_c(matrix, candidates[:found], query, k)


def _has_ties(ordered: NDArray[Any]) -> bool:
    """Are two neighbours of this ordered list equal (then only ids can order them)?"""
    for i in range(1, len(ordered)):  # noqa: SIM110 - numba compiles no generator here
        if ordered[i] == ordered[i - 1]:
            return True
    return False


#: The exact scan's BLAS product runs on every core (OpenBLAS threads). Several at once (the
#: shards of an in-process sharded store, searched in parallel) contend for those threads:
#: measured on 2 cores, 8 threads each running 10,000 x 384 products got 19 times less done
#: than one thread running them in turn, with single products stalled up to 0.7 s.
_ONE_PRODUCT_AT_A_TIME = threading.Lock()


def exact_top(
    matrix: NDArray[np.float32],
    query: NDArray[np.float32],
    k: int,
    excluded: NDArray[np.bool_] | None,
    slack: float,
) -> tuple[NDArray[np.int64], NDArray[np.float32], bool]:
    """The ``k`` best rows by dot product (plus ties at the k-th), best first, with
    ``dot_rows`` scores, and whether two of them score the same. Made for unit rows and a
    unit query (scores within [-1, 1]: any other values are still right, only slower).

    One BLAS product (fast, but it rounds some rows differently depending on the matrix's
    shape) picks every row that can reach the top k: within ``slack`` (more than both
    products' rounding) of a value at most its k-th best; ``dot_rows`` rescores only those.
    Same rows and scores as a full ``dot_rows`` scan, at BLAS speed.
    """
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), False
    with _ONE_PRODUCT_AT_A_TIME:
        rough = matrix @ query
    return _exact_top_c(rough, NO_MASK if excluded is None else excluded, matrix, query, k, slack)


def coded_top(
    codes: NDArray[np.int8],
    steps: NDArray[np.float32],
    matrix: NDArray[np.float32],
    query: NDArray[np.float32],
    k: int,
    excluded: NDArray[np.bool_] | None,
    slack: float,
) -> tuple[NDArray[np.int64], NDArray[np.float32], bool]:
    """As ``exact_top`` (same rows, same ``dot_rows`` scores, same ties), choosing the
    candidates from the int8 ``codes`` of ``matrix`` (``quantize``) instead of a BLAS
    product: one pass over a quarter of the bytes on one thread, no lock. A candidate is any
    row whose score could reach the k-th best given each coded score's error bound (about
    1.5x the k rows on all-MiniLM-L6-v2 vectors); ``dot_rows`` rescores only those.
    ``slack`` is added to every bound (the rounding of scores far from unit scale)."""
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), False
    mask = NO_MASK if excluded is None else excluded
    return _coded_top_c(codes, steps, mask, matrix, query, k, slack)


#: The empty mask a kernel reads as "every row" (no pre-filter, nothing excluded).
NO_MASK = np.zeros(0, dtype=np.bool_)
#: An empty list of rows (or of any int64 values) for a kernel argument that is not given.
NO_ROWS = np.zeros(0, dtype=np.int64)


def _query_terms(
    tids: NDArray[np.int64],
    given_dfs: NDArray[np.int64],
    local_dfs: NDArray[np.int64],
    n_docs: int,
    k1: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64], float]:
    """A query's terms (vocabulary ids in query order, -1 where unknown) as BM25 weights:
    the distinct known terms in order of first use, each ``idf * repeats``, and the
    query's ceiling (``idf * (k1 + 1)`` summed over every term in order). Document
    frequencies come from ``given_dfs`` (a router's statistics, one per term) or else from
    ``local_dfs`` by term id."""
    n = len(tids)
    given = len(given_dfs) > 0
    out = np.empty(n, dtype=np.int64)
    idf_of = np.empty(n)
    repeats = np.zeros(n, dtype=np.int64)
    m = 0
    ceiling = 0.0
    for i in range(n):
        tid = tids[i]
        df = given_dfs[i] if given else (local_dfs[tid] if tid >= 0 else 0)
        idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
        ceiling += idf * (k1 + 1.0)  # tf -> infinity: the most one term can add
        if tid < 0 or df <= 0:
            continue
        slot = m
        for j in range(m):
            if out[j] == tid:
                slot = j
                break
        if slot == m:
            out[m] = tid
            m += 1
        idf_of[slot] = idf
        repeats[slot] += 1
    return out[:m], idf_of[:m] * repeats[:m], ceiling


def _bm25_segment(
    term_ids: NDArray[np.int64],
    offsets: NDArray[np.int64],
    rows: NDArray[np.int32],
    tfs: NDArray[np.float32],
    factors: NDArray[np.float64],
    ready: NDArray[np.bool_],
    query_tids: NDArray[np.int64],
    query_w: NDArray[np.float64],
    avg_len: float,
    k1: float,
    b: float,
    doc_len: NDArray[np.float32],
    mask: NDArray[np.bool_],
    acc: NDArray[np.float64],
    touched: NDArray[np.int64],
    n_touched: int,
) -> int:
    n_terms = len(term_ids)
    filtered = len(mask) > 0
    for q in range(len(query_tids)):
        tid = query_tids[q]
        pos = np.searchsorted(term_ids, tid)
        if pos >= n_terms or term_ids[pos] != tid:
            continue
        lo, hi = offsets[pos], offsets[pos + 1]
        if not ready[pos]:
            for i in range(lo, hi):
                tf = np.float64(tfs[i])
                norm = k1 * (1.0 - b + b * np.float64(doc_len[rows[i]]) / avg_len)
                factors[i] = tf * (k1 + 1.0) / (tf + norm)
            ready[pos] = True
        weight = query_w[q]
        for i in range(lo, hi):
            row = rows[i]
            if filtered and not mask[row]:
                continue
            touched[n_touched] = row  # kept when the row is new (no branch on the data)
            n_touched += acc[row] == 0.0
            acc[row] += weight * factors[i]
    return n_touched


def _bm25f(
    rows: NDArray[np.int64],
    parts: NDArray[np.float64],
    bounds: NDArray[np.int64],
    repeats: NDArray[np.float64],
    n_docs: int,
    k1: float,
    allowed: NDArray[np.bool_],
    visible: NDArray[np.bool_],
    tf: NDArray[np.float64],
    total: NDArray[np.float64],
    k: int,
) -> tuple[
    NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.float32], bool, float
]:
    """BM25F (``ragkit.backends.local._fields``) from each query term's postings in every
    weighted field: term ``t``'s are ``rows[bounds[t]:bounds[t + 1]]``, each with its part
    of the term frequency (``weight tf / norm``), fields in order. A row's parts are summed
    in that order, then saturated once; the rows past ``len(visible)`` or not ``visible``
    count nowhere, those not ``allowed`` count for the document frequency only. Returns
    what ``matched_top`` returns (the matching rows ascending and their scores, the ``k``
    best with ties at the k-th, best first, as float32, whether two of those tie), then the
    query's ceiling. ``tf`` and ``total``: zeros, at least ``len(visible)`` long, zero
    again on return."""
    n_rows = len(visible)
    touched = np.empty(len(rows), dtype=np.int64)
    hits = np.empty(len(rows), dtype=np.int64)
    n_hits = 0
    ceiling = 0.0
    for t in range(len(repeats)):
        df = 0
        for i in range(bounds[t], bounds[t + 1]):
            row = rows[i]
            if row >= n_rows or not visible[row]:
                continue
            if tf[row] == 0.0:  # (every part is above zero)
                touched[df] = row
                df += 1
            tf[row] += parts[i]
        idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
        ceiling += repeats[t] * idf * (k1 + 1.0)  # tf -> infinity: the most a term adds
        for j in range(df):
            row = touched[j]
            if allowed[row]:
                x = tf[row]
                if total[row] == 0.0:
                    hits[n_hits] = row
                    n_hits += 1
                total[row] += repeats[t] * idf * x * (k1 + 1.0) / (x + k1)
            tf[row] = 0.0
    matched = np.sort(hits[:n_hits])
    scores = _take_and_zero_c(total, matched)
    best = _best_k_c(scores, k, 0.0, ceiling)
    top = scores[best].astype(np.float32)
    return matched, scores, matched[best], top, _has_ties_c(top), ceiling


def _visible_total(lengths: NDArray[np.float32], visible: NDArray[np.bool_]) -> tuple[int, float]:
    """How many rows are ``visible``, and the sum of their ``lengths`` (rows past the end of
    ``lengths`` have none)."""
    count = 0
    total = 0.0
    n = min(len(lengths), len(visible))
    for row in range(len(visible)):
        count += visible[row]
    for row in range(n):
        if visible[row]:
            total += lengths[row]
    return count, total


def _take_and_zero(acc: NDArray[np.float64], rows: NDArray[np.int64]) -> NDArray[np.float64]:
    """``acc[rows]``, then zero there: the accumulator is all zero again for the next query."""
    out = np.empty(len(rows), dtype=np.float64)
    for i in range(len(rows)):
        out[i] = acc[rows[i]]
        acc[rows[i]] = 0.0
    return out


def _matched_top(
    acc: NDArray[np.float64],
    touched: NDArray[np.int64],
    n_touched: int,
    k: int,
    ceiling: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.float32], bool]:
    """After ``bm25_segment``: the matching rows ascending and their scores (the
    accumulator zeroed again), then the ``k`` best rows with ties at the k-th, best first,
    their scores as float32, and whether two of those score the same (every score is
    within ``[0, ceiling]``)."""
    if n_touched * 16 < len(acc):
        hits = np.sort(touched[:n_touched])
    else:  # most rows matched: one scan beats a sort
        hits = _nonzero_rows_c(acc, n_touched)
    scores = _take_and_zero_c(acc, hits)
    best = _best_k_c(scores, k, 0.0, ceiling)
    top = scores[best].astype(np.float32)
    return hits, scores, hits[best], top, _has_ties_c(top)


def _lookup(
    matched: NDArray[np.int64], matched_scores: NDArray[np.float64], rows: NDArray[np.int64]
) -> NDArray[np.float32]:
    out = np.zeros(len(rows), dtype=np.float32)
    if len(matched) == 0:
        return out
    pos = np.searchsorted(matched, rows)
    for i in range(len(rows)):
        if pos[i] < len(matched) and matched[pos[i]] == rows[i]:
            out[i] = np.float32(matched_scores[pos[i]])
    return out


def _calibrated(
    raw: NDArray[np.float64], ceiling: float, weight: float, out: NDArray[np.float64]
) -> None:
    # As ragkit.fusion.add_calibrated for a leg that scored every candidate (NaN ceiling:
    # none, the leg's best is the scale).
    top = ceiling
    if np.isnan(top):
        top = raw.max() if len(raw) else 0.0
    if top <= 0:
        return
    for i in range(len(raw)):
        out[i] += weight * min(max(raw[i] / top, 0.0), 1.0)


def _nonzero_rows(acc: NDArray[np.float64], count: int) -> NDArray[np.int64]:
    # Branch-free (a store per row, the count moves when nonzero): on a fresh query the
    # pattern is random, and a branch would mispredict on half the rows.
    out = np.empty(len(acc) + 1, dtype=np.int64)
    found = 0
    for row in range(len(acc)):
        out[found] = row
        found += acc[row] != 0.0
    return out[:count]


def _best_first(
    rows: NDArray[np.int64], scores: NDArray[np.float32], k: int
) -> tuple[NDArray[np.int64], NDArray[np.float32], bool]:
    """``rows`` and ``scores`` by descending score (stable), the first ``k``, and whether two
    equal scores are next to each other anywhere in the full order (then the caller orders
    ties by record id)."""
    ordered = True  # (the exact scan and BM25 hand their top rows over best first)
    for i in range(1, len(scores)):
        if scores[i] > scores[i - 1]:
            ordered = False
            break
    order = np.arange(len(scores)) if ordered else np.argsort(-scores, kind="mergesort")
    tied = False
    for i in range(1, len(order)):
        if scores[order[i]] == scores[order[i - 1]]:
            tied = True
            break
    keep = order if tied else order[:k]
    return rows[keep], scores[keep], tied


def _rank_order(
    scores: NDArray[np.float64], leg_ranks: NDArray[np.int64]
) -> tuple[NDArray[np.int64], bool]:
    """``ragkit.fusion.ranked_by_score``'s order for a few records: best score first, ties
    to the better leg rank, then to the earlier leg; and whether two records tie on all
    three (then only their ids can order them, and the caller falls back to it)."""
    n = len(scores)
    absent = np.iinfo(np.int64).max
    best_rank = np.full(n, absent, dtype=np.int64)
    best_leg = np.zeros(n, dtype=np.int64)
    for leg in range(leg_ranks.shape[0]):
        for i in range(n):
            rank = leg_ranks[leg, i]
            if rank > 0 and rank < best_rank[i]:
                best_rank[i] = rank
                best_leg[i] = leg
    order = np.arange(n)
    for i in range(1, n):  # insertion sort: a handful of records
        j = i
        while j > 0:
            a, b = order[j - 1], order[j]
            if scores[a] > scores[b] or (
                scores[a] == scores[b]
                and (
                    best_rank[a] < best_rank[b]
                    or (best_rank[a] == best_rank[b] and best_leg[a] <= best_leg[b])
                )
            ):
                break
            order[j - 1], order[j] = b, a
            j -= 1
    tied = False
    for i in range(1, n):
        a, b = order[i - 1], order[i]
        if scores[a] == scores[b] and best_rank[a] == best_rank[b] and best_leg[a] == best_leg[b]:
            tied = True
    return order, tied


def _ranked_calibrated(
    dense_rows: NDArray[np.int64],
    dense_scores: NDArray[np.float32],
    lexical_rows: NDArray[np.int64],
    matched: NDArray[np.int64],
    matched_scores: NDArray[np.float64],
    ceiling: float,
    matrix: NDArray[np.float32],
    unit: NDArray[np.float32],
    alpha: float,
    slot: NDArray[np.int32],
    k: int,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], bool]:
    """Calibrated fusion of both legs, then its top ``k`` (with ties at the k-th) in
    ``ragkit.fusion.ranked_by_score``'s order: rows, fused scores, leg scores, leg ranks,
    and whether two of them tie on everything but the id (then they come in ``best_k``'s
    order, for the caller to order by id)."""
    # The union of both legs' rows: the dense rows in order, then the lexical rows they
    # lack (``slot``: all zero on entry and on return; one mark per row, no sort).
    union = np.empty(len(dense_rows) + len(lexical_rows), dtype=np.int64)
    leg_ranks = np.zeros((2, len(union)), dtype=np.int64)
    size = 0
    for i in range(len(dense_rows)):
        union[size] = dense_rows[i]
        size += 1
        slot[dense_rows[i]] = size
        leg_ranks[0, size - 1] = i + 1
    first_lexical_only = size
    for i in range(len(lexical_rows)):
        row = lexical_rows[i]
        if slot[row] == 0:
            union[size] = row
            size += 1
            slot[row] = size
        leg_ranks[1, slot[row] - 1] = i + 1
    for i in range(size):
        slot[union[i]] = 0
    union = union[:size]
    leg_ranks = leg_ranks[:, :size]
    leg_scores = np.empty((2, size))
    leg_scores[0, : len(dense_rows)] = dense_scores
    # The dense leg's own scores where it has them (HNSW's beyond the exact threshold),
    # fixed-order ones for the rest, as ``ShardIndexes.legs(fill=True)`` gives them.
    leg_scores[0, first_lexical_only:] = dot_rows(matrix, union[first_lexical_only:], unit)
    leg_scores[1] = lookup(matched, matched_scores, union)
    scores = np.zeros(size)
    _calibrated_c(leg_scores[0], 1.0, alpha, scores)
    _calibrated_c(leg_scores[1], ceiling, 1.0 - alpha, scores)
    best = _best_k_c(scores, k, 0.0, 1.0)  # (a fused score is within [0, 1])
    top_ranks = np.empty((2, len(best)), dtype=np.int64)
    top_ranks[0] = leg_ranks[0][best]
    top_ranks[1] = leg_ranks[1][best]
    top_scores = scores[best]
    order, tied = _rank_order_c(top_scores, top_ranks)
    if not tied:
        best = best[order]
        top_scores = top_scores[order]
        top_ranks[0] = leg_ranks[0][best]
        top_ranks[1] = leg_ranks[1][best]
    top_leg_scores = np.empty((2, len(best)))
    top_leg_scores[0] = leg_scores[0][best]
    top_leg_scores[1] = leg_scores[1][best]
    return union[best], top_scores, top_leg_scores, top_ranks, tied


# Compiled once per machine (``cache=True`` keeps the machine code beside this module, or in
# numba's user cache when that is read-only), on first use. The casts give the compiled
# functions the types of the Python functions they were compiled from.
dot_rows = cast(Callable[..., NDArray[np.float32]], _compile(_dot_rows))
_floor_of_top_c = _compile(_floor_of_top)
_best_of_c = _compile(_best_of)
_floor_in_range_c = _compile(_floor_in_range)
_best_k_c = _compile(_best_k)
best_k = cast(Callable[..., NDArray[np.int64]], _best_k_c)
_has_ties_c = _compile(_has_ties)
_rescored_top_c = _compile(_rescored_top)
_exact_top_c = cast(
    Callable[..., tuple[NDArray[np.int64], NDArray[np.float32], bool]], _compile(_exact_top)
)
_coded_scores_c = numba.njit(cache=True, nogil=True, fastmath={"reassoc"})(_coded_scores)
_coded_top_c = cast(
    Callable[..., tuple[NDArray[np.int64], NDArray[np.float32], bool]], _compile(_coded_top)
)
lookup = cast(Callable[..., NDArray[np.float32]], _compile(_lookup))
_calibrated_c = _compile(_calibrated)
query_terms = cast(
    Callable[..., tuple[NDArray[np.int64], NDArray[np.float64], float]], _compile(_query_terms)
)
bm25_segment = cast(Callable[..., int], _compile(_bm25_segment))
_take_and_zero_c = _compile(_take_and_zero)
bm25f = cast(
    Callable[
        ...,
        tuple[
            NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.float32], bool,
            float,
        ],
    ],
    _compile(_bm25f),
)  # fmt: skip
visible_total = cast(Callable[..., tuple[int, float]], _compile(_visible_total))
_nonzero_rows_c = _compile(_nonzero_rows)
matched_top = cast(
    Callable[
        ...,
        tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.float32], bool],
    ],
    _compile(_matched_top),
)
_rank_order_c = _compile(_rank_order)
rank_order = cast(Callable[..., tuple[NDArray[np.int64], bool]], _rank_order_c)
best_first = cast(
    Callable[..., tuple[NDArray[np.int64], NDArray[np.float32], bool]], _compile(_best_first)
)
ranked_calibrated = cast(
    Callable[
        ...,
        tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], bool],
    ],
    _compile(_ranked_calibrated),
)


_warm_lock = threading.Lock()
_warmed = threading.Event()


def warm() -> None:
    """Compile (first time on this machine: a few seconds, then cached) or load every kernel
    for the argument types the shard passes, so no search ever waits on the compiler.
    LocalShard calls it on open; later calls return at once."""
    if _warmed.is_set():
        return
    with _warm_lock:
        if _warmed.is_set():
            return
        started = time.perf_counter()
        rows = np.arange(2, dtype=np.int64)
        vectors = np.ones((4, 8), dtype=np.float32)
        query = np.ones(8, dtype=np.float32)
        ones, scores = np.ones(2), np.ones(2, dtype=np.float32)
        dot_rows(vectors, rows, query)
        exact_top(vectors, query, 1, None, 1e-3)
        exact_top(vectors, query, 1, np.zeros(4, dtype=bool), 1e-3)
        codes, steps = quantize(vectors)
        coded_top(codes, steps, vectors, query, 1, None, 1e-3)
        coded_top(codes, steps, vectors, query, 1, np.zeros(4, dtype=bool), 1e-3)
        best_k(ones, 1, np.nan, np.nan)
        best_k(ones, 1, 0.0, 1.0)
        lookup(rows, ones, rows)
        matched_top(np.zeros(4), np.zeros(4, dtype=np.int64), 0, 1, 1.0)
        best_first(rows, scores, 1)
        rank_order(ones, np.ones((2, 2), dtype=np.int64))
        query_terms(rows, rows, rows, 1, 1.2)
        bm25_segment(
            rows, np.arange(3, dtype=np.int64), np.arange(2, dtype=np.int32), scores,
            np.zeros(2), np.zeros(2, dtype=bool), rows, ones, 1.0, 1.2, 0.75,
            np.ones(4, dtype=np.float32), np.zeros(4, dtype=bool), np.zeros(4),
            np.zeros(4, dtype=np.int64), 0,
        )  # fmt: skip
        ranked_calibrated(
            rows, scores, rows, rows, ones, 1.0, vectors, query, 0.5,
            np.zeros(4, dtype=np.int32), 1,
        )  # fmt: skip
        bm25f(
            rows, ones, np.arange(3, dtype=np.int64), ones, 2, 1.2,
            np.ones(2, dtype=bool), np.ones(2, dtype=bool), np.zeros(2), np.zeros(2), 1,
        )  # fmt: skip
        visible_total(np.ones(2, dtype=np.float32), np.ones(2, dtype=bool))
        _warmed.set()
        spent = time.perf_counter() - started
        if spent > 1.0:
            log.info("ragkit compiled its query kernels in %.1f s (once per install)", spent)
