"""Columnar copies of record metadata, so a filter becomes a few vectorized numpy ops.

Each metadata key keeps a sparse column: the rows that have the key, with their value as a
number (float64, NaN otherwise), a string code (-1 otherwise) and a bool (-1, 0, 1); list
values get a value -> rows index for ``$contains``. Memory is proportional to the (row, key)
pairs stored: a record with thousands of keys costs its own entries, not thousands of arrays
over every row (dense columns did: 550 MB for one such record among 2,000). A filter builds
its mask over all rows from the matching rows of each column. The semantics are those of
``ragkit.filters.matches``, which tests compare against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def _list_key(value: list[Any]) -> tuple[_Key | None, ...]:
    """A list value as a whole, for ``$eq`` with a list (1 and 1.0 alike, bools apart)."""
    return tuple(_scalar_key(item) for item in value)


class _Column:
    __slots__ = ("bools", "codes", "lists", "members", "numbers", "rows", "strings")

    def __init__(self) -> None:
        self.rows = GrowableArray(np.int64)
        self.numbers = GrowableArray(np.float64)
        self.codes = GrowableArray(np.int32)
        self.bools = GrowableArray(np.int8)
        self.strings: dict[str, int] = {}
        self.members: dict[_Key, list[int]] = {}
        self.lists: dict[tuple[_Key | None, ...], list[int]] = {}

    def encode(self, row: int, value: object) -> tuple[float, int, int]:
        """The (number, string code, bool) entry for a present value; list items go to the
        membership index."""
        number, code, flag = np.nan, -1, -1
        if isinstance(value, bool):
            flag = int(value)
        elif isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            code = self.strings.setdefault(value, len(self.strings))
        elif isinstance(value, list):
            for item in {k for k in map(_scalar_key, value) if k is not None}:
                self.members.setdefault(item, []).append(row)
            self.lists.setdefault(_list_key(value), []).append(row)
        return number, code, flag

    def extend(
        self, rows: list[int], numbers: list[float], codes: list[int], flags: list[int]
    ) -> None:
        self.rows.extend(rows)
        self.numbers.extend(numbers)
        self.codes.extend(codes)
        self.bools.extend(flags)

    def spread(self, selected: NDArray[np.bool_], n: int) -> NDArray[np.bool_]:
        """A mask over ``n`` rows from a selection over this column's entries."""
        out = np.zeros(n, dtype=bool)
        rows = self.rows.view[selected]
        out[rows[rows < n]] = True
        return out

    def equals(self, value: object) -> NDArray[np.bool_]:
        """Entries equal to ``value`` (bools never equal numbers)."""
        if isinstance(value, bool):
            return np.asarray(self.bools.view == int(value))
        if isinstance(value, str):
            code = self.strings.get(value)
            if code is None:
                return np.zeros(len(self.rows), dtype=bool)
            return np.asarray(self.codes.view == code)
        if isinstance(value, int | float):
            return np.asarray(self.numbers.view == float(value))
        return np.zeros(len(self.rows), dtype=bool)

    def contains(self, value: object, n: int) -> NDArray[np.bool_]:
        out = np.zeros(n, dtype=bool)
        key = _scalar_key(value)
        rows = self.members.get(key) if key is not None else None
        if rows:
            found = np.asarray(rows, dtype=np.int64)
            out[found[found < n]] = True
        if isinstance(value, str) and self.strings:
            codes = [c for s, c in self.strings.items() if value in s]
            if codes:
                out |= self.spread(np.isin(self.codes.view, codes), n)
        return out

    def strings_where(self, test: Callable[[str], bool], n: int) -> NDArray[np.bool_]:
        """Rows whose string value passes ``test`` (tested once per distinct string)."""
        codes = [c for s, c in self.strings.items() if test(s)]
        if not codes:
            return np.zeros(n, dtype=bool)
        return self.spread(np.isin(self.codes.view, codes), n)

    def list_equals(self, value: tuple[Any, ...], n: int) -> NDArray[np.bool_]:
        """Rows whose list value equals ``value`` element by element."""
        out = np.zeros(n, dtype=bool)
        rows = self.lists.get(tuple(_scalar_key(v) for v in value))
        if rows:
            found = np.asarray(rows, dtype=np.int64)
            out[found[found < n]] = True
        return out


class MetadataColumns:
    """Filter evaluation over all rows of a shard, as a boolean mask."""

    def __init__(self) -> None:
        self._columns: dict[str, _Column] = {}

    def add(self, first_row: int, metadatas: list[dict[str, Any]]) -> None:
        self.add_rows(range(first_row, first_row + len(metadatas)), metadatas)

    def add_rows(self, rows: Sequence[int], metadatas: list[dict[str, Any]]) -> None:
        pending: dict[str, tuple[list[int], list[float], list[int], list[int]]] = {}
        for row, metadata in zip(rows, metadatas):
            for key, value in metadata.items():
                if value is None:  # null is absent, as in the reference semantics
                    continue
                column = self._columns.get(key)
                if column is None:
                    column = self._columns[key] = _Column()
                lists = pending.get(key)
                if lists is None:
                    lists = pending[key] = ([], [], [], [])
                number, code, flag = column.encode(row, value)
                lists[0].append(row)
                lists[1].append(number)
                lists[2].append(code)
                lists[3].append(flag)
        for key, lists in pending.items():
            self._columns[key].extend(*lists)

    @property
    def entries(self) -> int:
        """(row, key) pairs held: what the memory is proportional to."""
        return sum(len(c.rows) for c in self._columns.values())

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
        op = cond.op
        if column is None:  # no record has the field: only the negations match
            return (
                np.ones(n, dtype=bool)
                if op in (Op.NE, Op.NIN) or (op is Op.EXISTS and not cond.value)
                else np.zeros(n, dtype=bool)
            )
        if op is Op.EXISTS:
            present = column.spread(np.ones(len(column.rows), dtype=bool), n)
            return present if cond.value else ~present
        if op in (Op.EQ, Op.NE):
            if isinstance(cond.value, tuple):
                eq = column.list_equals(cond.value, n)
            else:
                eq = column.spread(column.equals(cond.value), n)
            return eq if op is Op.EQ else ~eq
        if op in (Op.IN, Op.NIN):
            hit = np.zeros(len(column.rows), dtype=bool)
            for value in cond.value:
                hit |= column.equals(value)
            found = column.spread(hit, n)
            return found if op is Op.IN else ~found
        if op is Op.CONTAINS:
            return column.contains(cond.value, n)
        if op is Op.ICONTAINS:
            folded = cond.value.casefold()
            return column.strings_where(lambda s: folded in s.casefold(), n)
        if op is Op.LCONTAINS:
            lowered = cond.value.lower()
            return column.strings_where(lambda s: lowered in s.lower(), n)
        if isinstance(cond.value, str):  # a string range, in code point order
            bound, compare = cond.value, _RANGE[op]
            return column.strings_where(lambda s: bool(compare(s, bound)), n)
        with np.errstate(invalid="ignore"):  # NaN (not a number) compares false, as it should
            return column.spread(_RANGE[op](column.numbers.view, cond.value), n)
