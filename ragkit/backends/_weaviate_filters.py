"""ragkit filter AST -> weaviate-client v4 ``Filter`` objects."""

from __future__ import annotations

from typing import Any

from ragkit.errors import FilterError
from ragkit.filters import RANGE_OPS, And, Filter, Not, Op, Or


def to_weaviate_filter(flt: Filter) -> Any:
    """Translate every ragkit operator; the semantics notes are in ``WeaviateShard``."""
    from weaviate.classes.query import Filter as W

    if isinstance(flt, And):
        return W.all_of([to_weaviate_filter(child) for child in flt.children])
    if isinstance(flt, Or):
        return W.any_of([to_weaviate_filter(child) for child in flt.children])
    if isinstance(flt, Not):
        return W.not_(to_weaviate_filter(flt.child))
    prop = W.by_property(flt.field)
    value = flt.value
    if isinstance(value, tuple) and flt.op in (Op.EQ, Op.NE):
        raise FilterError(
            f"filter on {flt.field!r}: {flt.op.value} with a list (whole-list equality) is not "
            "available on Weaviate; use $contains for each element"
        )
    if isinstance(value, str) and flt.op in RANGE_OPS:
        raise FilterError(
            f"filter on {flt.field!r}: {flt.op.value} with a string (code point order) is not "
            "available on Weaviate, whose text comparisons follow its tokenization"
        )
    match flt.op:
        case Op.EQ:
            return prop.equal(value)
        case Op.NE:
            return W.not_(prop.equal(value))  # also matches a missing field, as in ragkit
        case Op.GT:
            return prop.greater_than(value)
        case Op.GTE:
            return prop.greater_or_equal(value)
        case Op.LT:
            return prop.less_than(value)
        case Op.LTE:
            return prop.less_or_equal(value)
        case Op.IN:
            return prop.contains_any(list(value))
        case Op.NIN:
            return W.not_(prop.contains_any(list(value)))
        case Op.EXISTS:
            return prop.is_none(not value)  # needs index_null_state, set on creation
        case Op.CONTAINS:
            if isinstance(value, str):  # an element of a text[] field, or a substring
                if "*" in value or "?" in value:
                    # Weaviate's like has no escape: these would be wildcards, not text.
                    raise FilterError(
                        f"filter on {flt.field!r}: $contains {value!r} holds '*' or '?', which "
                        "Weaviate's like operator reads as wildcards; it cannot be matched "
                        "exactly there (use $eq, or drop the wildcard characters)"
                    )
                return W.any_of([prop.contains_any([value]), prop.like(f"*{value}*")])
            return prop.contains_any([value])
        case Op.ICONTAINS | Op.LCONTAINS:
            # like's case handling depends on each property's tokenization in Weaviate.
            raise FilterError(
                f"filter on {flt.field!r}: {flt.op.value} is not available on Weaviate (its "
                "like operator follows each property's tokenization); use $contains"
            )
    raise AssertionError(f"unhandled operator {flt.op}")  # pragma: no cover
