"""The embedded backend."""

from ragkit.stores.local.shard import LocalShard

__all__ = ["LocalShard"]
