"""Fusion of ranked legs into one ranking: weighted RRF, relative score and DBSF.

Each function takes the legs (``Leg``: ids best first with raw scores) and one weight per leg,
and returns the fused ranking as arrays. They are pure and never divide by zero: a leg whose
scores are all equal (including a leg with a single hit) carries no information about which of
its hits is better, so every hit of that leg gets the neutral normalized score 0.5. A record
missing from a leg gets nothing from that leg, so records found by one leg only are never
inflated.

In ragkit's hybrid search the legs are ``(dense, lexical)`` with weights ``(alpha, 1 - alpha)``.
Everything is vectorized: the only Python loop is one pass over the candidate ids to number
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from ragkit.schema import Leg

DEFAULT_RRF_K = 60
_ABSENT_RANK = np.iinfo(np.int64).max


class Fusion(StrEnum):
    RRF = "rrf"
    RELATIVE_SCORE = "relative_score"
    DBSF = "dbsf"


@dataclass(slots=True, eq=False)
class Fused:
    """A fused ranking, best first: ids, fused scores, and each leg's raw score and 1-based
    rank per record (``leg_scores`` is NaN and ``leg_ranks`` 0 where a leg did not return the
    record). Arrays are indexed ``[leg, position]``."""

    ids: list[str]
    scores: NDArray[np.float64]
    leg_scores: NDArray[np.float64]
    leg_ranks: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, order: Sequence[int] | NDArray[np.int64]) -> Fused:
        """The records at the given positions, in that order."""
        idx = np.asarray(order, dtype=np.int64)
        return Fused(
            [self.ids[i] for i in idx.tolist()],
            self.scores[idx],
            self.leg_scores[:, idx],
            self.leg_ranks[:, idx],
        )

    def head(self, n: int) -> Fused:
        return self.take(np.arange(min(n, len(self.ids))))

    def leg_score(self, leg: int, position: int) -> float | None:
        value = float(self.leg_scores[leg, position])
        return None if np.isnan(value) else value

    def leg_rank(self, leg: int, position: int) -> int | None:
        value = int(self.leg_ranks[leg, position])
        return value or None


def _collect(
    legs: Sequence[Leg], weights: Sequence[float]
) -> tuple[Fused, list[NDArray[np.int64]]]:
    if len(weights) != len(legs):
        raise ValueError(f"got {len(weights)} weights for {len(legs)} legs")
    index: dict[str, int] = {}
    positions = [
        np.fromiter((index.setdefault(i, len(index)) for i in leg.ids), np.int64, len(leg.ids))
        for leg in legs
    ]
    n = len(index)
    leg_scores = np.full((len(legs), n), np.nan)
    leg_ranks = np.zeros((len(legs), n), dtype=np.int64)
    for slot, (leg, pos) in enumerate(zip(legs, positions)):
        leg_scores[slot, pos] = leg.scores
        leg_ranks[slot, pos] = np.arange(1, len(pos) + 1)
    return Fused(list(index), np.zeros(n), leg_scores, leg_ranks), positions


def _ranked(fused: Fused) -> Fused:
    """Best score first; ties go to the better rank, then to the earlier leg, then by id."""
    if not fused.ids:
        return fused
    ranks = np.where(fused.leg_ranks > 0, fused.leg_ranks, _ABSENT_RANK)
    best_rank = ranks.min(axis=0)
    best_leg = ranks.argmin(axis=0)  # the first leg on equal ranks
    order = np.lexsort((np.array(fused.ids), best_leg, best_rank, -fused.scores))
    return fused.take(order)


def fuse_rrf(legs: Sequence[Leg], weights: Sequence[float], k: int = DEFAULT_RRF_K) -> Fused:
    """Weighted reciprocal rank fusion: ``score = sum_leg weight / (k + rank)``."""
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    fused, positions = _collect(legs, weights)
    for weight, pos in zip(weights, positions):
        fused.scores[pos] += weight / (k + np.arange(1, len(pos) + 1, dtype=np.float64))
    return _ranked(fused)


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
    return _ranked(fused)


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
    return Fused(list(leg.ids), np.asarray(leg.scores, dtype=np.float64), leg_scores, leg_ranks)
