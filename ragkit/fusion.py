"""Fusion of ranked legs into one ranking: weighted RRF, relative score and DBSF.

Each function takes the legs' candidate lists (best first, raw scores) and one weight per leg,
and returns the fused ranking. They are pure and never divide by zero: a leg whose scores are
all equal (including a leg with a single hit) carries no information about which of its hits is
better, so every hit of that leg gets the neutral normalized score 0.5. A record missing from a
leg gets nothing from that leg, so records found by one leg only are never inflated.

In ragkit's hybrid search the legs are ``(dense, lexical)`` with weights ``(alpha, 1 - alpha)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ragkit.schema import Candidate

DEFAULT_RRF_K = 60


class Fusion(StrEnum):
    RRF = "rrf"
    RELATIVE_SCORE = "relative_score"
    DBSF = "dbsf"


@dataclass(slots=True)
class Fused:
    """One fused record: its id, fused score, and each leg's raw score and 1-based rank."""

    id: str
    score: float
    leg_scores: list[float | None]
    leg_ranks: list[int | None]


Legs = Sequence[Sequence[Candidate]]


def _collect(legs: Legs, weights: Sequence[float]) -> dict[str, Fused]:
    if len(weights) != len(legs):
        raise ValueError(f"got {len(weights)} weights for {len(legs)} legs")
    fused: dict[str, Fused] = {}
    n_legs = len(legs)
    for leg_index, leg in enumerate(legs):
        for rank, cand in enumerate(leg, start=1):
            entry = fused.get(cand.id)
            if entry is None:
                entry = Fused(cand.id, 0.0, [None] * n_legs, [None] * n_legs)
                fused[cand.id] = entry
            if entry.leg_ranks[leg_index] is None:  # a leg lists each id once; keep the first
                entry.leg_ranks[leg_index] = rank
                entry.leg_scores[leg_index] = cand.score
    return fused


def _ranked(fused: dict[str, Fused]) -> list[Fused]:
    """Best score first; ties go to the better rank, then to the earlier leg, then by id."""

    def tie_break(f: Fused) -> tuple[int, int]:
        ranked = [(r, leg) for leg, r in enumerate(f.leg_ranks) if r is not None]
        return min(ranked)

    return sorted(fused.values(), key=lambda f: (-f.score, *tie_break(f), f.id))


def fuse_rrf(legs: Legs, weights: Sequence[float], k: int = DEFAULT_RRF_K) -> list[Fused]:
    """Weighted reciprocal rank fusion: ``score = sum_leg weight / (k + rank)``."""
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    fused = _collect(legs, weights)
    for entry in fused.values():
        entry.score = sum(
            w / (k + rank) for w, rank in zip(weights, entry.leg_ranks) if rank is not None
        )
    return _ranked(fused)


def _normalized_fusion(
    legs: Legs, weights: Sequence[float], normalize: Callable[[np.ndarray], np.ndarray]
) -> list[Fused]:
    fused = _collect(legs, weights)
    for leg_index, (leg, weight) in enumerate(zip(legs, weights)):
        if not leg:
            continue
        norm = normalize(np.fromiter((c.score for c in leg), dtype=np.float64, count=len(leg)))
        for rank, (cand, value) in enumerate(zip(leg, norm.tolist()), start=1):
            entry = fused[cand.id]
            if entry.leg_ranks[leg_index] == rank:
                entry.score += weight * value
    return _ranked(fused)


def minmax_normalize(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the leg's min and max; all-equal scores map to 0.5."""
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.full_like(scores, 0.5)
    return (scores - lo) / (hi - lo)


def dbsf_normalize(scores: np.ndarray) -> np.ndarray:
    """Distribution-based score fusion: scale ``[mean - 3 sd, mean + 3 sd]`` to [0, 1], clipped."""
    mean, sd = float(scores.mean()), float(scores.std())
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return np.full_like(scores, 0.5)
    return np.clip((scores - (mean - 3 * sd)) / (6 * sd), 0.0, 1.0)


def fuse_relative_score(legs: Legs, weights: Sequence[float]) -> list[Fused]:
    """Relative score fusion: min-max normalize each leg, then take the weighted sum."""
    return _normalized_fusion(legs, weights, minmax_normalize)


def fuse_dbsf(legs: Legs, weights: Sequence[float]) -> list[Fused]:
    """DBSF: normalize each leg by mean +/- 3 standard deviations, then the weighted sum."""
    return _normalized_fusion(legs, weights, dbsf_normalize)


_NORMALIZERS: dict[Fusion, Callable[[np.ndarray], np.ndarray]] = {
    Fusion.RELATIVE_SCORE: minmax_normalize,
    Fusion.DBSF: dbsf_normalize,
}


def fuse(
    method: Fusion, legs: Legs, weights: Sequence[float], *, rrf_k: int = DEFAULT_RRF_K
) -> list[Fused]:
    """Fuse with the given method; ``rrf_k`` applies to RRF only."""
    if method is Fusion.RRF:
        return fuse_rrf(legs, weights, rrf_k)
    return _normalized_fusion(legs, weights, _NORMALIZERS[method])
