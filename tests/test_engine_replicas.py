"""Issue 29: Milvus and Qdrant instances as the hosts of a ShardedStore. Each partition
replica (a collection plus ragkit's lexical sidecar) passes the replica contract, and three
instances behind a ShardedStore answer like one LocalShard."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is part of make test")
pytest.importorskip("qdrant_client", reason="the qdrant extra is part of make test")

from pymilvus import MilvusClient
from qdrant_client import QdrantClient
from test_engine_shards import _same_ranking

from ragkit import HybridStore
from ragkit.backends import MilvusReplicas, QdrantReplicas, Shard, ShardedStore
from ragkit.backends.sharded import LocalHost
from ragkit.embeddings import HashingEmbedder
from ragkit.testing.shard_contract import ReplicaContract

_partitions = itertools.count()
VOCAB = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "hybrid", "search"]


class TestQdrantReplica(ReplicaContract):
    @pytest.fixture
    def make_shard(self) -> Callable[[], Shard]:
        factory = QdrantReplicas(QdrantClient(":memory:"), prefix="rc")
        return lambda: factory.open(next(_partitions), "q0")


class TestMilvusReplica(ReplicaContract):
    @pytest.fixture
    def make_shard(self, tmp_path: Path) -> Callable[[], Shard]:
        factory = MilvusReplicas(MilvusClient(str(tmp_path / "m.db")), prefix="rc")
        return lambda: factory.open(next(_partitions), "m0")


def hosts(engine: str, tmp: Path) -> list[LocalHost]:
    if engine == "qdrant":
        factories: list[Any] = [QdrantReplicas(QdrantClient(":memory:")) for _ in range(3)]
    else:
        factories = [MilvusReplicas(MilvusClient(str(tmp / f"m{i}.db"))) for i in range(3)]
    return [LocalHost(f"{engine}{i}", replicas=f) for i, f in enumerate(factories)]


@pytest.mark.parametrize("engine", ["qdrant", "milvus"])
def test_three_instances_answer_like_one_local_shard(engine: str, tmp_path: Path) -> None:
    rng = random.Random(5)
    docs = [
        (f"d{i:03d}", " ".join(rng.choices(VOCAB, k=rng.randint(1, 8))), {"g": i % 4})
        for i in range(60)
    ]
    single = HybridStore(tmp_path / "single", embedder=HashingEmbedder(dim=32))
    router = ShardedStore(hosts(engine, tmp_path), partitions=6, replicas=2, heal_interval_s=None)
    spread = HybridStore(backend=router, embedder=HashingEmbedder(dim=32))
    for store in (single, spread):
        store.add_texts([t for _, t, _ in docs], [m for *_, m in docs], [i for i, *_ in docs])
    spread.delete(["d000", "d007"])
    single.delete(["d000", "d007"])
    for _ in range(6):
        query = " ".join(rng.choices(VOCAB, k=rng.randint(1, 3)))
        for flt in (None, {"g": 1}, {"g": {"$ne": 2}}):
            for mode in ("hybrid", "dense", "lexical"):
                want = single.search(query, k=10, mode=mode, filter=flt)
                got = spread.search(query, k=10, mode=mode, filter=flt)
                _same_ranking(got, want)  # ids in order, but for float32 ties
    assert spread.count() == single.count() == 58
    single.close()
    spread.close()
