"""Backends behind a HybridStore: the Shard protocol and its implementations."""

from typing import TYPE_CHECKING, Any

from ragkit.stores.base import Shard
from ragkit.stores.local import LocalShard
from ragkit.stores.sharded import ShardedStore

__all__ = ["ChromaShard", "LocalShard", "Shard", "ShardedStore", "WeaviateStore"]

if TYPE_CHECKING:
    from ragkit.stores.chroma import ChromaShard
    from ragkit.stores.weaviate import WeaviateStore


def __getattr__(name: str) -> Any:
    # Backends with optional extras are imported on first use only.
    if name == "ChromaShard":
        from ragkit.stores.chroma import ChromaShard

        return ChromaShard
    if name == "WeaviateStore":
        from ragkit.stores.weaviate import WeaviateStore

        return WeaviateStore
    raise AttributeError(name)
