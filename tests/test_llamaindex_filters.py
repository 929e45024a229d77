"""LlamaIndex filters keep LlamaIndex's semantics on ragkit (reliability round two, item 2).

The reference is LlamaIndex itself: its ``SimpleVectorStore``, which evaluates filters in Python
(``build_metadata_filter_fn``). A property test builds random metadata (missing, None, "", [],
bools, numbers, strings, lists) and random filter trees over every ``FilterOperator`` and
``FilterCondition``, and compares the nodes ``RagkitVectorStore`` returns, by ``get_nodes``
and by a query, with the nodes ``SimpleVectorStore`` returns.

Two places where LlamaIndex has no answer are defined by ragkit, and asserted as such:
a filter that makes Python raise ``TypeError`` on a record (a string compared with a number)
fails the whole query in ``SimpleVectorStore``, and ragkit does not match that record; nested
``MetadataFilters`` (which LlamaIndex's evaluator refuses) combine at every level the way the
top level does. Before, ``IS_EMPTY`` missed ``""`` and ``[]`` and ``NOT`` meant "not all"."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn

from ragkit.embeddings import HashingEmbedder
from ragkit.errors import FilterError
from ragkit.stores.llamaindex import RagkitVectorStore

KEYS = ["a", "b"]
STRINGS = ["", "a", "ab", "b", "A", "ß", "SS", "ss", "abc"]

md_scalars = st.one_of(
    st.booleans(),
    st.sampled_from([0, 1, 2, -1]),
    st.sampled_from([0.0, 0.5, 1.0]),
    st.sampled_from(STRINGS),
)
md_values = st.one_of(st.none(), md_scalars, st.lists(md_scalars, max_size=3))
metadatas = st.lists(
    st.dictionaries(st.sampled_from(KEYS), md_values, max_size=2), min_size=1, max_size=10
)
# What MetadataFilter accepts: int, float, str, a list of one of them, or None.
filter_values = st.one_of(
    st.none(),
    st.sampled_from([0, 1, 2, -1]),
    st.sampled_from([0.0, 0.5, 1.0]),
    st.sampled_from(STRINGS),
    st.lists(st.sampled_from(STRINGS), max_size=3),
    st.lists(st.sampled_from([0, 1, 2]), max_size=3),
    st.lists(st.sampled_from([0.0, 0.5, 1.0]), max_size=3),
)
leaves = st.builds(
    lambda key, op, value: MetadataFilter(key=key, operator=op, value=value),
    st.sampled_from(KEYS),
    st.sampled_from(list(FilterOperator)),
    filter_values,
)
conditions = st.sampled_from([FilterCondition.AND, FilterCondition.OR, FilterCondition.NOT])
trees = st.recursive(
    st.builds(
        lambda fs, c: MetadataFilters(filters=fs, condition=c),
        st.lists(leaves, max_size=3),
        conditions,
    ),
    lambda inner: st.builds(
        lambda fs, c: MetadataFilters(filters=fs, condition=c),
        st.lists(st.one_of(leaves, inner), max_size=3),
        conditions,
    ),
    max_leaves=4,
)

DIM = 8


def _nodes(metadata: list[dict[str, Any]]) -> list[TextNode]:
    rng = np.random.default_rng(len(metadata))
    return [
        TextNode(
            id_=f"n{i}",
            text=f"node {i}",
            metadata=dict(md),
            embedding=[float(x) for x in rng.normal(size=DIM)],
        )
        for i, md in enumerate(metadata)
    ]


def _leaf(flt: MetadataFilter, metadata: dict[str, Any]) -> bool:
    """One filter, by LlamaIndex's own evaluator; a TypeError there: no match."""
    fn = build_metadata_filter_fn(lambda _: metadata, MetadataFilters(filters=[flt]))
    try:
        return bool(fn("node"))
    except TypeError:
        return False


def _reference(filters: MetadataFilters, metadata: dict[str, Any]) -> bool:
    """LlamaIndex's semantics: each filter by its evaluator, the conditions as it combines
    them (``not``: none matches; an empty group matches everything), at every level."""
    if not filters.filters:
        return True
    results = [
        _reference(f, metadata) if isinstance(f, MetadataFilters) else _leaf(f, metadata)
        for f in filters.filters
    ]
    condition = filters.condition or FilterCondition.AND
    if condition is FilterCondition.OR:
        return any(results)
    if condition is FilterCondition.NOT:
        return not any(results)
    return all(results)


def _unsupported(filters: MetadataFilters) -> bool:
    """Ordering lists against a list: ragkit refuses it (a FilterError)."""
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            if _unsupported(f):
                return True
        elif f.operator in (
            FilterOperator.GT, FilterOperator.GTE, FilterOperator.LT, FilterOperator.LTE,
        ) and isinstance(f.value, list):  # fmt: skip
            return True
    return False


def _flat(filters: MetadataFilters) -> bool:
    return not any(isinstance(f, MetadataFilters) for f in filters.filters)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(metadatas, trees)
def test_ragkit_answers_llamaindex_filters_as_simple_vector_store_does(
    metadata: list[dict[str, Any]], filters: MetadataFilters
) -> None:
    nodes = _nodes(metadata)
    ragkit = RagkitVectorStore(embed_model=HashingEmbedder(dim=DIM))
    ragkit.add(nodes)
    if _unsupported(filters):
        with pytest.raises(FilterError, match="ordering lists"):
            ragkit.get_nodes(filters=filters)
        return
    expected = {f"n{i}" for i, md in enumerate(metadata) if _reference(filters, md)}

    if _flat(filters):  # LlamaIndex's own store, where it answers at all
        simple = SimpleVectorStore()
        simple.add(nodes)
        query = VectorStoreQuery(
            query_embedding=nodes[0].embedding, similarity_top_k=len(nodes), filters=filters
        )
        try:
            answered = simple.query(query)
        except TypeError:  # LlamaIndex fails the query; ragkit skips the records
            pass
        else:
            assert set(answered.ids or []) == expected

    assert {n.node_id for n in ragkit.get_nodes(filters=filters)} == expected
    query = VectorStoreQuery(
        query_embedding=nodes[0].embedding, similarity_top_k=len(nodes), filters=filters
    )
    assert set(ragkit.query(query).ids or []) == expected


@pytest.mark.parametrize(
    ("value", "matched"),
    [(None, True), ("", True), ([], True), ("x", False), ([""], False), (0, False), (False, False)],
)
def test_is_empty_matches_missing_none_empty_strings_and_empty_lists(
    value: Any, matched: bool
) -> None:
    store = RagkitVectorStore(embed_model=HashingEmbedder(dim=DIM))
    store.add(_nodes([{"a": value}, {}]))
    flt = MetadataFilters(
        filters=[MetadataFilter(key="a", operator=FilterOperator.IS_EMPTY, value=None)]
    )
    got = {n.node_id for n in store.get_nodes(filters=flt)}
    assert got == ({"n0", "n1"} if matched else {"n1"})


def test_not_over_several_filters_means_none_of_them() -> None:
    store = RagkitVectorStore(embed_model=HashingEmbedder(dim=DIM))
    store.add(_nodes([{"a": 1, "b": 1}, {"a": 1, "b": 2}, {"a": 2, "b": 2}]))
    flt = MetadataFilters(
        filters=[MetadataFilter(key="a", value=1), MetadataFilter(key="b", value=1)],
        condition=FilterCondition.NOT,
    )
    assert {n.node_id for n in store.get_nodes(filters=flt)} == {"n2"}  # "not all" gave n1 too
