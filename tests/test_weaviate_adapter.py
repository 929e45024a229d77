"""WeaviateShard at the client boundary (no Weaviate server runs on these machines): the exact
collection calls, filters and parameters built for each ragkit request. With
RAGKIT_WEAVIATE_URL set, the Shard contract suite also runs against a real server."""

from __future__ import annotations

import fnmatch
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
from ragkit.backends.weaviate import NAMESPACE, WeaviateShard, record_uuid  # noqa: E402
from ragkit.embeddings import HashingEmbedder  # noqa: E402
from ragkit.filters import parse_filter  # noqa: E402
from ragkit.testing.shard_contract import ShardContract  # noqa: E402


def describe(flt: Any) -> Any:
    """A comparable structure for weaviate Filter objects (they define no equality)."""
    kind = type(flt).__name__
    if kind in ("_FilterAnd", "_FilterOr", "_FilterNot"):
        return (kind, [describe(f) for f in flt.filters])
    return repr(flt)


def _same(a: Any, b: Any) -> bool:
    """Weaviate's typed equality: a bool never equals a number, a string only a string."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def evaluate(flt: Any, obj: Any) -> bool:
    """What a real Weaviate does with a v4 filter on one object (for the fake below)."""
    kind = type(flt).__name__
    if kind == "_FilterAnd":
        return all(evaluate(f, obj) for f in flt.filters)
    if kind == "_FilterOr":
        return any(evaluate(f, obj) for f in flt.filters)
    if kind == "_FilterNot":
        return not evaluate(flt.filters, obj)
    op, value = flt.operator.value, flt.value
    actual = str(obj.uuid) if flt.target == "_id" else obj.properties.get(flt.target)
    if op == "IsNull":
        return (actual is None) is value
    if actual is None:
        return False
    items = actual if isinstance(actual, list) else [actual]
    compare = {
        "LessThan": lambda x: x < value,
        "LessThanEqual": lambda x: x <= value,
        "GreaterThan": lambda x: x > value,
        "GreaterThanEqual": lambda x: x >= value,
    }
    if op == "Equal":
        return any(_same(x, value) for x in items)
    if op == "NotEqual":
        return not any(_same(x, value) for x in items)
    if op in compare:
        return any(_number(x) and compare[op](x) for x in items)
    if op == "ContainsAny":
        return any(_same(x, v) for x in items for v in value)
    if op == "Like":
        return any(isinstance(x, str) and fnmatch.fnmatchcase(x, value) for x in items)
    raise AssertionError(f"the fake does not know {op}")


def fake_client(exists: bool = False) -> MagicMock:
    """A weaviate client whose collection stores objects and answers queries over them the
    way Weaviate would: filters evaluated, cosine distances computed, BM25-like scores over
    the text; only what passes the filter is ever returned, counted or deleted."""
    client = MagicMock(name="client")
    client.collections.exists.return_value = exists
    collection = client.collections.get.return_value
    by_tenant: dict[str | None, dict[str, Any]] = {}
    scope: dict[str, str | None] = {"tenant": None}

    def with_tenant(name: str) -> Any:
        scope["tenant"] = name
        return collection

    collection.with_tenant.side_effect = with_tenant
    collection.with_consistency_level.return_value = collection

    def objects() -> dict[str, Any]:
        return by_tenant.setdefault(scope["tenant"], {})

    def matching(filters: Any) -> list[Any]:
        found = [o for o in objects().values() if filters is None or evaluate(filters, o)]
        return sorted(found, key=lambda o: o.properties["ragkit_id"])

    def insert_many(items: list[Any]) -> Any:
        for item in items:
            objects()[str(item.uuid)] = SimpleNamespace(
                uuid=item.uuid,
                properties=dict(item.properties),
                vector={"default": list(item.vector)},
                metadata=SimpleNamespace(distance=None, score=None),
            )
        return SimpleNamespace(errors={})

    def delete_many(where: Any) -> Any:
        gone = [str(o.uuid) for o in matching(where)]
        for key in gone:
            del objects()[key]
        return SimpleNamespace(matches=len(gone))

    def fetch_objects(**kw: Any) -> Any:
        found = matching(kw.get("filters"))
        if kw.get("after") is not None:
            keys = [str(o.uuid) for o in found]
            found = found[keys.index(str(kw["after"])) + 1 :] if str(kw["after"]) in keys else []
        return SimpleNamespace(objects=found[: kw.get("limit")])

    def distance(obj: Any, query: list[float]) -> float:
        a, b = np.asarray(obj.vector["default"]), np.asarray(query)
        return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    def text_score(obj: Any, query: str) -> float:
        words = obj.properties["text"].lower().split()
        return float(sum(words.count(t) for t in query.lower().split()))

    def ranked(found: list[Any], scores: list[float], limit: int, field: str) -> Any:
        order = sorted(
            range(len(found)), key=lambda i: (-scores[i], found[i].properties["ragkit_id"])
        )
        out = []
        for i in order[:limit]:
            obj = found[i]
            meta = SimpleNamespace(distance=None, score=None)
            setattr(meta, field, scores[i] if field == "score" else -scores[i])
            out.append(SimpleNamespace(**{**vars(obj), "metadata": meta}))
        return SimpleNamespace(objects=out)

    def near_vector(**kw: Any) -> Any:
        found = matching(kw.get("filters"))
        return ranked(
            found, [-distance(o, kw["near_vector"]) for o in found], kw["limit"], "distance"
        )

    def bm25(**kw: Any) -> Any:
        found = [o for o in matching(kw.get("filters")) if text_score(o, kw["query"]) > 0]
        return ranked(found, [text_score(o, kw["query"]) for o in found], kw["limit"], "score")

    def hybrid(**kw: Any) -> Any:
        found = matching(kw.get("filters"))
        alpha = kw["alpha"]
        scores = [
            alpha * (1 - distance(o, kw["vector"]))
            + (1 - alpha) * min(1.0, text_score(o, kw["query"]))
            for o in found
        ]
        return ranked(found, scores, kw["limit"], "score")

    def over_all(**kw: Any) -> Any:
        found = matching(kw.get("filters"))
        if kw.get("group_by"):
            values = sorted({o.properties.get(kw["group_by"]) for o in found})
            return SimpleNamespace(
                groups=[SimpleNamespace(grouped_by=SimpleNamespace(value=v)) for v in values]
            )
        return SimpleNamespace(total_count=len(found))

    description = {"value": "{}"}
    collection.data.insert_many.side_effect = insert_many
    collection.data.delete_many.side_effect = delete_many
    collection.query.fetch_objects.side_effect = fetch_objects
    collection.query.near_vector.side_effect = near_vector
    collection.query.bm25.side_effect = bm25
    collection.query.hybrid.side_effect = hybrid
    collection.aggregate.over_all.side_effect = over_all
    collection.tenants.get.side_effect = lambda: [t for t in by_tenant if t is not None]
    collection.config.get.side_effect = lambda: SimpleNamespace(description=description["value"])
    collection.config.update.side_effect = lambda description=None: _describe(description)

    def _describe(value: str | None) -> None:
        if value is not None:
            description["value"] = value

    client.objects = by_tenant
    return client


@pytest.fixture
def client() -> MagicMock:
    return fake_client()


def test_a_new_collection_gets_ragkits_schema(client: MagicMock) -> None:
    WeaviateShard(client, "Docs", replication_factor=3, multi_tenancy=True)
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
    WeaviateShard(client, "Docs")
    client.collections.create.assert_not_called()


def test_upsert_sends_uuid5_ids_properties_and_vectors(client: MagicMock) -> None:
    store = WeaviateShard(client, "Docs")
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
    store = WeaviateShard(client, "Docs", multi_tenancy=True)
    from ragkit import Record

    store.upsert([Record("a", "text", {}, np.ones(2, np.float32), "acme")])
    store.upsert([Record("b", "text", {}, np.ones(2, np.float32), None)])
    tenants = [c.args[0] for c in client.collections.get.return_value.with_tenant.call_args_list]
    assert tenants == ["acme", "ragkit-default"]


def test_consistency_level_is_passed_on_every_request(client: MagicMock) -> None:
    store = WeaviateShard(client, "Docs", consistency_level="QUORUM")
    store.count()
    client.collections.get.return_value.with_consistency_level.assert_called_with(
        ConsistencyLevel.QUORUM
    )
    with pytest.raises(RagkitError, match="consistency_level"):
        WeaviateShard(client, "Docs", consistency_level="SOME")


@pytest.fixture
def hybrid_store(client: MagicMock) -> HybridStore:
    store = HybridStore(backend=WeaviateShard(client, "Docs"), embedder=HashingEmbedder(dim=16))
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
    assert sorted(result.ids) == ["b", "c"]  # n >= 2: "a" never comes back
    assert result.ids[0] == "c"  # the only one of them with "beta" in its text
    assert result[0].dense_rank is None  # Weaviate does not report per-leg ranks


def test_dbsf_is_a_clear_error_with_weaviate(hybrid_store: HybridStore) -> None:
    with pytest.raises(RagkitError, match="dbsf"):
        hybrid_store.search("beta", fusion="dbsf")


def test_dense_and_lexical_legs(hybrid_store: HybridStore, client: MagicMock) -> None:
    dense = hybrid_store.search("beta", k=2, mode="dense")
    kwargs = client.collections.get.return_value.query.near_vector.call_args.kwargs
    assert kwargs["limit"] == 2 and len(kwargs["near_vector"]) == 16
    query = hybrid_store.embedder.embed_query("beta")
    (best,) = hybrid_store.get([dense.ids[0]], include_vectors=True)
    assert best.vector is not None
    assert dense[0].score == pytest.approx(float(query @ best.vector), abs=1e-5)  # 1 - distance
    lexical = hybrid_store.search("beta", k=3, mode="lexical")
    kwargs = client.collections.get.return_value.query.bm25.call_args.kwargs
    assert kwargs["query"] == "beta" and kwargs["query_properties"] == ["text"]
    assert describe(kwargs["filters"]) == describe(W.by_property("ragkit_tenant").equal(""))
    assert sorted(lexical.ids) == ["a", "c"]
    assert hybrid_store.search("beta", k=3, mode="lexical", tenant="acme").ids == []


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

    store = WeaviateShard(client, "Docs")
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
    def make_shard(self) -> Callable[[], WeaviateShard]:
        from urllib.parse import urlparse

        url = urlparse(os.environ["RAGKIT_WEAVIATE_URL"])
        client = weaviate.connect_to_local(host=url.hostname or "127.0.0.1", port=url.port or 8080)
        return lambda: WeaviateShard(client, f"RagkitContract{uuid.uuid4().hex[:8]}")


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
    hybrid_store.add_texts(["acme's own a"], ids=["a"], metadatas=[{"n": 0}], tenant="acme")
    assert backend.tenants() == [None, "acme"]
    assert collection.aggregate.over_all.call_args.kwargs["group_by"] == "ragkit_tenant"
    assert hybrid_store.delete(filter={"n": {"$lt": 3}}) == 2  # a and b; c has n = 3
    where = collection.data.delete_many.call_args.kwargs["where"]
    assert describe(where) == describe(W.by_id().contains_any([record_uuid(i) for i in ("a", "b")]))
    assert sorted(backend.ids()) == ["c"]
    assert [r.text for r in hybrid_store.get(["a"], tenant="acme")] == ["acme's own a"]


def test_count_sends_the_translated_filter(client: MagicMock) -> None:
    store = WeaviateShard(client, "Docs")
    collection = client.collections.get.return_value
    collection.aggregate.over_all.side_effect = lambda **kw: SimpleNamespace(total_count=4)
    assert store.count(filter=parse_filter({"lang": "en"}), tenant="t") == 4
    kwargs = collection.aggregate.over_all.call_args.kwargs
    assert kwargs["total_count"] is True
    assert describe(kwargs["filters"]) == describe(
        W.all_of([W.by_property("ragkit_tenant").equal("t"), W.by_property("lang").equal("en")])
    )


def test_the_same_id_in_two_tenants_is_two_objects(
    hybrid_store: HybridStore, client: MagicMock
) -> None:
    hybrid_store.add_texts(["globex a"], ids=["a"], tenant="globex")
    uuids = set(client.objects[None])
    assert record_uuid("a") in uuids and record_uuid("a", "globex") in uuids
    assert record_uuid("a") != record_uuid("a", "globex")
    assert hybrid_store.get(["a"])[0].text == "alpha beta"
    assert hybrid_store.get(["a"], tenant="globex")[0].text == "globex a"
    assert hybrid_store.delete(["a"]) == 1  # the default tenant's a only
    assert hybrid_store.get(["a"], tenant="globex")[0].text == "globex a"


def test_a_contains_wildcard_is_refused_not_matched_against_everything(
    hybrid_store: HybridStore,
) -> None:
    from ragkit.errors import FilterError

    with pytest.raises(FilterError, match="wildcards"):
        hybrid_store.search("beta", filter={"tag": {"$contains": "*"}})
    assert hybrid_store.count({"n": {"$gte": 2}}) == 2


def test_the_old_name_still_works_and_warns() -> None:
    import ragkit.backends as backends
    from ragkit.backends.weaviate import WeaviateShard

    with pytest.warns(DeprecationWarning, match="WeaviateShard"):
        assert backends.WeaviateStore is WeaviateShard
