"""Maximal marginal relevance: re-rank candidates for relevance and diversity."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def mmr_select(
    relevance: NDArray[np.floating], vectors: NDArray[np.floating], k: int, lambda_mult: float
) -> list[int]:
    """Pick ``k`` indices greedily by ``lambda * relevance - (1 - lambda) * max_sim_to_picked``.

    ``relevance`` is in [0, 1] (higher is better); ``vectors`` are unit-normalized rows, so
    their dot product is cosine similarity. ``lambda_mult=1`` is pure relevance order,
    ``0`` is maximal diversity.
    """
    n = len(relevance)
    if n == 0 or k <= 0:
        return []
    sims = vectors @ vectors.T
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        redundancy = np.where(np.isfinite(max_sim), max_sim, 0.0)
        score = lambda_mult * relevance - (1.0 - lambda_mult) * redundancy
        score = np.where(available, score, -np.inf)
        best = int(np.argmax(score))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, sims[best])
    return picked
