"""The metadata filter language: parsing, validation and a reference evaluator.

A filter is a dict in the style of MongoDB / Chroma ``where`` clauses::

    {"year": {"$gte": 2020}, "lang": "en"}            # implicit $and, {"field": v} is $eq
    {"$or": [{"topic": {"$in": ["nlp", "ir"]}}, {"$not": {"draft": True}}]}

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $contains $icontains $lcontains`` on
fields and ``$and $or $not`` to combine. Semantics (every backend implements these exactly, or
refuses a filter it cannot express with a ``FilterError``):

- ``$eq`` / ``$in`` compare scalars (str, int, float, bool); bools never equal numbers.
  ``$eq`` / ``$ne`` also take a list: a list field equal to it, element by element and in
  order (``{"tags": {"$eq": []}}`` matches an empty list).
- ``$ne`` / ``$nin`` also match records where the field is missing.
- ``$gt $gte $lt $lte`` take a number and match numeric fields only (not bools), or a string
  and match string fields only, in code point order (ISO dates sort as dates;
  ``{"f": {"$gte": ""}}`` matches every string field).
- ``$contains`` matches a list field that has the value as an element, or a string field that
  has the value as a substring.
- ``$icontains`` takes a string and matches a string field that has it as a substring,
  ignoring case (Unicode case folding: "STRASSE" holds "straße").
- ``$lcontains`` takes a string and matches a string field whose ``str.lower()`` holds the
  value's (SQL's ``lower(field) LIKE '%value%'``, LlamaIndex's ``TEXT_MATCH_INSENSITIVE``).
- ``$exists`` takes a bool.

``parse_filter`` validates the whole dict up front and returns a small immutable AST; errors
name the offending key, operator or value and say what is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from ragkit._validation import check_int, check_string
from ragkit.errors import FilterError, InvalidInputError
from ragkit.limits import DEFAULT_LIMITS, Limits


class Op(StrEnum):
    EQ = "$eq"
    NE = "$ne"
    GT = "$gt"
    GTE = "$gte"
    LT = "$lt"
    LTE = "$lte"
    IN = "$in"
    NIN = "$nin"
    EXISTS = "$exists"
    CONTAINS = "$contains"
    ICONTAINS = "$icontains"
    LCONTAINS = "$lcontains"


RANGE_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})
_FIELD_OPS = {op.value: op for op in Op}
_LOGICAL_OPS = ("$and", "$or", "$not")


@dataclass(frozen=True, slots=True)
class Compare:
    """``field <op> value``."""

    field: str
    op: Op
    value: Any


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Filter


Filter: TypeAlias = Compare | And | Or | Not


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and _is_scalar(value)


class _Budget:
    """What a filter may still spend: nesting and conditions (``Limits``)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.conditions = 0

    def spend(self, n: int = 1) -> None:
        self.conditions += n
        if self.conditions > self.limits.max_filter_conditions:
            raise FilterError(
                f"the filter has more than {self.limits.max_filter_conditions} conditions "
                "(Limits.max_filter_conditions)"
            )

    def nest(self, depth: int) -> None:
        if depth > self.limits.max_filter_depth:
            raise FilterError(
                f"the filter nests deeper than {self.limits.max_filter_depth} levels "
                "(Limits.max_filter_depth)"
            )

    def scalar(self, value: object, where: str) -> None:
        try:
            if isinstance(value, str):
                check_string(value, f"{where}: the value")
            elif isinstance(value, int) and not isinstance(value, bool):
                check_int(value, where, self.limits)
        except InvalidInputError as exc:
            raise FilterError(str(exc)) from None


def _check_field(name: object, budget: _Budget) -> str:
    if not isinstance(name, str) or not name:
        raise FilterError(f"filter field names must be non-empty strings, got {name!r:.80}")
    if name.startswith("$"):
        accepted = ", ".join([*_LOGICAL_OPS, *_FIELD_OPS])
        raise FilterError(f"unknown filter operator {name!r:.80}; accepted operators: {accepted}")
    try:
        return check_string(name, "a filter field name")
    except InvalidInputError as exc:
        raise FilterError(str(exc)) from None


def _scalars(value: object, where: str, accepted: str, budget: _Budget) -> tuple[Any, ...]:
    """A list of scalars as a tuple, each one counted as a condition and checked."""
    if not isinstance(value, list | tuple) or not all(_is_scalar(v) for v in value):
        raise FilterError(f"{where} takes {accepted}, got {value!r:.80}")
    budget.spend(len(value))
    for item in value:
        budget.scalar(item, where)
    return tuple(value)


def _compare(name: str, op: Op, value: object, budget: _Budget) -> Compare:
    where = f"filter on {name!r}: {op.value}"
    budget.spend()
    if op in (Op.EQ, Op.NE) and isinstance(value, list | tuple):
        value = _scalars(value, where, "a string, number, bool or a list of them", budget)
    elif op in (Op.EQ, Op.NE, Op.CONTAINS):
        if not _is_scalar(value):
            raise FilterError(f"{where} takes a string, number or bool, got {value!r:.80}")
        budget.scalar(value, where)
    elif op in RANGE_OPS:
        if not (_is_number(value) or isinstance(value, str)):
            raise FilterError(
                f"{where} takes a finite int or float, or a string, got {value!r:.80}"
            )
        budget.scalar(value, where)
    elif op in (Op.IN, Op.NIN):
        value = _scalars(value, where, "a list of strings, numbers or bools", budget)
    elif op is Op.ICONTAINS:
        if not isinstance(value, str) or not value:
            raise FilterError(f"{where} takes a non-empty string, got {value!r:.80}")
        budget.scalar(value, where)
    elif op is Op.LCONTAINS:
        if not isinstance(value, str):
            raise FilterError(f"{where} takes a string, got {value!r:.80}")
        budget.scalar(value, where)
    elif op is Op.EXISTS and not isinstance(value, bool):
        raise FilterError(f"{where} takes true or false, got {value!r:.80}")
    return Compare(name, op, value)


def _parse_field(name: str, condition: object, budget: _Budget) -> Filter:
    if isinstance(condition, list | tuple):
        raise FilterError(
            f"filter on {name!r}: a list needs an operator: {{'$in': [...]}} for any of its "
            "values, {'$eq': [...]} for the whole list"
        )
    if not isinstance(condition, Mapping):
        return _compare(name, Op.EQ, condition, budget)
    if not condition:
        raise FilterError(f"filter on {name!r} is an empty dict; give an operator such as $eq")
    parts: list[Filter] = []
    for op_name, value in condition.items():
        op = _FIELD_OPS.get(op_name) if isinstance(op_name, str) else None
        if op is None:
            accepted = ", ".join(_FIELD_OPS)
            raise FilterError(
                f"unknown operator {op_name!r:.80} in filter on {name!r}; accepted: {accepted}"
            )
        parts.append(_compare(name, op, value, budget))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse_list(op_name: str, value: object, budget: _Budget, depth: int) -> tuple[Filter, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise FilterError(f"{op_name} takes a non-empty list of filters, got {value!r:.80}")
    return tuple(_parse_node(item, budget, depth + 1) for item in value)


def _parse_node(node: object, budget: _Budget, depth: int = 0) -> Filter:
    budget.nest(depth)
    if not isinstance(node, Mapping):
        raise FilterError(f"a filter must be a dict, got {type(node).__name__}: {node!r:.80}")
    if not node:
        raise FilterError("a filter must not be an empty dict; pass None for no filter")
    parts: list[Filter] = []
    for key, value in node.items():
        if key == "$and":
            parts.append(And(_parse_list(key, value, budget, depth)))
        elif key == "$or":
            parts.append(Or(_parse_list(key, value, budget, depth)))
        elif key == "$not":
            parts.append(Not(_parse_node(value, budget, depth + 1)))
        else:
            parts.append(_parse_field(_check_field(key, budget), value, budget))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def parse_filter(
    spec: Mapping[str, Any] | Filter | None, limits: Limits = DEFAULT_LIMITS
) -> Filter | None:
    """Validate a filter dict and return its AST (``None`` means no filter)."""
    if spec is None or isinstance(spec, Compare | And | Or | Not):
        return spec
    return _parse_node(spec, _Budget(limits))


def _same_scalar(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return _is_number(a) and _is_number(b) and a == b


def _same_value(a: object, b: object) -> bool:
    """``b`` a scalar or a tuple of them (a whole list to equal)."""
    if isinstance(b, tuple):
        return (
            isinstance(a, list)
            and len(a) == len(b)
            and all(_same_scalar(x, y) for x, y in zip(a, b))
        )
    return _same_scalar(a, b)


def _compare_matches(cond: Compare, metadata: Mapping[str, Any]) -> bool:
    present = cond.field in metadata and metadata[cond.field] is not None
    value = metadata.get(cond.field)
    op = cond.op
    if op is Op.EXISTS:
        return present is cond.value
    if op is Op.NE:
        return not (present and _same_value(value, cond.value))
    if op is Op.NIN:
        return not (present and any(_same_scalar(value, v) for v in cond.value))
    if not present:
        return False
    if op is Op.EQ:
        return _same_value(value, cond.value)
    if op is Op.IN:
        return any(_same_scalar(value, v) for v in cond.value)
    if op is Op.CONTAINS:
        if isinstance(value, list):
            return any(_same_scalar(item, cond.value) for item in value)
        return isinstance(value, str) and isinstance(cond.value, str) and cond.value in value
    if op is Op.ICONTAINS:
        return isinstance(value, str) and cond.value.casefold() in value.casefold()
    if op is Op.LCONTAINS:
        return isinstance(value, str) and cond.value.lower() in value.lower()
    if isinstance(cond.value, str):  # a string range: string fields, code point order
        if not isinstance(value, str):
            return False
    elif not _is_number(value):
        return False
    if op is Op.GT:
        return bool(value > cond.value)
    if op is Op.GTE:
        return bool(value >= cond.value)
    if op is Op.LT:
        return bool(value < cond.value)
    return bool(value <= cond.value)


def matches(flt: Filter | None, metadata: Mapping[str, Any]) -> bool:
    """Evaluate a parsed filter against one record's metadata (the reference semantics)."""
    if flt is None:
        return True
    if isinstance(flt, Compare):
        return _compare_matches(flt, metadata)
    if isinstance(flt, And):
        return all(matches(child, metadata) for child in flt.children)
    if isinstance(flt, Or):
        return any(matches(child, metadata) for child in flt.children)
    return not matches(flt.child, metadata)


def filter_to_json(flt: Filter | None) -> Any:
    """A JSON-serializable form of a parsed filter (for cache keys and logs); equal ASTs give
    equal values."""
    if flt is None:
        return None
    if isinstance(flt, Compare):
        value = list(flt.value) if isinstance(flt.value, tuple) else flt.value
        # Type tags keep 1, 1.0 and True apart: the filter semantics do.
        return [flt.field, flt.op.value, value, type(flt.value).__name__]
    if isinstance(flt, And | Or):
        return [
            "$and" if isinstance(flt, And) else "$or",
            [filter_to_json(c) for c in flt.children],
        ]
    return ["$not", filter_to_json(flt.child)]
