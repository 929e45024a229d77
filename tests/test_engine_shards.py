"""MilvusShard and QdrantShard beyond the Shard contract (issue 29): every operator of the
filter language (the engine's own expression, or ragkit's evaluation where the engine cannot
say it exactly), calibrated hybrid scores equal to a LocalShard's, native fusion, the
framework adapters unchanged, BM25 per tenant (Qdrant), clear errors."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is part of make test")
pytest.importorskip("qdrant_client", reason="the qdrant extra is part of make test")

from ragkit import HybridStore
from ragkit.backends import MilvusShard, QdrantShard, Shard
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import (
    EmbedderMismatchError,
    InvalidInputError,
    ShardUnavailableError,
    StoreError,
)
from ragkit.filters import matches, parse_filter
from ragkit.schema import Record
from ragkit.testing.shard_contract import make_records, query_vector

_names = itertools.count()


def _scores(result: Any) -> list[float]:
    return [hit.score for hit in result.hits]


EMBEDDER = HashingEmbedder(dim=32)


@pytest.fixture(scope="module")
def milvus_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("milvus") / "kb.db")


# Embedded engines always; real servers too when their URL is set (not in CI: none runs here).
ENGINES = ["milvus", "qdrant"]
ENGINES += ["milvus-server"] if os.environ.get("RAGKIT_MILVUS_URI") else []
ENGINES += ["qdrant-server"] if os.environ.get("RAGKIT_QDRANT_URL") else []


@pytest.fixture(params=ENGINES)
def make_engine(request: pytest.FixtureRequest, milvus_file: str) -> Callable[[], Shard]:
    name = f"ragkit_test_{os.getpid()}_{next(_names)}"
    if request.param == "milvus":
        return lambda: MilvusShard(milvus_file, collection=f"e{next(_names)}")
    if request.param == "milvus-server":
        uri, token = os.environ["RAGKIT_MILVUS_URI"], os.environ.get("RAGKIT_MILVUS_TOKEN")
        return lambda: MilvusShard(uri, token=token, collection=name)
    if request.param == "qdrant-server":
        url, key = os.environ["RAGKIT_QDRANT_URL"], os.environ.get("RAGKIT_QDRANT_API_KEY")
        return lambda: QdrantShard(url=url, api_key=key, collection=name)
    return lambda: QdrantShard(":memory:", collection=f"e{next(_names)}")


@pytest.fixture
def engine(make_engine: Callable[[], Shard]) -> Iterator[Shard]:
    shard = make_engine()
    yield shard
    shard.close()


# ---- every operator ----------------------------------------------------------------------

TRICKY: list[dict[str, Any]] = [
    {"s": "fox", "n": 1, "b": True, "l": ["x", 1, True], "a b": "spaced", "ü": "unicode"},
    {"s": "Fox", "n": 1.0, "b": False, "l": ["y"], "d": "2024-03-01", "e": "100%_sure"},
    {"s": "foxes", "n": True, "l": [], "d": "2023-12-31", "e": "STRASSE"},
    {"s": 1, "n": "1", "b": 1, "l": "x", "d": "2025-01-01", "e": None},
    {"n": -2.5, "l": ["x", "y"], "s": "a\"quote'\\back"},
    {},
]

OPERATOR_FILTERS: list[dict[str, Any]] = [
    {"s": "fox"},
    {"s": {"$ne": "fox"}},
    {"n": 1},
    {"n": {"$ne": 1}},
    {"b": True},
    {"b": 1},
    {"s": {"$in": ["fox", 1, "foxes"]}},
    {"s": {"$nin": ["fox", "Fox"]}},
    {"n": {"$gt": 0}},
    {"n": {"$gte": -2.5, "$lt": 1}},
    {"n": {"$lte": 1}},
    {"d": {"$gte": "2024-01-01"}},
    {"d": {"$lt": "2024"}},
    {"l": {"$contains": "x"}},
    {"l": {"$contains": 1}},
    {"l": {"$contains": True}},
    {"s": {"$contains": "ox"}},
    {"e": {"$contains": "%_"}},
    {"s": {"$icontains": "FOX"}},
    {"e": {"$icontains": "straße"}},
    {"s": {"$lcontains": "fox"}},
    {"l": {"$eq": ["x", "y"]}},
    {"l": {"$ne": []}},
    {"e": {"$exists": True}},
    {"e": {"$exists": False}},
    {"a b": "spaced"},
    {"ü": {"$exists": True}},
    {"s": "a\"quote'\\back"},
    {"$or": [{"s": "fox"}, {"n": {"$lt": 0}}]},
    {"$not": {"$and": [{"l": {"$contains": "x"}}, {"n": {"$gte": 1}}]}},
    {"$not": {"s": {"$icontains": "fox"}}},
]


@pytest.mark.parametrize("spec", OPERATOR_FILTERS, ids=[str(f) for f in OPERATOR_FILTERS])
def test_every_operator_matches_the_reference(engine: Shard, spec: dict[str, Any]) -> None:
    texts = [f"record number {i} about foxes" for i in range(len(TRICKY))]
    vectors = EMBEDDER.embed_documents(texts)
    records = [Record(f"r{i}", texts[i], m, vectors[i]) for i, m in enumerate(TRICKY)]
    engine.upsert(records)
    engine.upsert([Record("other", "foxes elsewhere", {"s": "fox"}, vectors[0], "acme")])
    flt = parse_filter(spec)
    expected = sorted(r.id for r in records if matches(flt, r.metadata))
    assert sorted(engine.ids(filter=flt)) == expected
    assert engine.count(filter=flt) == len(expected)
    store = HybridStore(backend=engine, embedder=EMBEDDER)
    assert sorted(store.search("foxes", k=20, filter=spec).ids) == expected


# ---- the same scores as a LocalShard -----------------------------------------------------


def _corpus(n: int = 60) -> list[tuple[str, str, dict[str, Any]]]:
    words = ["solar", "wind", "power", "grid", "battery", "storage", "cell", "panel", "turbine"]
    rng = np.random.default_rng(7)
    return [
        (f"d{i:03d}", " ".join(rng.choice(words, size=3 + i % 7)), {"i": i, "even": i % 2 == 0})
        for i in range(n)
    ]


def _same_ranking(got: Any, want: Any) -> None:
    """The same ids in the same order, but for records whose scores are equal up to float32
    rounding (a LocalShard's float32 dot products may part equal cosines by one ulp)."""
    scores = dict(zip(want.ids, _scores(want)))
    assert len(got.ids) == len(want.ids)
    for rid, score in zip(got.ids, _scores(want)):
        assert rid in scores and scores[rid] == pytest.approx(score, abs=1e-6), (got.ids, want.ids)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_search_scores_equal_a_local_shards(engine: Shard, tmp_path: Path, mode: str) -> None:
    """One tenant: the engine's BM25 and cosine are ragkit's, so every fused score agrees.
    milvus-lite scores BM25 over the rows passing the filter in its in-memory segment (a
    server uses the collection's statistics), so there a filtered lexical score differs: the
    filter's answer is checked, not the scores."""
    corpus = _corpus()
    local = HybridStore(tmp_path / "local", embedder=EMBEDDER)
    remote = HybridStore(backend=engine, embedder=EMBEDDER)
    for store in (local, remote):
        store.add_texts(
            [t for _, t, _ in corpus],
            metadatas=[m for *_, m in corpus],
            ids=[i for i, *_ in corpus],
        )
    for query in ["solar power", "battery storage cell", "wind turbine grid panel", "nothing"]:
        for flt in (None, {"even": True}):
            want = local.search(query, k=10, mode=mode, filter=flt)
            got = remote.search(query, k=10, mode=mode, filter=flt)
            if flt is not None and mode != "dense" and isinstance(engine, MilvusShard):
                assert all(int(i[1:]) % 2 == 0 for i in got.ids) and len(got) == len(want)
                continue
            assert _scores(got) == pytest.approx(_scores(want), abs=1e-5), (query, flt)
            _same_ranking(got, want)
    local.close()


def test_native_fusion_is_the_engines_ranking(engine: Shard) -> None:
    store = HybridStore(backend=engine, embedder=EMBEDDER)
    corpus = _corpus(30)
    store.add_texts([t for _, t, _ in corpus], ids=[i for i, *_ in corpus])
    native = store.search("solar power", k=5, fusion="native")
    assert native.scale == "engine" and len(native.ids) == 5
    calibrated = store.search("solar power", k=5)
    assert calibrated.scale == "calibrated"
    assert all(0.0 <= s <= 1.0 for s in _scores(calibrated))


def test_native_fusion_on_a_local_shard_is_a_clear_error(tmp_path: Path) -> None:
    store = HybridStore(tmp_path / "s", embedder=EMBEDDER)
    store.add_texts(["solar power"])
    with pytest.raises(InvalidInputError, match="native"):
        store.search("solar", fusion="native")
    store.close()


def test_framework_adapters_work_unchanged(engine: Shard) -> None:
    from ragkit.stores.langchain import RagkitVectorStore as LangChainStore
    from ragkit.stores.llamaindex import RagkitVectorStore as LlamaStore

    store = HybridStore(backend=engine, embedder=EMBEDDER)
    lc = LangChainStore(store=store)
    lc.add_texts(["solar panels", "wind turbines"], metadatas=[{"k": 1}, {"k": 2}], ids=["a", "b"])
    docs = lc.similarity_search("solar", k=1, filter={"k": 1})
    assert [d.page_content for d in docs] == ["solar panels"]
    from llama_index.core.vector_stores.types import VectorStoreQuery

    query = VectorStoreQuery(
        query_embedding=EMBEDDER.embed_query("wind").tolist(), similarity_top_k=1
    )
    result = LlamaStore(store).query(query)
    assert result.ids == ["b"]


# ---- Qdrant: BM25 per tenant, and reweight ----------------------------------------------


def test_qdrant_scores_bm25_per_tenant() -> None:
    mixed, alone = QdrantShard(":memory:"), QdrantShard(":memory:")
    noise = [(f"n{i}", f"alpha noise number {i}", {}) for i in range(6)]
    mine = [("m1", "alpha beta", {}), ("m2", "beta gamma", {})]
    mixed.upsert(make_records(noise, tenant="t1"))
    for shard in (mixed, alone):
        shard.upsert(make_records(mine, tenant="t2"))
    want = HybridStore(backend=alone, embedder=EMBEDDER).search(
        "alpha beta", mode="lexical", tenant="t2"
    )
    got = HybridStore(backend=mixed, embedder=EMBEDDER).search(
        "alpha beta", mode="lexical", tenant="t2"
    )
    assert got.ids == want.ids and _scores(got) == pytest.approx(_scores(want), rel=1e-6)


def test_qdrant_reweight_brings_old_documents_to_todays_average_length(tmp_path: Path) -> None:
    shard = QdrantShard(path=str(tmp_path / "q"))
    shard.upsert(make_records([("a", "solar power", {}), ("b", "wind power", {})]))
    longer = [(f"l{i}", "solar " + " ".join(f"w{j}" for j in range(20)), {}) for i in range(4)]
    shard.upsert(make_records(longer))  # a and b keep the average of their time
    local = HybridStore(tmp_path / "local", embedder=EMBEDDER)
    local.add_texts(
        ["solar power", "wind power"] + [t for _, t, _ in longer],
        ids=["a", "b"] + [i for i, *_ in longer],
    )
    store = HybridStore(backend=shard, embedder=EMBEDDER)
    want = local.search("solar power", mode="lexical", k=6)
    assert _scores(store.search("solar power", mode="lexical", k=6)) != pytest.approx(_scores(want))
    assert shard.reweight() == 6
    got = store.search("solar power", mode="lexical", k=6)
    assert _scores(got) == pytest.approx(_scores(want), rel=1e-5)
    _same_ranking(got, want)
    local.close()


# ---- clear errors ------------------------------------------------------------------------


def test_missing_collection_is_a_clear_error(milvus_file: str) -> None:
    with pytest.raises(StoreError, match="nope"):
        MilvusShard(milvus_file, collection="nope", create=False)
    with pytest.raises(StoreError, match="nope"):
        QdrantShard(":memory:", collection="nope", create=False)
    with pytest.raises(InvalidInputError, match="bad-name"):
        MilvusShard(milvus_file, collection="bad-name")


def test_a_dimension_mismatch_is_a_clear_error_and_changes_nothing(engine: Shard) -> None:
    engine.upsert(make_records())
    with pytest.raises(InvalidInputError, match="32"):
        engine.upsert([Record("x", "text", {}, np.ones(16, dtype=np.float32))])
    with pytest.raises(EmbedderMismatchError, match="32-d"):
        HybridStore(backend=engine, embedder=HashingEmbedder(dim=16))
    assert engine.count() == 8 and engine.get(["x"]) == []


def test_an_unreachable_server_is_named_without_credentials() -> None:
    with pytest.raises(ShardUnavailableError) as milvus:
        MilvusShard("http://root:s3cret@127.0.0.1:9", collection="x")
    with (
        pytest.raises(ShardUnavailableError) as qdrant,
        pytest.warns(UserWarning, match="insecure connection"),  # qdrant-client's own
    ):
        QdrantShard(url="http://127.0.0.1:9", api_key="s3cret", retries=1)
    for error in (milvus, qdrant):
        assert "127.0.0.1:9" in str(error.value) and "s3cret" not in str(error.value)


def test_milvus_refuses_text_longer_than_a_varchar_and_writes_nothing(milvus_file: str) -> None:
    engine = MilvusShard(milvus_file, collection="varchar")
    good, long = make_records([("ok", "fine", {}), ("big", "word " * 20000, {})])
    with pytest.raises(InvalidInputError, match="big"):
        engine.upsert([good, long])
    assert engine.count() == 0


def test_query_vector_of_wrong_dimension(engine: Shard) -> None:
    from ragkit.request import SearchRequest

    engine.upsert(make_records())
    with pytest.raises(InvalidInputError):
        engine.search(SearchRequest(vector=np.ones(5), k=3, mode="dense"))
    assert engine.search(SearchRequest(vector=query_vector("fox"), k=3, mode="dense")).dense


@pytest.mark.parametrize("engine", ["milvus", "qdrant"])
def test_a_store_reopens_in_another_process(engine: str, tmp_path: Path) -> None:
    """One process writes and exits, another opens the same file or directory and reads:
    milvus-lite keeps a reopened collection released until it is loaded. (A milvus-lite file
    and a local-mode Qdrant directory serve one process at a time.)"""
    import subprocess
    import sys

    where = str(tmp_path / ("kb.db" if engine == "milvus" else "qdrant"))
    make = (
        f"MilvusShard({where!r}, collection='docs')"
        if engine == "milvus"
        else f"QdrantShard(path={where!r}, collection='docs')"
    )
    prelude = (
        "from ragkit.backends import MilvusShard, QdrantShard\n"
        "from ragkit.request import SearchRequest\n"
        "from ragkit.testing.shard_contract import make_records\n"
        f"shard = {make}\n"
    )
    read = (
        "hits = shard.search(SearchRequest(text='quick fox', k=3, mode='lexical')).lexical\n"
        "print(shard.count(), shard.dim, list(hits.ids), shard.store_id)\n"
        "shard.close()\n"
    )
    outputs = []
    for step in ("shard.upsert(make_records())\n", ""):
        done = subprocess.run(
            [sys.executable, "-c", prelude + step + read],
            check=False,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout.splitlines()[0])
    assert outputs[0] == outputs[1] and outputs[0].startswith("8 32 ['a', ")


def test_transient_errors_are_retried_then_named(engine: Shard) -> None:
    """A connection that drops twice is retried with backoff; one that stays down is a
    ``ShardUnavailableError`` naming the engine (the failure is injected into the real
    client: nothing else is replaced)."""
    from ragkit.request import SearchRequest

    engine.upsert(make_records())
    client = engine.client  # type: ignore[attr-defined]
    method = "search" if isinstance(engine, MilvusShard) else "query_points"
    real, calls = getattr(client, method), []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionError("connection reset by peer")
        return real(*args, **kwargs)

    setattr(client, method, flaky)
    request = SearchRequest(vector=query_vector("fox"), k=2, mode="dense")
    assert len(engine.search(request).dense or []) == 2 and len(calls) == 3

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("connection refused")

    setattr(client, method, down)
    with pytest.raises(ShardUnavailableError, match=r"(Milvus|Qdrant) at "):
        engine.search(request)
    setattr(client, method, real)


def test_ids_and_tenants_with_quotes_backslashes_and_wildcards(engine: Shard) -> None:
    """Every id a user may pick survives the engine's expressions, and paging through more
    than one page of ids (1,100 records) keeps them all."""
    tricky = ['a"b', "c\\d", "ü-ñ", "x'y", "%_", "  spaced  ", 'a\\"', "p%22q"]
    ids = tricky + [f"bulk-{i}" for i in range(1100)]
    tenant = 'te"n\\ant'
    vectors = EMBEDDER.embed_documents([f"text {i} fox" for i in range(len(ids))])
    engine.upsert(
        [Record(i, f"text {n} fox", {"k": i}, vectors[n], tenant) for n, i in enumerate(ids)]
    )
    assert [r.id for r in engine.get(tricky, tenant=tenant)] == tricky
    assert sorted(engine.ids(tenant=tenant)) == sorted(ids)
    assert engine.ids(filter=parse_filter({"k": 'a"b'}), tenant=tenant) == ['a"b']
    assert engine.delete(["c\\d", "p%22q", "nope"], tenant=tenant) == 2
    assert engine.get(["c\\d", "p%22q", 'a"b'], tenant=tenant)[0].id == 'a"b'
    assert engine.count(tenant=tenant) == len(ids) - 2 and engine.tenants() == [tenant]


async def test_concurrent_async_writes_and_searches(engine: Shard) -> None:
    """The async twins run in worker threads at once: nothing is lost, and Qdrant's running
    document lengths equal a recount (``reweight``)."""
    import asyncio

    store = HybridStore(backend=engine, embedder=EMBEDDER)
    batches = [
        [f"doc {i} about topic {i % 7} and more" for i in range(j, j + 20)]
        for j in range(0, 200, 20)
    ]
    await asyncio.gather(
        *[store.aadd_texts(b, ids=[f"d{j}-{i}" for i in range(20)]) for j, b in enumerate(batches)]
    )
    found = await asyncio.gather(*[store.asearch(f"topic {i}", k=3) for i in range(20)])
    assert store.count() == 200 and all(len(r.hits) == 3 for r in found)
    if isinstance(engine, QdrantShard):
        kept = dict(engine._lengths().by_tenant)
        engine.reweight()
        assert engine._lengths().by_tenant == kept
