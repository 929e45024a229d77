"""Reliability, case 9: a tenant is a namespace for ids too. Random writes and deletes over
three tenants with overlapping ids, checked against a model after every step on every
backend: no call without a tenant (or with another one) reads, counts, changes or deletes a
tenant's records."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit import HybridStore
from ragkit.backends import LocalShard, Shard, ShardedStore
from ragkit.embeddings import HashingEmbedder

EMBEDDER = HashingEmbedder(dim=16)
TENANTS = [None, "acme", "globex"]
IDS = ["a1", "a2", "a3", "b1"]
_names = itertools.count()

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("upsert"), st.sampled_from(TENANTS), st.sampled_from(IDS), st.integers(0, 2)
        ),
        st.tuples(
            st.just("delete"),
            st.sampled_from(TENANTS),
            st.lists(st.sampled_from(IDS), min_size=1, max_size=3),
        ),
        st.tuples(st.just("delete_where"), st.sampled_from(TENANTS), st.integers(0, 2)),
    ),
    min_size=1,
    max_size=14,
)


def chroma_shard(tmp: Path) -> Shard:
    chromadb = pytest.importorskip("chromadb")
    from ragkit.backends import ChromaShard

    client = chromadb.EphemeralClient()
    return ChromaShard(client, f"iso{next(_names)}")


BACKENDS: dict[str, Callable[[Path], Shard]] = {
    "local": lambda tmp: LocalShard(),
    "sharded-by-id": lambda tmp: ShardedStore(3, partitions=4, replicas=2, heal_interval_s=None),
    "sharded-by-tenant": lambda tmp: ShardedStore(
        3, partitions=4, replicas=2, route_by="tenant", heal_interval_s=None
    ),
    "chroma": chroma_shard,
}


def check(store: HybridStore, model: dict[Any, dict[str, tuple[str, int]]]) -> None:
    for tenant in TENANTS:
        want = model[tenant]
        assert store.count(tenant=tenant) == len(want), tenant
        got = {r.id: (r.text, r.metadata["g"], r.tenant) for r in store.get(IDS, tenant=tenant)}
        assert got == {i: (t, g, tenant) for i, (t, g) in want.items()}, tenant
        assert sorted(store.ids(tenant=tenant)) == sorted(want), tenant
        hits = store.search("record", k=50, mode="lexical", tenant=tenant)
        assert sorted(hits.ids) == sorted(want) and all(h.record.tenant == tenant for h in hits)


@pytest.mark.parametrize("backend", list(BACKENDS))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=ops)
def test_every_call_stays_inside_its_tenant(
    backend: str, tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[Any, ...]]
) -> None:
    tmp = tmp_path_factory.mktemp("iso")
    store = HybridStore(backend=BACKENDS[backend](tmp), embedder=EMBEDDER)
    model: dict[Any, dict[str, tuple[str, int]]] = {t: {} for t in TENANTS}
    try:
        for step in steps:
            kind, tenant = step[0], step[1]
            if kind == "upsert":
                _, _, rid, g = step
                text = f"record {rid} of {tenant} version {g}"
                store.add_texts([text], metadatas=[{"g": g}], ids=[rid], tenant=tenant)
                model[tenant][rid] = (text, g)
            elif kind == "delete":
                deleted = store.delete(step[2], tenant=tenant)
                assert deleted == len(set(step[2]) & set(model[tenant]))
                for rid in step[2]:
                    model[tenant].pop(rid, None)
            else:
                deleted = store.delete(filter={"g": step[2]}, tenant=tenant)
                gone = [i for i, (_, g) in model[tenant].items() if g == step[2]]
                assert deleted == len(gone)
                for rid in gone:
                    del model[tenant][rid]
            check(store, model)
    finally:
        store.close()
