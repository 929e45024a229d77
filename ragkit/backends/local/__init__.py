"""The embedded backend."""

from ragkit.backends.local.shard import LocalShard

__all__ = ["LocalShard"]
