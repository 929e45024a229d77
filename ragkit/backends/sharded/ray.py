"""Shards hosted as Ray actors (needs the ray extra).

Each actor owns a durable ``LocalShard`` directory. With ``max_restarts`` a killed actor is
restarted by Ray, reopens its directory (replaying writes past the last checkpoint from
SQLite) and comes back with all its acknowledged records. The router's retries bridge the
restart: a call to a dead actor fails fast and is retried with backoff within the deadline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit.backends.base import Shard
from ragkit.errors import MissingDependencyError
from ragkit.filters import Filter
from ragkit.schema import Candidate, LexicalStats, Record

try:
    import ray
except ImportError:  # pragma: no cover - exercised only without the extra
    ray = None  # type: ignore[assignment]


class _ShardHost:
    """The actor: a LocalShard in its own process. Methods are called by name."""

    def __init__(self, path: str, name: str, shard_args: dict[str, Any]) -> None:
        from ragkit.backends.local import LocalShard

        self.shard = LocalShard(path, name=name, **shard_args)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.shard, method)(*args, **kwargs)

    def dim(self) -> int | None:
        return self.shard.dim

    def pid(self) -> int:
        return os.getpid()

    def info(self) -> dict[str, Any]:
        return self.shard.info()


class RayShard(Shard):
    """A ``LocalShard`` in a Ray actor; use it like any shard, typically in a ShardedStore.

    Key init args:
        path: the shard's directory (must be reachable from the node running the actor).
        name: a unique shard name.
        max_restarts: how often Ray restarts a dead actor (-1: always).
        call_timeout_s: bound on each call (the router's deadline usually ends it sooner).
        num_cpus: CPUs reserved for the actor (default 0: shards are mostly idle between
            queries and a small machine can host many).
        **shard_args: passed to ``LocalShard`` (``exact_threshold``, ``checkpoint_every``...).

    Instantiate:
        .. code-block:: python

            import ray
            ray.init(address="auto")            # or a local ray.init(num_cpus=...)
            shards = [RayShard(f"/data/shard-{i}", name=f"s{i}") for i in range(8)]
            store = HybridStore(backend=ShardedStore(shards, replicas=2))
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str,
        max_restarts: int = -1,
        call_timeout_s: float = 60.0,
        num_cpus: float = 0,
        **shard_args: Any,
    ) -> None:
        if ray is None:
            raise MissingDependencyError(
                "RayShard needs the 'ray' extra: pip install 'ragkit[ray]'"
            )
        self.name = name
        self.path = Path(path)
        self.call_timeout_s = call_timeout_s
        actor_class = ray.remote(_ShardHost)
        self._actor: Any = actor_class.options(
            max_restarts=max_restarts, max_task_retries=0, num_cpus=num_cpus
        ).remote(str(self.path), name, shard_args)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return ray.get(
            self._actor.call.remote(method, *args, **kwargs), timeout=self.call_timeout_s
        )

    def pid(self) -> int:
        """The actor's process id (for operations and fault tests)."""
        return int(ray.get(self._actor.pid.remote(), timeout=self.call_timeout_s))

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = ray.get(self._actor.info.remote(), timeout=self.call_timeout_s)
        return info

    @property
    def dim(self) -> int | None:
        value = ray.get(self._actor.dim.remote(), timeout=self.call_timeout_s)
        return None if value is None else int(value)

    def upsert(self, records: Sequence[Record]) -> None:
        self._call("upsert", list(records))

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        return int(
            self._call("delete", None if ids is None else list(ids), filter=filter, tenant=tenant)
        )

    def get(self, ids: Sequence[str], *, include_vectors: bool = False) -> list[Record]:
        records: list[Record] = self._call("get", list(ids), include_vectors=include_vectors)
        return records

    def tenants(self) -> list[str | None]:
        tenants: list[str | None] = self._call("tenants")
        return tenants

    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        ids: list[str] = self._call("ids", filter=filter, tenant=tenant)
        return ids

    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        return int(self._call("count", filter=filter, tenant=tenant))

    def search_dense_batch(
        self,
        vectors: NDArray[np.float32],
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> list[list[Candidate]]:
        found: list[list[Candidate]] = self._call(
            "search_dense_batch", vectors, k, filter=filter, tenant=tenant
        )
        return found

    def search_lexical(
        self,
        text: str,
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
        stats: LexicalStats | None = None,
    ) -> list[Candidate]:
        found: list[Candidate] = self._call(
            "search_lexical", text, k, filter=filter, tenant=tenant, stats=stats
        )
        return found

    def analyze(self, text: str) -> list[str]:
        terms: list[str] = self._call("analyze", text)
        return terms

    def lexical_stats(self, terms: Sequence[str]) -> LexicalStats:
        stats: LexicalStats = self._call("lexical_stats", list(terms))
        return stats

    def read_setting(self, key: str) -> str | None:
        value: str | None = self._call("read_setting", key)
        return value

    def write_setting(self, key: str, value: str) -> None:
        self._call("write_setting", key, value)

    def checkpoint(self) -> None:
        self._call("checkpoint")

    def close(self) -> None:
        """Checkpoint and stop the actor (its directory stays)."""
        try:
            self._call("close")
        finally:
            ray.kill(self._actor, no_restart=True)
