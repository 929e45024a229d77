"""Backends behind a HybridStore: the Shard protocol and its implementations."""

from typing import TYPE_CHECKING, Any

from ragkit.stores.base import Shard
from ragkit.stores.local import LocalShard
from ragkit.stores.sharded import ShardedStore

__all__ = ["ChromaShard", "LocalShard", "Shard", "ShardedStore"]

if TYPE_CHECKING:
    from ragkit.stores.chroma import ChromaShard


def __getattr__(name: str) -> Any:
    # ChromaShard needs the chroma extra: imported on first use only.
    if name == "ChromaShard":
        from ragkit.stores.chroma import ChromaShard

        return ChromaShard
    raise AttributeError(name)
