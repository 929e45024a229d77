"""LlamaIndex ``MetadataFilters`` -> ragkit's filter dict language, with LlamaIndex's semantics.

The reference is LlamaIndex's own evaluator (``build_metadata_filter_fn``, which
``SimpleVectorStore`` uses), operator by operator, and ``tests/test_llamaindex_filters.py``
checks the translation against it over random metadata and filter trees. What it does, in
Python terms (``mv`` is the record's value, ``v`` the filter's):

- A missing or ``None`` value matches only ``!=`` and ``nin``; ``is_empty`` matches a missing
  value, ``None``, ``""`` and ``[]``.
- ``==`` / ``!=`` / ``in`` / ``nin`` are Python's ``==``: ``True == 1`` and ``False == 0.0``,
  a list equals a list element by element, ``in`` with a string value is a substring test.
- ``>`` ``>=`` ``<`` ``<=`` compare numbers with numbers (bools as 1 and 0) and strings with
  strings.
- ``contains`` is ``v in mv``: an element of a list, or a substring of a string; ``any`` /
  ``all`` apply it to each of ``v``'s values; ``text_match`` is a substring of a string,
  ``text_match_insensitive`` compares ``str.lower()`` forms.
- The condition ``not`` matches when none of its filters match.

Where Python would raise ``TypeError`` (comparing a string with a number, ``contains`` on a
number), LlamaIndex's store fails the query; ragkit does not match that record. Nested
``MetadataFilters`` (LlamaIndex's evaluator refuses them) combine the same way at every level.
Lists ordered against lists, and ``==`` with lists holding more than
``_MAX_BOOL_ALTERNATIVES`` 0/1 values, are a ``FilterError``.
"""

from __future__ import annotations

import itertools
from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from ragkit.errors import FilterError

#: 0/1 values of a list compared with ``==``, each also matching a bool: 2**n alternatives
_MAX_BOOL_ALTERNATIVES = 6
#: distinct substrings of an ``in`` value that is a string (``mv in "abc"``)
_MAX_SUBSTRINGS = 500

_RANGES = {
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
}
_CHECK = {
    FilterOperator.GT: lambda a, b: a > b,
    FilterOperator.GTE: lambda a, b: a >= b,
    FilterOperator.LT: lambda a, b: a < b,
    FilterOperator.LTE: lambda a, b: a <= b,
}


def _true(key: str) -> dict[str, Any]:
    return {"$or": [{key: {"$exists": True}}, {key: {"$exists": False}}]}


def _false(key: str) -> dict[str, Any]:
    return {"$not": _true(key)}


def _any(key: str, clauses: list[dict[str, Any]]) -> dict[str, Any]:
    if not clauses:
        return _false(key)
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal_scalars(value: object) -> list[Any]:
    """The ragkit scalars Python's ``==`` equates with ``value`` (1 also means True)."""
    if _is_number(value) and value in (0, 1):
        return [value, bool(value)]
    return [value]


def _equals(key: str, value: Any, flt: MetadataFilter) -> dict[str, Any]:
    """``mv == value`` for a present ``mv``."""
    if value is None:
        return _false(key)
    if isinstance(value, list):
        flexible = sum(1 for v in value if _is_number(v) and v in (0, 1))
        if flexible > _MAX_BOOL_ALTERNATIVES:
            raise FilterError(
                f"LlamaIndex filter {flt.key!r} {flt.operator.value} {value!r:.80}: a list with "
                f"more than {_MAX_BOOL_ALTERNATIVES} values equal to 0 or 1 (each of which "
                "Python also equates with a bool) cannot be matched exactly"
            )
        lists = [list(c) for c in itertools.product(*(_equal_scalars(v) for v in value))]
        return _any(key, [{key: {"$eq": items}} for items in lists])
    return _any(key, [{key: {"$eq": v}} for v in _equal_scalars(value)])


def _member(key: str, value: Any, flt: MetadataFilter) -> dict[str, Any]:
    """``mv in value`` for a present ``mv``."""
    if isinstance(value, str):  # a substring of the value (only a string mv can be one)
        subs = {value[i:j] for i in range(len(value) + 1) for j in range(i, len(value) + 1)}
        if len(subs) > _MAX_SUBSTRINGS:
            raise FilterError(
                f"LlamaIndex filter {flt.key!r} {flt.operator.value} with the string "
                f"{value!r:.80} (a substring test) is limited to {_MAX_SUBSTRINGS} distinct "
                "substrings; pass a list of values instead"
            )
        return {key: {"$in": sorted(subs)}}
    if not isinstance(value, list):  # None or a number: Python raises TypeError
        return _false(key)
    alternatives = [v for item in value for v in _equal_scalars(item)]
    return {key: {"$in": alternatives}} if alternatives else _false(key)


def _holds(key: str, item: Any) -> dict[str, Any]:
    """``item in mv`` for a present ``mv``: an element of a list, a substring of a string."""
    if isinstance(item, list) or item is None:  # never an element of a list of scalars
        return _false(key)
    return _any(key, [{key: {"$contains": v}} for v in _equal_scalars(item)])


def _present(key: str, clause: dict[str, Any]) -> dict[str, Any]:
    """A present, non-None value for which ``clause`` holds."""
    return {"$and": [{key: {"$exists": True}}, clause]}


def _range(flt: MetadataFilter) -> dict[str, Any]:
    key, value, op = flt.key, flt.value, flt.operator
    if isinstance(value, list):
        raise FilterError(
            f"LlamaIndex filter {key!r} {op.value} {value!r:.80}: ordering lists against a list "
            "is not supported; compare a number or a string"
        )
    if isinstance(value, str):
        return {key: {_RANGES[op]: value}}
    if value is None:
        return _false(key)
    clauses: list[dict[str, Any]] = [{key: {_RANGES[op]: value}}]
    clauses += [{key: {"$eq": b}} for b in (False, True) if _CHECK[op](int(b), value)]
    return _any(key, clauses)


def _translate_one(flt: MetadataFilter) -> dict[str, Any]:
    key, value, op = flt.key, flt.value, flt.operator
    if op is FilterOperator.IS_EMPTY:
        return {"$or": [{key: {"$exists": False}}, {key: {"$eq": ""}}, {key: {"$eq": []}}]}
    if op is FilterOperator.EQ:
        return _equals(key, value, flt)
    if op is FilterOperator.NE:  # a missing value is "not equal" too
        return {"$not": _equals(key, value, flt)}
    if op in _RANGES:
        return _range(flt)
    if op is FilterOperator.IN:
        return _member(key, value, flt)
    if op is FilterOperator.NIN:
        if isinstance(value, list):
            return {"$not": _member(key, value, flt)}
        missing = {key: {"$exists": False}}
        if not isinstance(value, str):  # None or a number: a present value raises in Python
            return missing
        # A string value: a string that is not a substring of it.
        outside = {"$and": [{key: {"$gte": ""}}, {"$not": _member(key, value, flt)}]}
        return {"$or": [missing, outside]}
    if op is FilterOperator.CONTAINS:
        return _holds(key, value)
    if op in (FilterOperator.ANY, FilterOperator.ALL):
        if not isinstance(value, list):  # iterating None or a number raises in Python
            if isinstance(value, str):
                items: list[Any] = list(value)  # Python iterates a string's characters
            else:
                return _false(key)
        else:
            items = list(value)
        parts = [_holds(key, item) for item in items]
        if op is FilterOperator.ANY:
            return _any(key, parts)
        return _present(key, {"$and": parts}) if parts else {key: {"$exists": True}}
    if op is FilterOperator.TEXT_MATCH:
        if not isinstance(value, str):
            return _false(key)
        return {"$and": [{key: {"$gte": ""}}, {key: {"$contains": value}}]}
    if op is FilterOperator.TEXT_MATCH_INSENSITIVE:
        if not isinstance(value, str):
            return _false(key)
        return {key: {"$lcontains": value}}
    raise FilterError(
        f"LlamaIndex filter operator {op.value!r} on {key!r} cannot be expressed in ragkit filters"
    )


def _translate(filters: MetadataFilters) -> dict[str, Any]:
    parts = [
        _translate(f) if isinstance(f, MetadataFilters) else _translate_one(f)
        for f in filters.filters
    ]
    condition = filters.condition or FilterCondition.AND
    if not parts:  # an empty group holds for every record, as LlamaIndex's does
        return _true("_")
    if condition is FilterCondition.OR:
        return _any("_", parts)
    if condition is FilterCondition.NOT:  # none of them
        return {"$not": _any("_", parts)}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def translate_filters(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """Translate every FilterOperator and FilterCondition with LlamaIndex's semantics, or
    raise ``FilterError`` (``None``: no filter)."""
    if filters is None or not filters.filters:
        return None
    return _translate(filters)
