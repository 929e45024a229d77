"""Reliability: a hypothesis fuzz of the public API. Whatever a caller passes (texts, ids,
metadata, filters, queries, tenants, options), a call works or raises a RagkitError, and a
rejected call leaves the store exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit import HybridStore, RagkitError, Record
from ragkit.backends import LocalShard, ShardedStore
from ragkit.embeddings import HashingEmbedder

EMBEDDER = HashingEmbedder(dim=8)

odd_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "   ", "\udc80", "a\x00b", "x" * 2000, "AND OR *:*", "ü∂ø"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**1024, -(2**53), 2**53]),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
    st.binary(max_size=4),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(odd_text, st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=8,
)
operators = st.sampled_from(["$eq", "$ne", "$gt", "$in", "$nin", "$exists", "$contains", "$bad"])
filters = st.one_of(
    st.none(),
    values,
    st.dictionaries(odd_text, values, max_size=2),
    st.dictionaries(odd_text, st.dictionaries(operators, values, max_size=2), max_size=2),
    st.fixed_dictionaries(
        {"$or": st.lists(st.dictionaries(odd_text, values, max_size=1), max_size=2)}
    ),
    st.fixed_dictionaries({"$not": values}),
)
tenants = st.one_of(st.none(), odd_text, st.integers(), st.just(["t"]))
ids = st.one_of(
    st.none(), odd_text, st.lists(st.one_of(odd_text, st.integers(), st.none()), max_size=3)
)
options = st.fixed_dictionaries(
    {},
    optional={
        "k": st.one_of(
            st.integers(-3, 20), st.floats(), st.booleans(), st.sampled_from([10**6, "5"])
        ),
        "mode": st.one_of(st.sampled_from(["hybrid", "dense", "lexical", "other"]), st.integers()),
        "fusion": st.one_of(st.sampled_from(["rrf", "dbsf", "relative_score", "x"]), st.none()),
        "alpha": st.one_of(st.floats(), st.integers(-2, 2), st.none()),
        "candidates": st.one_of(st.integers(-2, 50), st.none()),
        "mmr": st.one_of(st.floats(), st.none()),
        "filter": filters,
        "tenant": tenants,
    },
)

CALLS: dict[str, Any] = {
    "add_texts": st.tuples(
        st.one_of(st.lists(odd_text, max_size=3), odd_text, st.integers()),
        st.one_of(
            st.none(),
            st.lists(st.one_of(st.dictionaries(odd_text, values, max_size=3), values), max_size=3),
        ),
        st.one_of(st.none(), st.lists(odd_text, max_size=3), odd_text),
        tenants,
    ),
    "upsert": st.lists(
        st.builds(
            Record,
            id=odd_text,
            text=odd_text,
            metadata=st.dictionaries(odd_text, values, max_size=3),
            tenant=tenants,
        ),
        max_size=3,
    ),
    "search": st.tuples(st.one_of(odd_text, st.none(), st.integers()), options),
    "delete": st.tuples(ids, filters, tenants),
    "get": st.tuples(ids, tenants),
    "count": st.tuples(filters, tenants),
}


def run(store: HybridStore, call: str, args: Any) -> None:
    if call == "add_texts":
        store.add_texts(*args)
    elif call == "upsert":
        store.upsert(args)
    elif call == "search":
        store.search(args[0], **args[1])
    elif call == "delete":
        store.delete(args[0], filter=args[1], tenant=args[2])
    elif call == "get":
        store.get(args[0], tenant=args[1])
    else:
        store.count(args[0], tenant=args[1])


def snapshot(store: HybridStore) -> Any:
    out = {}
    for tenant in store.backend.tenants():
        ids_ = store.ids(tenant=tenant)
        out[tenant] = sorted(
            (r.id, r.text, repr(r.metadata)) for r in store.get(ids_, tenant=tenant)
        )
    return out


BACKENDS: dict[str, Callable[[], Any]] = {
    "local": LocalShard,
    "sharded": lambda: ShardedStore(2, partitions=3, replicas=2, heal_interval_s=None),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("call", list(CALLS))
def test_every_input_works_or_is_a_ragkit_error_and_a_rejection_changes_nothing(
    backend: str, call: str
) -> None:
    store = HybridStore(backend=BACKENDS[backend](), embedder=EMBEDDER)
    store.add_texts(["seed alpha", "seed beta"], metadatas=[{"n": 1}, {"n": 2}], ids=["s1", "s2"])
    store.add_texts(["tenant seed"], ids=["s1"], tenant="t")

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(CALLS[call])
    def fuzz(args: Any) -> None:
        before = snapshot(store)
        try:
            run(store, call, args)
        except RagkitError:
            assert snapshot(store) == before, "a rejected call changed the store"
        # any other exception fails the test (hypothesis reports the input)

    try:
        fuzz()
    finally:
        store.close()
