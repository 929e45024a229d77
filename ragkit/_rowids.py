"""Record ids kept as row numbers of one shard, until someone reads them as strings.

A LocalShard answers a query with a few hundred candidates of which ten become hits: turning
every candidate's row into its id string, and keying fusion by strings, was a third of the
query's time. ``RowIds`` and ``RowScores`` are the ``Sequence[str]`` and ``Mapping[str,
float]`` a ``Leg`` holds, backed by row numbers; fusion works on the rows directly when every
leg comes from the same shard (``same_rows``), and only the hits' ids are ever built.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray


class RowIds(Sequence[str]):
    """``names[row]`` for each of ``rows``; ``names`` is the shard's row -> id table."""

    __slots__ = ("_list", "names", "rows")

    def __init__(self, names: list[str], rows: NDArray[np.int64]) -> None:
        self.names = names
        self.rows = rows
        self._list: list[str] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> RowIds: ...

    def __getitem__(self, index: int | slice) -> str | RowIds:
        if isinstance(index, slice):
            return RowIds(self.names, self.rows[index])
        return self.names[int(self.rows[index])]

    def as_list(self) -> list[str]:
        if self._list is None:
            names = self.names
            self._list = [names[r] for r in self.rows.tolist()]
        return self._list

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_list())

    def take(self, positions: NDArray[np.int64]) -> RowIds:
        return RowIds(self.names, self.rows[positions])

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (to another process) as a plain list
        return (list, (self.as_list(),))


class RowScores(Mapping[str, float]):
    """Scores of some rows by id (``Leg.extra``), kept as arrays."""

    __slots__ = ("_dict", "names", "rows", "scores")

    def __init__(
        self, names: list[str], rows: NDArray[np.int64], scores: NDArray[np.floating]
    ) -> None:
        self.names = names
        self.rows = rows
        self.scores = scores
        self._dict: dict[str, float] | None = None

    def _as_dict(self) -> dict[str, float]:
        if self._dict is None:
            names = self.names
            self._dict = dict(zip([names[r] for r in self.rows.tolist()], self.scores.tolist()))
        return self._dict

    def as_dict(self) -> dict[str, float]:
        """A plain dict of these scores (a copy)."""
        return dict(self._as_dict())

    def __getitem__(self, key: str) -> float:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return len(self.rows)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._as_dict(),))


def same_rows(ids: Sequence[Sequence[str]], extras: Sequence[Mapping[str, float]]) -> bool:
    """Do all these ids and extras number rows of one shard (so fusion may key by row)?"""
    tables = {id(i.names) for i in ids if isinstance(i, RowIds)}
    if len(tables) != 1 or not all(isinstance(i, RowIds) for i in ids):
        return False
    for extra in extras:
        if isinstance(extra, RowScores):
            if id(extra.names) not in tables:
                return False
        elif extra:  # a plain mapping with entries: key by string
            return False
    return True
