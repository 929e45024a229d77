"""Ranked answers as every layer passes them: one leg's candidates (``Leg``) and a fused
ranking (``Fused``). Below both ``ragkit.schema`` and ``ragkit.fusion``, which re-export them,
so neither imports the other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from ragkit._rowids import RowIds


class Candidate(NamedTuple):
    """One leg's answer for one record: its id and the leg's raw score (higher is better)."""

    id: str
    score: float


@dataclass(frozen=True, slots=True, eq=False)
class Leg:
    """One leg's answer: candidate ids best first, their raw scores (cosine similarity or
    BM25), and the partitions that could not contribute (empty when the answer is whole).

    ``ceiling`` is the best score any record could get on this leg for this query (1 for
    cosine; for BM25, every query term repeated without bound), ``None`` when unknown; the
    calibrated fusion divides by it. ``extra`` holds this leg's scores for candidates it did
    not return but the other leg did, when the backend can compute them (a LocalShard
    does), so every candidate is fused on both legs.
    """

    ids: Sequence[str]
    scores: NDArray[np.float32]
    missing: tuple[str, ...] = ()
    ceiling: float | None = None
    extra: Mapping[str, float] = field(default_factory=dict)

    @staticmethod
    def empty(missing: tuple[str, ...] = ()) -> Leg:
        return Leg([], np.empty(0, dtype=np.float32), missing)

    def __len__(self) -> int:
        return len(self.ids)

    def candidates(self) -> list[Candidate]:
        return [Candidate(i, s) for i, s in zip(self.ids, self.scores.tolist())]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Leg):
            return NotImplemented
        return (
            list(self.ids) == list(other.ids)
            and np.array_equal(self.scores, other.scores)
            and self.missing == other.missing
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(slots=True, eq=False)
class Fused:
    """A fused ranking, best first: ids, fused scores, and each leg's raw score and 1-based
    rank per record (``leg_scores`` is NaN and ``leg_ranks`` 0 where a leg did not return the
    record). Arrays are indexed ``[leg, position]``."""

    ids: Sequence[str]  # a list, or RowIds when every leg came from one LocalShard
    scores: NDArray[np.float64]
    leg_scores: NDArray[np.float64]
    leg_ranks: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, order: Sequence[int] | NDArray[np.int64]) -> Fused:
        """The records at the given positions, in that order."""
        idx = np.asarray(order, dtype=np.int64)
        ids = self.ids
        return Fused(
            ids.take(idx) if isinstance(ids, RowIds) else [ids[i] for i in idx.tolist()],
            self.scores[idx],
            self.leg_scores[:, idx],
            self.leg_ranks[:, idx],
        )

    def head(self, n: int) -> Fused:
        if n >= len(self.ids):
            return self
        return self.take(np.arange(n))

    def leg_score(self, leg: int, position: int) -> float | None:
        value = float(self.leg_scores[leg, position])
        return None if np.isnan(value) else value

    def leg_rank(self, leg: int, position: int) -> int | None:
        value = int(self.leg_ranks[leg, position])
        return value or None
