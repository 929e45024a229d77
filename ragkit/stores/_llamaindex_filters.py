"""LlamaIndex ``MetadataFilters`` -> ragkit's filter dict language."""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from ragkit.errors import FilterError

_SIMPLE = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.CONTAINS: "$contains",
    FilterOperator.TEXT_MATCH: "$contains",  # substring match on a string field
    FilterOperator.TEXT_MATCH_INSENSITIVE: "$icontains",
}


def _as_list(value: Any, flt: MetadataFilter) -> list[Any]:
    if not isinstance(value, list | tuple) or not value:
        raise FilterError(
            f"LlamaIndex filter {flt.key!r} {flt.operator.value}: expects a non-empty list, "
            f"got {value!r}"
        )
    return list(value)


def _translate_one(flt: MetadataFilter) -> dict[str, Any]:
    op = flt.operator
    if op in _SIMPLE:
        value: Any = flt.value
        if op in (FilterOperator.IN, FilterOperator.NIN):
            # One value is a list of one, as LlamaIndex's own stores read it (not a string's
            # characters).
            value = list(value) if isinstance(value, list | tuple) else [value]
        return {flt.key: {_SIMPLE[op]: value}}
    if op is FilterOperator.ANY:
        return {"$or": [{flt.key: {"$contains": v}} for v in _as_list(flt.value, flt)]}
    if op is FilterOperator.ALL:
        return {"$and": [{flt.key: {"$contains": v}} for v in _as_list(flt.value, flt)]}
    if op is FilterOperator.IS_EMPTY:
        # ragkit treats a missing field and a null value alike; an empty list is a value.
        return {flt.key: {"$exists": False}}
    raise FilterError(
        f"LlamaIndex filter operator {op.value!r} on {flt.key!r} cannot be expressed in "
        "ragkit filters"
    )


def translate_filters(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """Translate every FilterOperator and FilterCondition, or raise ``FilterError``."""
    if filters is None or not filters.filters:
        return None
    parts = [
        translate_filters(f) if isinstance(f, MetadataFilters) else _translate_one(f)
        for f in filters.filters
    ]
    clauses = [p for p in parts if p is not None]
    condition = filters.condition or FilterCondition.AND
    if condition is FilterCondition.OR:
        return {"$or": clauses}
    combined = clauses[0] if len(clauses) == 1 else {"$and": clauses}
    if condition is FilterCondition.NOT:
        return {"$not": combined}
    return combined
