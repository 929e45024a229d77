"""Hosts as Ray actors (needs the ray extra).

A ``RayHost`` is a ``PartitionHost`` in a Ray actor that owns its partition replicas' LocalShard
directories. Ray restarts a killed actor (``max_restarts``); it reopens every partition
directory it finds, with every acknowledged write (SQLite is the source of truth), and a
replica that missed writes meanwhile is caught up by the router before it serves.

Each message to the host is one actor call; the router waits on the calls' object refs
through their futures (Ray completes them, no thread waits per call). A message nobody waits
for any more is never ``ray.cancel``-ed: see ``HostClient.abandon``.
"""

from __future__ import annotations

import os
import pickle
import threading
from concurrent.futures import Future
from typing import Any

from ragkit.backends.sharded._ray_auth import join, refresh
from ragkit.backends.sharded.dispatch import Answers, Batch, HostClient, Sent
from ragkit.backends.sharded.host import LocalReplicas, PartitionHost
from ragkit.errors import MissingDependencyError

try:
    import ray
except ImportError:  # pragma: no cover - exercised only without the extra
    ray = None  # type: ignore[assignment]


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (default: ``RAY_ADDRESS`` if set), or start a local
    one bound to 127.0.0.1, unless this process is connected already."""
    if ray is None:
        raise MissingDependencyError("Ray hosting needs the 'ray' extra: pip install 'ragkit[ray]'")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        join(ray, address)
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # listeners on loopback
    refresh()  # the auth mode as the environment says now, not as a cluster joined before
    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)


class RayHost(HostClient):
    """A host in a Ray actor, its partition replicas in ``path`` (on the actor's node).

    Key init args:
        name: the host's name (unique in the store).
        path: the directory for its partitions (``path/p0003/`` each).
        max_restarts: how often Ray restarts a dead actor (-1: always).
        num_cpus: CPUs reserved for the actor (default 0: hosts are mostly idle between
            queries and a small machine can run many).
        actor_options: more ``ray.remote`` options (``name``, ``namespace``, ``lifetime``,
            ``scheduling_strategy``, ...).
        **shard_args: passed to each ``LocalShard`` (``exact_threshold``, ...).

    Instantiate:
        .. code-block:: python

            import ray
            from ragkit.backends import ShardedStore
            from ragkit.backends.sharded.ray import RayHost
            ray.init(address="auto")
            hosts = [RayHost(f"h{i}", f"/data/kb/h{i}") for i in range(8)]
            router = ShardedStore(hosts, partitions=16, replicas=2)
    """

    def __init__(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        max_restarts: int = -1,
        num_cpus: float = 0,
        max_inflight: int = 2,
        actor_options: dict[str, Any] | None = None,
        **shard_args: Any,
    ) -> None:
        if ray is None:
            raise MissingDependencyError("RayHost needs the 'ray' extra: pip install 'ragkit[ray]'")
        super().__init__(name, max_inflight=max_inflight)
        self._options = {
            "max_restarts": max_restarts,
            "max_task_retries": 0,
            "num_cpus": num_cpus,
            **(actor_options or {}),
        }
        self._replicas = LocalReplicas(str(path), **shard_args)
        self._rehoming = threading.Lock()
        self.actor: Any = self._start(self._options)

    def _start(self, options: dict[str, Any]) -> Any:
        return ray.remote(PartitionHost).options(**options).remote(self.name, self._replicas)

    def _rehome(self, dead: Any) -> None:
        """The actor was pinned to a node that is gone (Ray cannot restart it there): start
        it again wherever Ray places it, with the same name and directories."""
        with self._rehoming:
            if self.actor is not dead:
                return  # another failed call did it already
            options = {k: v for k, v in self._options.items() if k != "scheduling_strategy"}
            self._options = options
            self.actor = self._start(options)

    def _send(self, batch: Batch, context: Any) -> Sent:
        actor = self.actor
        ref = actor.run_pickled.remote(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
        answers: Future[Answers] = Future()

        def unpack(done: Future[bytes]) -> None:
            try:
                answers.set_result(pickle.loads(done.result()))
            except BaseException as exc:  # the actor died, or the call was cancelled
                if isinstance(exc, ray.exceptions.ActorUnschedulableError):
                    threading.Thread(target=self._rehome, args=(actor,), daemon=True).start()
                answers.set_exception(exc)

        ref.future().add_done_callback(unpack)
        return Sent(answers)

    def pid(self) -> int:
        """The actor's process id (for operations and fault tests)."""
        return int(self.call("status", timeout=60)["pid"])

    def close(self) -> None:
        """Stop the actor (its directories stay)."""
        ray.kill(self.actor, no_restart=True)
