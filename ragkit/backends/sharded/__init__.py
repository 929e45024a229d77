"""The sharded store: partitions with replicas over hosts (in-process, Ray actors, Chroma).

``ShardedStore`` is the router; ``LocalHost`` and ``RayHost`` (``ragkit.backends.sharded.ray``,
the ray extra) are hosts; ``StoreLayout`` is the one-directory form the CLI creates.
"""

from ragkit.backends.sharded.dispatch import HostBusyError, HostClient, LocalHost
from ragkit.backends.sharded.layout import StoreLayout
from ragkit.backends.sharded.router import ClusterStatus, MoveReport, ShardedStore

__all__ = [
    "ClusterStatus",
    "HostBusyError",
    "HostClient",
    "LocalHost",
    "MoveReport",
    "ShardedStore",
    "StoreLayout",
]
