"""Columnar copies of record metadata, so a filter becomes a few vectorized numpy ops.

Each metadata key gets typed columns over the shard's rows: numbers (float64, NaN when
absent), strings (dictionary codes, -1 when absent), bools (-1 absent, 0, 1) and a presence
flag; list values get a value -> rows index for ``$contains``. The semantics are those of
``ragkit.filters.matches``, which tests compare against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit.backends.local._arrays import GrowableArray
from ragkit.filters import And, Compare, Filter, Not, Op, Or

_Key = tuple[str, Any]


def _scalar_key(value: object) -> _Key | None:
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    return None


_RANGE = {Op.GT: np.greater, Op.GTE: np.greater_equal, Op.LT: np.less, Op.LTE: np.less_equal}


def _bools(value: Any) -> NDArray[np.bool_]:
    return np.asarray(value, dtype=bool)


class _Column:
    __slots__ = ("bools", "codes", "members", "numbers", "present", "strings")

    def __init__(self) -> None:
        self.present = GrowableArray(np.bool_, fill=False)
        self.numbers = GrowableArray(np.float64, fill=np.nan)
        self.codes = GrowableArray(np.int32, fill=-1)
        self.bools = GrowableArray(np.int8, fill=-1)
        self.strings: dict[str, int] = {}
        self.members: dict[_Key, list[int]] = {}

    def pad_to(self, n: int) -> None:
        self.present.pad_to(n, False)
        self.numbers.pad_to(n, np.nan)
        self.codes.pad_to(n, -1)
        self.bools.pad_to(n, -1)

    def set(self, row: int, value: object) -> None:
        self.pad_to(row + 1)
        if value is None:
            return
        self.present.view[row] = True
        if isinstance(value, bool):
            self.bools.view[row] = int(value)
        elif isinstance(value, int | float):
            self.numbers.view[row] = float(value)
        elif isinstance(value, str):
            self.codes.view[row] = self.strings.setdefault(value, len(self.strings))
        elif isinstance(value, list):
            for item in {k for k in map(_scalar_key, value) if k is not None}:
                self.members.setdefault(item, []).append(row)

    def equals(self, value: object, n: int) -> NDArray[np.bool_]:
        if isinstance(value, bool):
            return _bools(self.bools.view[:n] == int(value))
        if isinstance(value, str):
            code = self.strings.get(value)
            return np.zeros(n, dtype=bool) if code is None else _bools(self.codes.view[:n] == code)
        if isinstance(value, int | float):
            return _bools(self.numbers.view[:n] == float(value))
        return np.zeros(n, dtype=bool)

    def contains(self, value: object, n: int) -> NDArray[np.bool_]:
        out = np.zeros(n, dtype=bool)
        key = _scalar_key(value)
        rows = self.members.get(key) if key is not None else None
        if rows:
            out[np.asarray(rows, dtype=np.int64)] = True
        if isinstance(value, str) and self.strings:
            codes = [c for s, c in self.strings.items() if value in s]
            if codes:
                out |= np.isin(self.codes.view[:n], codes)
        return out


class MetadataColumns:
    """Filter evaluation over all rows of a shard, as a boolean mask."""

    def __init__(self) -> None:
        self._columns: dict[str, _Column] = {}

    def add(self, first_row: int, metadatas: list[dict[str, Any]]) -> None:
        for offset, metadata in enumerate(metadatas):
            row = first_row + offset
            for key, value in metadata.items():
                column = self._columns.get(key)
                if column is None:
                    column = self._columns[key] = _Column()
                column.set(row, value)

    def mask(self, flt: Filter, n: int) -> NDArray[np.bool_]:
        if isinstance(flt, And):
            out = self.mask(flt.children[0], n)
            for child in flt.children[1:]:
                out &= self.mask(child, n)
            return out
        if isinstance(flt, Or):
            out = self.mask(flt.children[0], n)
            for child in flt.children[1:]:
                out |= self.mask(child, n)
            return out
        if isinstance(flt, Not):
            return ~self.mask(flt.child, n)
        return self._compare(flt, n)

    def _compare(self, cond: Compare, n: int) -> NDArray[np.bool_]:
        column = self._columns.get(cond.field)
        if column is None:
            column = _Column()
        column.pad_to(n)
        op = cond.op
        if op is Op.EXISTS:
            present = column.present.view[:n].copy()
            return present if cond.value else ~present
        if op in (Op.EQ, Op.NE):
            eq = column.equals(cond.value, n)
            return eq if op is Op.EQ else ~eq
        if op in (Op.IN, Op.NIN):
            hit = np.zeros(n, dtype=bool)
            for value in cond.value:
                hit |= column.equals(value, n)
            return hit if op is Op.IN else ~hit
        if op is Op.CONTAINS:
            return column.contains(cond.value, n)
        numbers = column.numbers.view[:n]
        with np.errstate(invalid="ignore"):  # NaN (absent) compares false, as it should
            return _bools(_RANGE[op](numbers, cond.value))
