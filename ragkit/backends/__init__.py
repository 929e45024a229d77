"""Backends behind a HybridStore: the Shard protocol and the engines that implement it.

``LocalShard`` (embedded), ``ShardedStore`` (partitions over hosts: in-process, Ray actors or
Chroma servers), ``ChromaShard``, ``MilvusShard``, ``QdrantShard`` and ``WeaviateShard``
(``WeaviateStore``, its name before 0.2, still works and warns). The LangChain and
LlamaIndex vector-store adapters live in ``ragkit.stores``.
"""

from typing import TYPE_CHECKING, Any

from ragkit.backends.base import Shard
from ragkit.backends.local import LocalShard
from ragkit.backends.sharded.router import ShardedStore

__all__ = [
    "ChromaShard",
    "LocalShard",
    "MilvusReplicas",
    "MilvusShard",
    "QdrantReplicas",
    "QdrantShard",
    "Shard",
    "ShardedStore",
    "WeaviateShard",
]

if TYPE_CHECKING:
    from ragkit.backends._engine_replicas import MilvusReplicas, QdrantReplicas
    from ragkit.backends.chroma import ChromaShard
    from ragkit.backends.milvus import MilvusShard
    from ragkit.backends.qdrant import QdrantShard
    from ragkit.backends.weaviate import WeaviateShard


def __getattr__(name: str) -> Any:
    # Backends with optional extras are imported on first use only.
    if name == "ChromaShard":
        from ragkit.backends.chroma import ChromaShard

        return ChromaShard
    if name in ("MilvusReplicas", "QdrantReplicas"):
        from ragkit.backends import _engine_replicas

        return getattr(_engine_replicas, name)
    if name == "MilvusShard":
        from ragkit.backends.milvus import MilvusShard

        return MilvusShard
    if name == "QdrantShard":
        from ragkit.backends.qdrant import QdrantShard

        return QdrantShard
    if name in ("WeaviateShard", "WeaviateStore"):
        from ragkit.backends import weaviate

        return getattr(weaviate, name)  # the old name warns there
    raise AttributeError(name)
