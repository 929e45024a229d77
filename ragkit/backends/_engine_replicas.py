"""Milvus or Qdrant instances as the hosts of a ShardedStore: partition replicas on an engine.

One Milvus or Qdrant cluster shards and replicates a collection itself: use ``MilvusShard`` or
``QdrantShard`` directly. Several independent instances (say, one small Qdrant per machine)
can instead be the hosts of a ``ShardedStore``, like ``chroma run`` servers: each partition
replica is a collection there, with a lexical sidecar beside it (``SidecarShard``), because a
partition must score BM25 with the router's corpus-wide statistics and keep versions for
catch-up, which neither engine's own BM25 can. The engine keeps the records and vectors and
answers the dense leg (filters included); the sidecar answers the lexical leg.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from ragkit.backends._engine import EngineShard
from ragkit.backends._sidecar import SidecarShard
from ragkit.backends.base import ReplicaShard
from ragkit.backends.sharded.host import CollectionReplicas
from ragkit.filters import Filter
from ragkit.request import SearchRequest
from ragkit.schema import Leg, Record, SearchMode, Vector


class EngineReplica(SidecarShard):
    """A partition replica whose records and vectors live in an ``EngineShard``."""

    def __init__(
        self, engine: EngineShard[Any], sidecar_path: str | os.PathLike[str] | None, name: str
    ) -> None:
        self.engine, self.name, self.limits = engine, name, engine.limits
        self._open_sidecar(sidecar_path)

    def _engine_state(self) -> dict[str, str]:
        return self.engine._engine_settings()

    def _engine_put_state(self, state: dict[str, str]) -> None:
        self.engine._engine_put_settings(state)

    def _engine_upsert(self, records: Sequence[Record]) -> None:
        self.engine.upsert(records)

    def _engine_delete(self, keys: Sequence[tuple[str | None, str]]) -> None:
        by_tenant: dict[str | None, list[str]] = {}
        for tenant, rid in keys:
            by_tenant.setdefault(tenant, []).append(rid)
        for tenant, ids in by_tenant.items():
            self.engine._engine_delete(tenant, ids)

    def _engine_clear(self) -> None:
        for tenant in self.engine.tenants():
            self.engine._engine_delete(tenant, self.engine.ids(tenant=tenant))

    def _engine_vectors(self, tenant: str | None, ids: Sequence[str]) -> dict[str, Vector]:
        if self.engine.dim is None:
            return {}
        found = self.engine._engine_get(tenant, ids, True)
        return {rid: r.vector for rid, r in found.items() if r.vector is not None}

    def _engine_scan(self) -> Iterator[list[Record]]:
        if self.engine.dim is None:
            return
        batch: list[Record] = []
        for doc in self.engine._engine_scan(None, ["rid", "tenant", "text", "meta"]):
            batch.append(self.engine._record(doc))
            if len(batch) == 1000:
                yield batch
                batch = []
        if batch:
            yield batch

    def _engine_dense(self, vector: Vector, k: int, flt: Filter | None, tenant: str | None) -> Leg:
        request = SearchRequest(
            vector=vector, k=k, mode=SearchMode.DENSE, filter=flt, tenant=tenant
        )
        return self.engine.search(request).dense or Leg.empty()

    def close(self) -> None:
        super().close()
        self.engine.close()


class EngineReplicas(CollectionReplicas):
    """An engine instance as the host of partition replicas: each one a collection
    ``PREFIX<sep>p0003`` there, with its sidecar under ``sidecar_root`` (or in memory).

    Instantiate (``QdrantReplicas(QdrantClient(url=...))`` alike):
        .. code-block:: python

            from pymilvus import MilvusClient
            from ragkit.backends import ShardedStore
            from ragkit.backends import MilvusReplicas
            from ragkit.backends.sharded import LocalHost
            hosts = [
                LocalHost(f"m{i}", replicas=MilvusReplicas(MilvusClient(uri)))
                for i, uri in enumerate(["http://m0:19530", "http://m1:19530"])
            ]
            router = ShardedStore(hosts, partitions=4, replicas=2)
    """

    @abstractmethod
    def _shard(self, collection: str) -> EngineShard[Any]: ...

    def open(self, partition: int, host: str) -> ReplicaShard:
        engine = self._shard(self._collection(partition))
        return EngineReplica(engine, self._sidecar(partition), f"{host}/p{partition}")


class MilvusReplicas(EngineReplicas):
    """A Milvus instance (a ``pymilvus.MilvusClient``) as the host of partition replicas:
    collections ``PREFIX_p0003`` (see ``EngineReplicas``)."""

    separator = "_"

    def _shard(self, collection: str) -> EngineShard[Any]:
        from ragkit.backends.milvus import MilvusShard

        return MilvusShard(client=self.client, collection=collection)

    def _collections(self) -> list[str]:
        return [str(n) for n in self.client.list_collections()]

    def _drop(self, collection: str) -> None:
        self.client.drop_collection(collection)


class QdrantReplicas(EngineReplicas):
    """A Qdrant instance (a ``qdrant_client.QdrantClient``) as the host of partition
    replicas: collections ``PREFIX-p0003`` (see ``EngineReplicas``)."""

    separator = "-"

    def _shard(self, collection: str) -> EngineShard[Any]:
        from ragkit.backends.qdrant import QdrantShard

        return QdrantShard(client=self.client, collection=collection)

    def _collections(self) -> list[str]:
        return [c.name for c in self.client.get_collections().collections]

    def _drop(self, collection: str) -> None:
        self.client.delete_collection(collection)
