"""Top-k selection that keeps ties at the cut, so callers can break them by record id."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def top_k_with_ties(scores: NDArray[np.floating], k: int) -> NDArray[np.int64]:
    """Indices of the ``k`` best scores plus any others equal to the k-th best (unsorted).

    Sharded and unsharded stores must agree on which of several equally scored records make
    the top k; keeping the ties lets the shard order them by id (``LocalShard._candidates``).
    """
    n = len(scores)
    if n <= k:
        return np.arange(n, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    kth = scores[part].min()
    return np.flatnonzero(scores >= kth).astype(np.int64)
