"""WeaviateStore at the client boundary (no Weaviate server runs on these machines): the exact
collection calls, filters and parameters built for each ragkit request. With
RAGKIT_WEAVIATE_URL set, the Shard contract suite also runs against a real server."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import pytest

weaviate = pytest.importorskip("weaviate", reason="the weaviate extra is part of make test")
from weaviate.classes.config import ConsistencyLevel  # noqa: E402
from weaviate.classes.query import Filter as W  # noqa: E402
from weaviate.classes.query import HybridFusion  # noqa: E402

from ragkit import HybridStore, RagkitError  # noqa: E402
from ragkit.backends._weaviate_filters import to_weaviate_filter  # noqa: E402
from ragkit.backends.contract import ShardContract  # noqa: E402
from ragkit.backends.weaviate import NAMESPACE, WeaviateStore, record_uuid  # noqa: E402
from ragkit.embeddings import HashingEmbedder  # noqa: E402
from ragkit.filters import parse_filter  # noqa: E402


def describe(flt: Any) -> Any:
    """A comparable structure for weaviate Filter objects (they define no equality)."""
    kind = type(flt).__name__
    if kind in ("_FilterAnd", "_FilterOr", "_FilterNot"):
        return (kind, [describe(f) for f in flt.filters])
    return repr(flt)


def fake_client(exists: bool = False) -> MagicMock:
    """A weaviate client whose collection remembers inserted objects, so reads return them."""
    client = MagicMock(name="client")
    client.collections.exists.return_value = exists
    collection = client.collections.get.return_value
    for scoped in ("with_tenant", "with_consistency_level"):
        getattr(collection, scoped).return_value = collection
    objects: dict[str, Any] = {}
    description = {"value": "{}"}

    def insert_many(items: list[Any]) -> Any:
        for item in items:
            objects[str(item.uuid)] = SimpleNamespace(
                uuid=item.uuid,
                properties=item.properties,
                vector={"default": item.vector},
                metadata=SimpleNamespace(distance=0.25, score=0.75),
            )
        return SimpleNamespace(errors={})

    def fetch_objects(**kwargs: Any) -> Any:
        flt = kwargs["filters"]
        by_id = type(flt).__name__ == "_FilterValue" and isinstance(flt.value, list)
        wanted = flt.value if by_id else None
        found = [o for key, o in objects.items() if wanted is None or key in wanted]
        return SimpleNamespace(objects=found if kwargs.get("after") is None else [])

    collection.data.insert_many.side_effect = insert_many
    collection.query.fetch_objects.side_effect = fetch_objects
    for method in ("hybrid", "near_vector", "bm25"):
        getattr(collection.query, method).side_effect = lambda **kw: SimpleNamespace(
            objects=list(objects.values())[: kw["limit"]]
        )
    collection.config.get.side_effect = lambda: SimpleNamespace(description=description["value"])
    collection.config.update.side_effect = lambda description=None: description and None
    client.description = description
    client.objects = objects
    return client


@pytest.fixture
def client() -> MagicMock:
    return fake_client()


def test_a_new_collection_gets_ragkits_schema(client: MagicMock) -> None:
    WeaviateStore(client, "Docs", replication_factor=3, multi_tenancy=True)
    (name,), kwargs = client.collections.create.call_args
    assert name == "Docs"
    assert [p.name for p in kwargs["properties"]] == [
        "ragkit_id",
        "text",
        "ragkit_meta",
        "ragkit_tenant",
    ]
    assert kwargs["replication_config"].factor == 3
    assert kwargs["multi_tenancy_config"].enabled is True
    assert kwargs["inverted_index_config"].indexNullState is True


def test_an_existing_collection_is_not_recreated() -> None:
    client = fake_client(exists=True)
    WeaviateStore(client, "Docs")
    client.collections.create.assert_not_called()


def test_upsert_sends_uuid5_ids_properties_and_vectors(client: MagicMock) -> None:
    store = WeaviateStore(client, "Docs")
    from ragkit import Record

    vector = np.array([0.6, 0.8], dtype=np.float32)
    store.upsert(
        [
            Record(
                "doc-1",
                "hello world",
                {"year": 2020, "tags": ["a"], "deep": {"x": 1}},
                vector,
                None,
            )
        ]
    )
    (objects,), _ = client.collections.get.return_value.data.insert_many.call_args
    (obj,) = objects
    assert str(obj.uuid) == str(uuid.uuid5(NAMESPACE, "doc-1")) == record_uuid("doc-1")
    assert obj.vector == pytest.approx([0.6, 0.8])
    assert obj.properties["year"] == 2020 and obj.properties["tags"] == ["a"]
    assert "deep" not in obj.properties  # nested values live only in ragkit_meta
    assert json.loads(obj.properties["ragkit_meta"]) == {
        "year": 2020,
        "tags": ["a"],
        "deep": {"x": 1},
    }
    assert obj.properties["ragkit_tenant"] == ""
    assert store.dim == 2


def test_multi_tenancy_maps_ragkit_tenants(client: MagicMock) -> None:
    store = WeaviateStore(client, "Docs", multi_tenancy=True)
    from ragkit import Record

    store.upsert([Record("a", "text", {}, np.ones(2, np.float32), "acme")])
    store.upsert([Record("b", "text", {}, np.ones(2, np.float32), None)])
    tenants = [c.args[0] for c in client.collections.get.return_value.with_tenant.call_args_list]
    assert tenants == ["acme", "ragkit-default"]


def test_consistency_level_is_passed_on_every_request(client: MagicMock) -> None:
    store = WeaviateStore(client, "Docs", consistency_level="QUORUM")
    store.count()
    client.collections.get.return_value.with_consistency_level.assert_called_with(
        ConsistencyLevel.QUORUM
    )
    with pytest.raises(RagkitError, match="consistency_level"):
        WeaviateStore(client, "Docs", consistency_level="SOME")


@pytest.fixture
def hybrid_store(client: MagicMock) -> HybridStore:
    store = HybridStore(backend=WeaviateStore(client, "Docs"), embedder=HashingEmbedder(dim=16))
    store.add_texts(
        ["alpha beta", "gamma delta", "beta gamma"],
        ids=["a", "b", "c"],
        metadatas=[{"n": 1}, {"n": 2}, {"n": 3}],
    )
    return store


@pytest.mark.parametrize(
    ("fusion", "native"),
    [("rrf", HybridFusion.RANKED), ("relative_score", HybridFusion.RELATIVE_SCORE)],
)
def test_hybrid_search_is_one_native_query(
    hybrid_store: HybridStore, client: MagicMock, fusion: str, native: Any
) -> None:
    result = hybrid_store.search("beta", k=2, alpha=0.3, fusion=fusion, filter={"n": {"$gte": 2}})
    kwargs = client.collections.get.return_value.query.hybrid.call_args.kwargs
    assert kwargs["query"] == "beta" and kwargs["alpha"] == 0.3 and kwargs["limit"] == 2
    assert kwargs["fusion_type"] is native
    assert kwargs["vector"] == pytest.approx(hybrid_store.embedder.embed_query("beta").tolist())
    expected = W.all_of(
        [W.by_property("ragkit_tenant").equal(""), W.by_property("n").greater_or_equal(2)]
    )
    assert describe(kwargs["filters"]) == describe(expected)
    assert [h.score for h in result] == [0.75, 0.75]
    assert result[0].dense_rank is None  # Weaviate does not report per-leg ranks


def test_dbsf_is_a_clear_error_with_weaviate(hybrid_store: HybridStore) -> None:
    with pytest.raises(RagkitError, match="dbsf"):
        hybrid_store.search("beta", fusion="dbsf")


def test_dense_and_lexical_legs(hybrid_store: HybridStore, client: MagicMock) -> None:
    dense = hybrid_store.search("beta", k=2, mode="dense")
    kwargs = client.collections.get.return_value.query.near_vector.call_args.kwargs
    assert kwargs["limit"] == 2 and len(kwargs["near_vector"]) == 16
    assert dense[0].score == pytest.approx(0.75)  # 1 - cosine distance 0.25
    lexical = hybrid_store.search("beta", k=3, mode="lexical", tenant="acme")
    kwargs = client.collections.get.return_value.query.bm25.call_args.kwargs
    assert kwargs["query"] == "beta" and kwargs["query_properties"] == ["text"]
    assert describe(kwargs["filters"]) == describe(W.by_property("ragkit_tenant").equal("acme"))
    assert lexical[0].lexical_score == pytest.approx(0.75)


def test_delete_by_ids_uses_uuid5(hybrid_store: HybridStore, client: MagicMock) -> None:
    assert hybrid_store.delete(ids=["a", "missing"]) == 1
    where = client.collections.get.return_value.data.delete_many.call_args.kwargs["where"]
    assert describe(where) == describe(W.by_id().contains_any([record_uuid("a")]))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"k": "v"}, W.by_property("k").equal("v")),
        ({"k": {"$ne": 1}}, W.not_(W.by_property("k").equal(1))),
        ({"k": {"$gt": 1}}, W.by_property("k").greater_than(1)),
        ({"k": {"$gte": 1}}, W.by_property("k").greater_or_equal(1)),
        ({"k": {"$lt": 1}}, W.by_property("k").less_than(1)),
        ({"k": {"$lte": 1}}, W.by_property("k").less_or_equal(1)),
        ({"k": {"$in": ["a", "b"]}}, W.by_property("k").contains_any(["a", "b"])),
        ({"k": {"$nin": [1]}}, W.not_(W.by_property("k").contains_any([1]))),
        ({"k": {"$exists": True}}, W.by_property("k").is_none(False)),
        ({"k": {"$contains": 3}}, W.by_property("k").contains_any([3])),
        (
            {"k": {"$contains": "ab"}},
            W.any_of([W.by_property("k").contains_any(["ab"]), W.by_property("k").like("*ab*")]),
        ),
        (
            {"$and": [{"a": 1}, {"b": 2}]},
            W.all_of([W.by_property("a").equal(1), W.by_property("b").equal(2)]),
        ),
        (
            {"$or": [{"a": 1}, {"b": 2}]},
            W.any_of([W.by_property("a").equal(1), W.by_property("b").equal(2)]),
        ),
        ({"$not": {"a": True}}, W.not_(W.by_property("a").equal(True))),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else "",
)
def test_every_filter_operator_translates(spec: dict[str, Any], expected: Any) -> None:
    flt = parse_filter(spec)
    assert flt is not None
    assert describe(to_weaviate_filter(flt)) == describe(expected)


def test_transient_errors_are_retried_and_others_are_not(client: MagicMock) -> None:
    from weaviate.exceptions import WeaviateConnectionError

    store = WeaviateStore(client, "Docs")
    aggregate = client.collections.get.return_value.aggregate.over_all
    aggregate.side_effect = [WeaviateConnectionError("down"), SimpleNamespace(total_count=7)]
    assert store.count() == 7 and aggregate.call_count == 2
    aggregate.side_effect = [ValueError("bad request"), SimpleNamespace(total_count=7)]
    with pytest.raises(ValueError):
        store.count()


@pytest.mark.skipif(
    "RAGKIT_WEAVIATE_URL" not in os.environ,
    reason="integration: set RAGKIT_WEAVIATE_URL to a Weaviate server",
)
class TestWeaviateContract(ShardContract):
    @pytest.fixture
    def make_shard(self) -> Callable[[], WeaviateStore]:
        from urllib.parse import urlparse

        url = urlparse(os.environ["RAGKIT_WEAVIATE_URL"])
        client = weaviate.connect_to_local(host=url.hostname or "127.0.0.1", port=url.port or 8080)
        return lambda: WeaviateStore(client, f"RagkitContract{uuid.uuid4().hex[:8]}")


def test_delete_by_filter_ids_tenants_and_get_with_vectors(
    hybrid_store: HybridStore, client: MagicMock
) -> None:
    backend = hybrid_store.backend
    collection = client.collections.get.return_value
    assert sorted(backend.ids()) == ["a", "b", "c"]
    kwargs = collection.query.fetch_objects.call_args.kwargs
    assert kwargs["return_properties"] == ["ragkit_id"] and kwargs["limit"] == 1000
    (record,) = hybrid_store.get(["b"], include_vectors=True)
    assert record.text == "gamma delta" and record.metadata == {"n": 2}
    assert record.vector is not None and record.vector.shape == (16,)
    assert collection.query.fetch_objects.call_args.kwargs["include_vector"] is True
    collection.aggregate.over_all.side_effect = lambda **kw: SimpleNamespace(
        groups=[
            SimpleNamespace(grouped_by=SimpleNamespace(value="")),
            SimpleNamespace(grouped_by=SimpleNamespace(value="acme")),
        ]
    )
    assert backend.tenants() == [None, "acme"]
    assert collection.aggregate.over_all.call_args.kwargs["group_by"] == "ragkit_tenant"
    assert hybrid_store.delete(filter={"n": {"$lt": 3}}) == 3  # the fake ignores filters
    where = collection.data.delete_many.call_args.kwargs["where"]
    assert describe(where) == describe(
        W.by_id().contains_any([record_uuid(i) for i in ("a", "b", "c")])
    )


def test_count_sends_the_translated_filter(client: MagicMock) -> None:
    store = WeaviateStore(client, "Docs")
    collection = client.collections.get.return_value
    collection.aggregate.over_all.side_effect = lambda **kw: SimpleNamespace(total_count=4)
    assert store.count(filter=parse_filter({"lang": "en"}), tenant="t") == 4
    kwargs = collection.aggregate.over_all.call_args.kwargs
    assert kwargs["total_count"] is True
    assert describe(kwargs["filters"]) == describe(
        W.all_of([W.by_property("ragkit_tenant").equal("t"), W.by_property("lang").equal("en")])
    )
