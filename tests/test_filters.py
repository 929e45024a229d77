"""Filter validation errors, and the columnar evaluator against the reference semantics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragkit.backends.local._columns import MetadataColumns
from ragkit.errors import FilterError, RagkitError
from ragkit.filters import And, Compare, Op, matches, parse_filter


def test_field_shorthand_means_eq_and_several_keys_mean_and() -> None:
    flt = parse_filter({"a": 1, "b": {"$gt": 2}})
    assert flt == And((Compare("a", Op.EQ, 1), Compare("b", Op.GT, 2)))


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ({"year": {"$between": [1, 2]}}, ["$between", "year"]),
        ({"$nor": [{"a": 1}]}, ["$nor"]),
        ({"year": {"$gt": None}}, ["year", "$gt", "None"]),
        ({"tags": {"$eq": [["a"]]}}, ["tags", "$eq"]),
        ({"title": {"$lcontains": 3}}, ["title", "$lcontains", "3"]),
        ({"year": {"$in": 2020}}, ["year", "$in", "2020"]),
        ({"tags": {"$contains": ["a"]}}, ["tags", "$contains"]),
        ({"ok": {"$exists": "yes"}}, ["ok", "$exists", "'yes'"]),
        ({"$or": []}, ["$or"]),
        ({"$and": {"a": 1}}, ["$and"]),
        ({"a": {}}, ["'a'"]),
        ({"a": float("nan")}, ["'a'", "nan"]),
        ({"a": [1, 2]}, ["'a'"]),
        ({}, ["empty"]),
    ],
)
def test_invalid_filters_name_the_offending_part(spec: Any, names: list[str]) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(spec)
    assert isinstance(info.value, RagkitError)
    for name in names:
        assert name in str(info.value)


def test_a_non_dict_filter_is_rejected() -> None:
    with pytest.raises(FilterError, match="must be a dict"):
        parse_filter(["a", 1])  # type: ignore[arg-type]


def test_ne_and_nin_match_missing_fields_but_eq_does_not() -> None:
    assert matches(parse_filter({"a": {"$ne": 1}}), {})
    assert matches(parse_filter({"a": {"$nin": [1]}}), {"a": None})
    assert not matches(parse_filter({"a": 1}), {})


def test_bools_never_equal_numbers() -> None:
    assert not matches(parse_filter({"a": 1}), {"a": True})
    assert not matches(parse_filter({"a": True}), {"a": 1})
    assert not matches(parse_filter({"a": {"$gt": 0}}), {"a": True})


def test_string_ranges_list_equality_and_lowercase_containment() -> None:
    dated = [{"d": "2024-01-31"}, {"d": "2023-12-01"}, {"d": 20240101}, {}]
    assert [matches(parse_filter({"d": {"$gte": "2024"}}), m) for m in dated] == [
        True, False, False, False,
    ]  # fmt: skip
    assert [matches(parse_filter({"d": {"$gte": ""}}), m) for m in dated] == [
        True, True, False, False,
    ]  # fmt: skip
    tags = [{"t": []}, {"t": ["a", "b"]}, {"t": ["b", "a"]}, {"t": "ab"}, {}]
    assert [matches(parse_filter({"t": {"$eq": []}}), m) for m in tags] == [
        True, False, False, False, False,
    ]  # fmt: skip
    assert [matches(parse_filter({"t": {"$eq": ["a", "b"]}}), m) for m in tags] == [
        False, True, False, False, False,
    ]  # fmt: skip
    assert [matches(parse_filter({"t": {"$ne": ["a", "b"]}}), m) for m in tags] == [
        True, False, True, True, True,
    ]  # fmt: skip
    assert matches(parse_filter({"n": {"$eq": [1, True]}}), {"n": [1.0, True]})
    assert not matches(parse_filter({"n": {"$eq": [1, True]}}), {"n": [True, 1]})
    # $lcontains lowercases (str.lower), $icontains folds case: they differ on "ß".
    assert matches(parse_filter({"s": {"$icontains": "straße"}}), {"s": "STRASSE"})
    assert not matches(parse_filter({"s": {"$lcontains": "straße"}}), {"s": "STRASSE"})
    assert matches(parse_filter({"s": {"$lcontains": "STRAßE"}}), {"s": "die Straße"})


def test_contains_works_on_lists_and_substrings() -> None:
    assert matches(parse_filter({"t": {"$contains": "x"}}), {"t": ["x", "y"]})
    assert matches(parse_filter({"t": {"$contains": "ell"}}), {"t": "hello"})
    assert not matches(parse_filter({"t": {"$contains": 1}}), {"t": "1"})


# ---- property: the vectorized evaluator agrees with the reference on random data ----------

scalars = st.one_of(
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 1.0, 2.5]),
    st.sampled_from(["a", "b", "ab", "ba", "", "A", "Ab", "ß", "SS", "ss"]),
)
values = st.one_of(st.none(), scalars, st.lists(scalars, max_size=3))
metadata = st.dictionaries(st.sampled_from(["f", "g", "h"]), values, max_size=3)
fields = st.sampled_from(["f", "g", "h"])
numbers = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 1.0, 2.5]))
compares = st.one_of(
    st.builds(lambda f, v: {f: v}, fields, scalars),
    st.builds(
        lambda f, op, v: {f: {op: v}}, fields, st.sampled_from(["$eq", "$ne", "$contains"]), scalars
    ),
    st.builds(
        lambda f, op, v: {f: {op: v}},
        fields,
        st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
        numbers,
    ),
    st.builds(
        lambda f, op, v: {f: {op: v}},
        fields,
        st.sampled_from(["$in", "$nin"]),
        st.lists(scalars, max_size=3),
    ),
    st.builds(lambda f, v: {f: {"$exists": v}}, fields, st.booleans()),
    st.builds(  # string ranges, in code point order
        lambda f, op, v: {f: {op: v}},
        fields,
        st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
        st.sampled_from(["", "a", "ab", "b", "A", "ß"]),
    ),
    st.builds(  # whole-list equality
        lambda f, op, v: {f: {op: v}},
        fields,
        st.sampled_from(["$eq", "$ne"]),
        st.lists(scalars, max_size=3),
    ),
    st.builds(
        lambda f, op, v: {f: {op: v}},
        fields,
        st.sampled_from(["$icontains", "$lcontains"]),
        st.sampled_from(["a", "A", "ß", "ss", "SS", "b"]),
    ),
)
filters = st.recursive(
    compares,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"$not": x}, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(metadata, min_size=1, max_size=12), filters)
def test_columnar_filters_agree_with_reference(
    rows: list[dict[str, Any]], spec: dict[str, Any]
) -> None:
    flt = parse_filter(spec)
    columns = MetadataColumns()
    columns.add(0, rows)
    got = columns.mask(flt, len(rows))
    expected = np.array([matches(flt, row) for row in rows])
    assert got.tolist() == expected.tolist()
