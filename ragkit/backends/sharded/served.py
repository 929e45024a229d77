"""A sharded store served by a Ray cluster, shared by any number of application processes.

``ragkit cluster up --store DIR`` starts, on a running Ray cluster, the store's hosts as
named, detached actors (``host-h000``, ...) and one more detached actor, the store service,
in a Ray namespace derived from the store (``ragkit-<store id>``). The service runs the
store's router (``ShardedStore``): every write goes through it, so each partition's writes
are ordered by its primary replica and forwarded to its other replicas as in one process
(``write_quorum`` copies, the primary included, before an acknowledgement), and every
search runs there in one round to the hosts, fused, with the hits' records.

``HybridStore(DIR)``, in any process, finds ``DIR/store.json`` marked as served, connects to
the cluster (``RAY_ADDRESS``, else the address ``cluster up`` recorded) and attaches to the
service by name (``ServedStore``); it embeds queries itself and sends the request. Nothing
is started twice: a second ``up`` attaches to the running actors.

Placement: host ``i`` is given zone ``i mod nodes`` when the store is created, and each
zone is pinned to one of the cluster's nodes (node affinity), so a partition's replicas live
on different nodes wherever there are several (``placement.place`` with zones). Each host keeps
its partitions as LocalShard directories under ``DIR/hosts/<host>/`` on the node it runs on.

Failures: Ray restarts a dead host actor; a host whose node is gone is started again on
another node (``RayHost`` sees Ray refuse to schedule it on the dead node). It reopens
its partition directories, and the router catches its replicas up from the in-sync ones
before they serve again. While it is down its partitions are served, and their writes
ordered, by their other in-sync replicas (the first in-sync replica in placement order is
the primary). A node lost for good: its hosts restart elsewhere; a replica whose directory
is gone starts empty and is re-copied in full from an in-sync replica before it serves.
The service runs on the head node (the cluster lives as long as it does); Ray restarts
it if its process dies, and it reloads the in-sync sets from ``DIR/state.json``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragkit._pipeline import run_search
from ragkit.backends.base import Capabilities, Shard
from ragkit.backends.sharded._ray_auth import join, token_mode
from ragkit.backends.sharded.layout import StoreLayout
from ragkit.errors import InvalidInputError, MissingDependencyError, StoreError
from ragkit.filters import Filter
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.request import SearchRequest
from ragkit.schema import Fused, LexicalStats, Record, RecordMap, SearchResult, ShardAnswer
from ragkit.tracing import in_context

SERVICE = "store"
#: how long attaching waits for the service to answer (hosts may still be starting)
READY_TIMEOUT_S = 180.0


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            "a served cluster needs the 'ray' extra: pip install 'ragkit[ray]'"
        ) from exc
    return ray


def namespace_of(layout: StoreLayout) -> str:
    """The Ray namespace of a store's actors (derived from its id, the same everywhere)."""
    return f"ragkit-{layout.store_id[:16]}"


def connect(address: str | None, *, tokens: bool = False) -> None:
    """Join the Ray cluster at ``address`` (``RAY_ADDRESS`` wins); never start one.
    ``tokens``: the cluster is known to use token authentication (``cluster up`` records it);
    see ``_ray_auth``."""
    ray = _ray()
    if ray.is_initialized():
        return
    target = os.environ.get("RAY_ADDRESS") or address
    if not target:
        raise StoreError(
            "no Ray cluster address: start one with 'ray start --head' and pass --address "
            "(or set RAY_ADDRESS)"
        )
    join(ray, target, cluster_uses_tokens=tokens)


def _alive_nodes() -> list[str]:
    ray = _ray()
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def _head_node() -> str:
    """The head node (it runs the cluster's control store: it lives as long as the cluster)."""
    ray = _ray()
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return str(node["NodeID"])
    return str(ray.get_runtime_context().get_node_id())


class StoreService:
    """The store's router in a detached actor (threaded: calls from many processes run
    concurrently; the router is thread-safe)."""

    def __init__(self, folder: str, limits: Limits) -> None:
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.folder = folder
        layout = StoreLayout.load(folder)
        zones: dict[str, str] = dict(layout.router.get("zones", {}))
        nodes = _alive_nodes()
        namespace = namespace_of(layout)

        def host_options(name: str) -> dict[str, Any]:
            options: dict[str, Any] = {
                "name": f"host-{name}",
                "namespace": namespace,
                "lifetime": "detached",
                "get_if_exists": True,
            }
            zone = zones.get(name)
            if zone is not None and nodes:
                node = nodes[int(zone.rsplit("-", 1)[-1]) % len(nodes)]
                # hard: Ray ignores a soft affinity when it packs; a host whose node is gone
                # is started again elsewhere by RayHost (ActorUnschedulableError)
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
            return options

        self.store = layout.open(folder, limits=limits, actor_options=host_options)
        self.started = time.time()
        self.node = ray.get_runtime_context().get_node_id()
        # Each host's last answer: a new incarnation is a restart (the status shows it).
        self._seen: dict[str, dict[str, Any]] = {}
        self._seen_lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="ragkit-watch").start()

    def _look(self, name: str, client: Any) -> dict[str, Any]:
        try:
            answer = client.call("status", timeout=min(self.store.deadline_s, 5.0))
        except Exception as exc:  # a dead host is a row, not an error
            row = {"alive": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        else:
            row = {
                "alive": True,
                "pid": answer.get("pid"),
                "node": answer.get("node"),
                "incarnation": answer.get("incarnation"),
            }
        with self._seen_lock:
            seen = self._seen.setdefault(
                name, {"host": name, "restarts": 0, "last_restart": None, "incarnation": None}
            )
            if row["alive"]:
                if seen["incarnation"] not in (None, row["incarnation"]):
                    seen["restarts"] += 1
                    seen["last_restart"] = time.time()
                seen.update(row)
                seen.pop("error", None)
            else:
                seen.update({"alive": False, "error": row["error"]})
            return dict(seen)

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            for name, client in list(self.store.clients.items()):
                self._look(name, client)

    def ready(self) -> dict[str, Any]:
        store = self.store
        return {
            "name": store.name,
            "store_id": store.store_id,
            "capabilities": asdict(store.capabilities),
            "pid": os.getpid(),
            "node": self.node,
        }

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if method not in _FORWARDED:
            raise InvalidInputError(f"the store service does not serve {method!r}")
        value = getattr(self.store, method)
        return value(*args, **kwargs) if callable(value) else value

    def search(self, request: SearchRequest, carrier: dict[str, str] | None = None) -> SearchResult:
        """One search; ``carrier``: the caller's trace context (W3C), so the service's spans
        (one per host call, each leg, fusion) join the caller's trace."""
        from opentelemetry import propagate

        with in_context(propagate.extract(carrier or {})):
            return run_search(self.store, request)

    def hosts(self) -> list[dict[str, Any]]:
        """Each host: alive, pid, node, incarnation, and the restarts the service saw (it
        looks every second)."""
        return [self._look(name, client) for name, client in self.store.clients.items()]

    def shutdown(self) -> None:
        """Checkpoint every replica and stop the hosts (their directories stay)."""
        self._stop.set()
        for client in self.store.clients.values():
            try:
                client.call("checkpoint", timeout=self.store.deadline_s * 10)
            except Exception:  # a dead host has nothing newer than its SQLite log
                continue
        self.store.close()


#: the router's methods and properties the service answers for its clients
_FORWARDED = frozenset(
    {
        "dim",
        "generation",
        "upsert",
        "delete",
        "get",
        "count",
        "ids",
        "tenants",
        "analyze",
        "lexical_stats",
        "read_setting",
        "write_setting",
        "packed",
        "optimize",
        "checkpoint",
        "heal",
        "status",
    }
)


@dataclass(frozen=True, slots=True)
class _Remote:
    actor: Any
    timeout_s: float


class ServedStore(Shard):
    """A client of a served store: every call goes to the store service actor.

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            store = HybridStore("./kb")   # a store started with 'ragkit cluster up'
    """

    # the router's capabilities (ShardedStore's); whole searches run in the service
    capabilities = Capabilities(native_hybrid=False, global_stats=True)

    def __init__(self, folder: str | os.PathLike[str], *, timeout_s: float = 60.0) -> None:
        ray = _ray()
        self.folder = Path(folder)
        layout = StoreLayout.load(self.folder)
        served = layout.served or {}
        if not served.get("running"):
            raise StoreError(
                f"{folder} is a served store whose cluster is down: start it with "
                f"'ragkit cluster up --store {folder}'"
            )
        connect(served.get("address"), tokens=served.get("auth") == "token")
        try:
            actor = ray.get_actor(SERVICE, namespace=namespace_of(layout))
        except ValueError:
            raise StoreError(
                f"the store service of {folder} is not running on this Ray cluster: "
                f"start it with 'ragkit cluster up --store {folder}'"
            ) from None
        self._remote = _Remote(actor, timeout_s)
        info = ray.get(actor.ready.remote(), timeout=READY_TIMEOUT_S)
        self.name = str(info["name"])
        self._store_id = str(info["store_id"])
        self.read_only = False

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        ray = _ray()
        ref = self._remote.actor.call.remote(method, args, kwargs)
        try:
            return ray.get(ref, timeout=self._remote.timeout_s)
        except ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None

    def searcher(self) -> ServedStore:
        """A served store runs whole searches in its service: it is its own ``Searcher``."""
        return self

    def run(self, request: SearchRequest) -> SearchResult:
        """One search, run by the service (both legs, fusion, hits with their records)."""
        from opentelemetry import propagate

        ray = _ray()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the service's spans join this process's trace
        try:
            result: SearchResult = ray.get(
                self._remote.actor.search.remote(request, carrier), timeout=self._remote.timeout_s
            )
        except ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None
        return result

    @property
    def store_id(self) -> str:
        return self._store_id

    @property
    def generation(self) -> int | None:
        value = self._call("generation")
        return None if value is None else int(value)

    @property
    def dim(self) -> int | None:
        value = self._call("dim")
        return None if value is None else int(value)

    def upsert(self, records: Any) -> None:
        self._call("upsert", list(records))

    def delete(
        self,
        ids: Any = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        return int(
            self._call("delete", None if ids is None else list(ids), filter=filter, tenant=tenant)
        )

    def get(
        self, ids: Any, *, tenant: str | None = None, include_vectors: bool = False
    ) -> list[Record]:
        found: list[Record] = self._call(
            "get", list(ids), tenant=tenant, include_vectors=include_vectors
        )
        return found

    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        return int(self._call("count", filter=filter, tenant=tenant))

    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        found: list[str] = self._call("ids", filter=filter, tenant=tenant)
        return found

    def tenants(self) -> list[str | None]:
        found: list[str | None] = self._call("tenants")
        return found

    def search(self, request: SearchRequest, *, stats: LexicalStats | None = None) -> ShardAnswer:
        """The service's final ranking (``run``) as a shard answer: ``ranked`` with each hit's
        leg scores and ranks, and the hits' records. ``stats`` is the service's to decide."""
        result = self.run(request)
        hits = result.hits
        nan = float("nan")
        ranked = Fused(
            [h.id for h in hits],
            np.array([h.score for h in hits], dtype=np.float64),
            np.array(
                [
                    [nan if h.dense_score is None else h.dense_score for h in hits],
                    [nan if h.lexical_score is None else h.lexical_score for h in hits],
                ],
                dtype=np.float64,
            ).reshape(2, len(hits)),
            np.array(
                [[h.dense_rank or 0 for h in hits], [h.lexical_rank or 0 for h in hits]],
                dtype=np.int64,
            ).reshape(2, len(hits)),
        )
        return ShardAnswer(
            ranked=ranked,
            records=RecordMap({h.id: h.record for h in hits}),
            missing=result.missing_shards,
        )

    def read_setting(self, key: str) -> str | None:
        value = self._call("read_setting", key)
        return None if value is None else str(value)

    def write_setting(self, key: str, value: str) -> None:
        self._call("write_setting", key, value)

    def optimize(self) -> int:
        return int(self._call("optimize"))

    def checkpoint(self) -> None:
        self._call("checkpoint")

    def status(self) -> Any:
        return self._call("status")

    def stats(self) -> dict[str, Any]:
        """The served router's hosts and replicas, as an embedded sharded store reports them."""
        return {"cluster": dataclasses.asdict(self.status())}

    def heal(self) -> Any:
        return self._call("heal")

    def hosts(self) -> list[dict[str, Any]]:
        """Each host's name, pid, node and incarnation (for status and fault tests)."""
        ray = _ray()
        found: list[dict[str, Any]] = ray.get(
            self._remote.actor.hosts.remote(), timeout=self._remote.timeout_s
        )
        return found

    def close(self) -> None:
        """Detach (the cluster keeps serving; ``ragkit cluster down`` stops it)."""


# ---- the cluster's lifecycle ----------------------------------------------------------------


def up(
    folder: str | os.PathLike[str],
    *,
    hosts: int | None = None,
    partitions: int | None = None,
    replicas: int | None = None,
    address: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ServedStore:
    """Start (or attach to) the served store in ``folder`` on the Ray cluster at ``address``;
    a new store is created with ``hosts``, ``partitions`` and ``replicas``."""
    ray = _ray()
    folder = Path(folder)
    connect(address)
    if StoreLayout.exists(folder):
        layout = StoreLayout.load(folder)
        given = {"hosts": hosts, "partitions": partitions, "replicas": replicas}
        have = {
            "hosts": len(layout.hosts),
            "partitions": layout.partitions,
            "replicas": layout.replicas,
        }
        wrong = {k: v for k, v in given.items() if v is not None and v != have[k]}
        if wrong:
            raise InvalidInputError(
                f"{folder} already holds a store with {have}; it cannot change to {wrong} "
                "(add hosts with 'ragkit shards add')"
            )
        if layout.hosting != "ray":
            raise InvalidInputError(f"{folder} is a store with {layout.hosting} hosts, not ray")
    else:
        if hosts is None or partitions is None:
            raise InvalidInputError("a new served store needs --hosts and --partitions")
        layout = StoreLayout.create(
            folder, hosts=hosts, partitions=partitions, replicas=replicas or 1, hosting="ray"
        )
    if "zones" not in layout.router:
        nodes = max(1, len(_alive_nodes()))
        layout.router["zones"] = {h: f"zone-{i % nodes}" for i, h in enumerate(layout.hosts)}
    layout.served = {
        "running": True,
        "address": os.environ.get("RAY_ADDRESS")
        or address
        or ray.get_runtime_context().gcs_address,
        # clients then present a token (found where Ray looks) or get a clear error
        "auth": "token" if token_mode() else "disabled",
    }
    layout.save(folder)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    service = (
        ray.remote(StoreService)
        .options(
            name=SERVICE,
            namespace=namespace_of(layout),
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=64,
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(_head_node(), soft=False),
        )
        .remote(str(folder.resolve()), limits)
    )
    ray.get(service.ready.remote(), timeout=READY_TIMEOUT_S)
    return ServedStore(folder)


def down(folder: str | os.PathLike[str]) -> None:
    """Checkpoint and stop the served store's actors; the data stays in ``folder``."""
    ray = _ray()
    folder = Path(folder)
    layout = StoreLayout.load(folder)
    served = layout.served or {}
    connect(served.get("address"), tokens=served.get("auth") == "token")
    namespace = namespace_of(layout)
    try:
        service = ray.get_actor(SERVICE, namespace=namespace)
    except ValueError:
        service = None
    if service is not None:
        ray.get(service.shutdown.remote(), timeout=READY_TIMEOUT_S)
        ray.kill(service, no_restart=True)
    for name in layout.hosts:  # hosts the service could not stop (it was not running)
        try:
            ray.kill(ray.get_actor(f"host-{name}", namespace=namespace), no_restart=True)
        except ValueError:
            continue
    layout.served = {**served, "running": False}
    layout.save(folder)
