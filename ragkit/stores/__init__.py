"""Backends behind a HybridStore: the Shard protocol and its implementations."""

from ragkit.stores.base import Shard
from ragkit.stores.local import LocalShard
from ragkit.stores.sharded import ShardedStore

__all__ = ["LocalShard", "Shard", "ShardedStore"]
