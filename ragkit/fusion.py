"""Fusion of ranked legs into one ranking: calibrated (the default), weighted RRF, relative
score and DBSF.

Each function takes the legs (``Leg``: ids best first with raw scores) and one weight per leg,
and returns the fused ranking as arrays. In ragkit's hybrid search the legs are
``(dense, lexical)`` with weights ``(alpha, 1 - alpha)``.

**Calibrated** scores mean the same in every query, so a threshold means something: each leg's
raw score is divided by the best score any record could get on that leg for this query
(``Leg.ceiling``) and clipped to [0, 1]. For the dense leg that is cosine similarity itself
(negative cosine counts as 0); for BM25 it is the score of a record holding every query term
an unbounded number of times (each term's IDF times ``k1 + 1``), so a record matching only
common words of the query scores little, and gibberish scores 0. The fused score is
``alpha * dense + (1 - alpha) * lexical`` in [0, 1]. Every candidate is scored on both legs
where the backend provides the other leg's score (``Leg.extra``); otherwise a leg that did not
return a record adds 0.

**Relative score** and **DBSF** rescale each leg within the query (min-max, or mean +/- 3
standard deviations), and **RRF** uses ranks only: their scores order one query's results
but cannot be compared across queries. They never divide by zero: a leg whose scores are all
equal (including a leg with a single hit) gives every hit the neutral score 0.5. A record
missing from a leg gets nothing from that leg.

Everything is vectorized: the Python work is one pass over the candidate ids to number them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from itertools import chain
from typing import cast

import numpy as np
from numpy.typing import NDArray

from ragkit._legs import Fused, Leg
from ragkit._rowids import RowIds, RowScores, same_rows
from ragkit.errors import InvalidInputError

__all__ = [
    "DEFAULT_RRF_K",
    "Fused",
    "Fusion",
    "add_calibrated",
    "by_score_then_id",
    "dbsf_normalize",
    "fuse",
    "fuse_calibrated",
    "fuse_dbsf",
    "fuse_relative_score",
    "fuse_rrf",
    "minmax_normalize",
    "ranked_by_score",
    "single_leg",
]

DEFAULT_RRF_K = 60
_ABSENT_RANK = np.iinfo(np.int64).max


class Fusion(StrEnum):
    CALIBRATED = "calibrated"
    RRF = "rrf"
    RELATIVE_SCORE = "relative_score"
    DBSF = "dbsf"
    #: the engine's own hybrid ranker (Milvus, Qdrant, Weaviate): ``search`` returns its
    #: ranking, scored on the engine's scale
    NATIVE = "native"


def _collect(
    legs: Sequence[Leg], weights: Sequence[float]
) -> tuple[Fused, list[NDArray[np.int64]]]:
    if len(weights) != len(legs):
        raise ValueError(f"got {len(weights)} weights for {len(legs)} legs")
    ids: Sequence[str]
    if same_rows([leg.ids for leg in legs], [leg.extra for leg in legs]):
        # One shard's rows: number the candidates by row, build no strings.
        row_ids = cast(list[RowIds], [leg.ids for leg in legs])
        union = np.unique(np.concatenate([r.rows for r in row_ids]))
        ids = RowIds(row_ids[0].names, union)
        positions = [np.searchsorted(union, r.rows).astype(np.int64) for r in row_ids]
    else:
        ids = list(dict.fromkeys(chain.from_iterable(leg.ids for leg in legs)))
        index = {rid: i for i, rid in enumerate(ids)}
        positions = [
            np.fromiter(map(index.__getitem__, leg.ids), np.int64, len(leg.ids)) for leg in legs
        ]
    n = len(ids)
    leg_scores = np.full((len(legs), n), np.nan)
    leg_ranks = np.zeros((len(legs), n), dtype=np.int64)
    for slot, (leg, pos) in enumerate(zip(legs, positions)):
        leg_scores[slot, pos] = leg.scores
        leg_ranks[slot, pos] = np.arange(1, len(pos) + 1)
    return Fused(ids, np.zeros(n), leg_scores, leg_ranks), positions


def ranked_by_score(fused: Fused) -> Fused:
    """Best score first; ties go to the better rank, then to the earlier leg, then by id."""
    if not fused.ids:
        return fused
    ranks = np.where(fused.leg_ranks > 0, fused.leg_ranks, _ABSENT_RANK)
    best_rank = ranks.min(axis=0)
    best_leg = ranks.argmin(axis=0)  # the first leg on equal ranks
    order = np.lexsort((best_leg, best_rank, -fused.scores))
    keys = (fused.scores[order], best_rank[order], best_leg[order])
    tied = (keys[0][1:] == keys[0][:-1]) & (keys[1][1:] == keys[1][:-1])
    if bool((tied & (keys[2][1:] == keys[2][:-1])).any()):  # only then are ids compared
        order = np.lexsort((np.array(list(fused.ids)), best_leg, best_rank, -fused.scores))
    return fused.take(order)


def by_score_then_id(ids: Sequence[str], scores: NDArray[np.floating]) -> NDArray[np.int64]:
    """The positions of ``scores`` best first, equal scores in ascending id order (the
    order every backend and the sharded router agree on); only the ids of equal scores are
    compared."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    tied = ranked[1:] == ranked[:-1]
    if not tied.any():
        return order
    members = order[np.r_[tied, False] | np.r_[False, tied]]  # in a run of equal scores
    names = [ids[i] for i in members.tolist()]
    by_name = sorted(range(len(names)), key=names.__getitem__)
    name_rank = np.zeros(len(scores), dtype=np.int64)
    name_rank[members[by_name]] = np.arange(len(names))
    return np.lexsort((name_rank, -scores))


def fuse_calibrated(legs: Sequence[Leg], weights: Sequence[float]) -> Fused:
    """Calibrated fusion (see the module docstring): ``sum_leg weight * clip(score / ceiling,
    0, 1)``, each candidate scored on every leg that can score it."""
    fused, _ = _collect(legs, weights)
    for slot, (leg, weight) in enumerate(zip(legs, weights)):
        raw = fused.leg_scores[slot]
        extra = leg.extra
        if isinstance(extra, RowScores) and isinstance(fused.ids, RowIds) and len(extra):
            union = fused.ids.rows
            pos = np.minimum(np.searchsorted(union, extra.rows), len(union) - 1)
            hit = (union[pos] == extra.rows) & np.isnan(raw[pos])
            raw[pos[hit]] = extra.scores[hit]
        elif extra:
            absent = np.flatnonzero(np.isnan(raw))
            if len(absent):
                get = extra.get
                raw[absent] = [get(fused.ids[i], np.nan) for i in absent.tolist()]
        add_calibrated(fused.scores, raw, leg.ceiling, weight)
    return ranked_by_score(fused)


def add_calibrated(
    scores: NDArray[np.float64], raw: NDArray[np.float64], ceiling: float | None, weight: float
) -> None:
    """Add one leg's calibrated part, ``weight * clip(raw / ceiling, 0, 1)``, to ``scores``
    where the leg scored the record (``raw`` not NaN); without a ceiling, the leg's best."""
    known = ~np.isnan(raw)
    if not known.any():
        return
    top = ceiling if ceiling is not None else float(raw[known].max())
    if top <= 0:
        return
    scores[known] += weight * np.clip(raw[known] / top, 0.0, 1.0)


def fuse_rrf(legs: Sequence[Leg], weights: Sequence[float], k: int = DEFAULT_RRF_K) -> Fused:
    """Weighted reciprocal rank fusion: ``score = sum_leg weight / (k + rank)``."""
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    fused, positions = _collect(legs, weights)
    for weight, pos in zip(weights, positions):
        fused.scores[pos] += weight / (k + np.arange(1, len(pos) + 1, dtype=np.float64))
    return ranked_by_score(fused)


def minmax_normalize(scores: NDArray[np.floating]) -> NDArray[np.float64]:
    """Scale to [0, 1] by the leg's min and max; all-equal scores map to 0.5."""
    values = np.asarray(scores, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.full_like(values, 0.5)
    return (values - lo) / (hi - lo)


def dbsf_normalize(scores: NDArray[np.floating]) -> NDArray[np.float64]:
    """Distribution-based score fusion: scale ``[mean - 3 sd, mean + 3 sd]`` to [0, 1], clipped."""
    values = np.asarray(scores, dtype=np.float64)
    mean, sd = float(values.mean()), float(values.std())
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return np.full_like(values, 0.5)
    return np.asarray(np.clip((values - (mean - 3 * sd)) / (6 * sd), 0.0, 1.0))


Normalizer = Callable[[NDArray[np.floating]], NDArray[np.float64]]


def _normalized_fusion(
    legs: Sequence[Leg], weights: Sequence[float], normalize: Normalizer
) -> Fused:
    fused, positions = _collect(legs, weights)
    for leg, weight, pos in zip(legs, weights, positions):
        if len(pos):
            fused.scores[pos] += weight * normalize(leg.scores)
    return ranked_by_score(fused)


def fuse_relative_score(legs: Sequence[Leg], weights: Sequence[float]) -> Fused:
    """Relative score fusion: min-max normalize each leg, then take the weighted sum."""
    return _normalized_fusion(legs, weights, minmax_normalize)


def fuse_dbsf(legs: Sequence[Leg], weights: Sequence[float]) -> Fused:
    """DBSF: normalize each leg by mean +/- 3 standard deviations, then the weighted sum."""
    return _normalized_fusion(legs, weights, dbsf_normalize)


_NORMALIZERS: dict[Fusion, Normalizer] = {
    Fusion.RELATIVE_SCORE: minmax_normalize,
    Fusion.DBSF: dbsf_normalize,
}


def fuse(
    method: Fusion, legs: Sequence[Leg], weights: Sequence[float], *, rrf_k: int = DEFAULT_RRF_K
) -> Fused:
    """Fuse with the given method; ``rrf_k`` applies to RRF only."""
    if method is Fusion.NATIVE:
        raise InvalidInputError(
            "fusion='native' asks the engine to fuse, and this backend has no hybrid ranker "
            "of its own (Milvus, Qdrant and Weaviate have); use 'calibrated', 'rrf', "
            "'relative_score' or 'dbsf'"
        )
    if method is Fusion.CALIBRATED:
        return fuse_calibrated(legs, weights)
    if method is Fusion.RRF:
        return fuse_rrf(legs, weights, rrf_k)
    return _normalized_fusion(legs, weights, _NORMALIZERS[method])


def single_leg(leg: Leg, slot: int | None, n_legs: int = 2) -> Fused:
    """One leg as a ranking (dense-only or lexical-only search): its raw scores are the final
    scores. ``slot`` says which leg it is (``None``: a backend's own fused leg, which has no
    per-leg scores)."""
    n = len(leg.ids)
    leg_scores = np.full((n_legs, n), np.nan)
    leg_ranks = np.zeros((n_legs, n), dtype=np.int64)
    if slot is not None:
        leg_scores[slot] = leg.scores
        leg_ranks[slot] = np.arange(1, n + 1)
    ids = leg.ids if isinstance(leg.ids, RowIds) else list(leg.ids)
    return Fused(ids, np.asarray(leg.scores, dtype=np.float64), leg_scores, leg_ranks)
