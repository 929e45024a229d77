"""A sharded store in one directory, opened by ``HybridStore(path)`` and every CLI command.

    DIR/store.json          partitions, replicas, hosts, routing, hosting (local or ray)
    DIR/state.json          which replicas are in sync (kept by the router)
    DIR/hosts/h000/p0003/   one LocalShard directory per partition replica

``ragkit shards init --store DIR --hosts H --partitions P --replicas R`` creates it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragkit.backends.sharded.dispatch import HostClient, LocalHost
from ragkit.backends.sharded.placement import RouteBy, check_layout
from ragkit.backends.sharded.router import ShardedStore
from ragkit.errors import InvalidInputError, StoreError
from ragkit.limits import DEFAULT_LIMITS, Limits

STORE_FILE = "store.json"
STATE_FILE = "state.json"
FORMAT = 2
HOSTINGS = ("local", "ray")


@dataclass
class StoreLayout:
    partitions: int
    replicas: int
    hosts: list[str]
    route_by: str = RouteBy.ID.value
    hosting: str = "local"
    write_quorum: int | None = None
    router: dict[str, Any] = field(default_factory=dict)  # more ShardedStore arguments
    format: int = FORMAT
    store_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    served: dict[str, Any] | None = None  # a served cluster: {"running", "address"}
    #: the device and inode of the directory the store was created in: a copy of the
    #: directory (``cp -r``, a restored backup) has other ones, and takes a new ``store_id``
    #: when it is opened, so caches never answer it with the original's results
    home: str | None = None

    @staticmethod
    def exists(folder: str | os.PathLike[str]) -> bool:
        folder = Path(folder)
        if (folder / "shards.json").exists():
            raise StoreError(
                f"{folder} is a sharded store from ragkit 0.1 (shards.json), whose layout "
                "changed to partitions over hosts: create a new one with 'ragkit shards init' "
                f"and copy each {folder}/shard-NNN into it with 'ragkit migrate'"
            )
        return (folder / STORE_FILE).exists()

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        *,
        hosts: int,
        partitions: int,
        replicas: int = 1,
        route_by: str = RouteBy.ID.value,
        hosting: str = "local",
        write_quorum: int | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> StoreLayout:
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            raise StoreError(f"{folder} is not empty; a new store needs an empty directory")
        if isinstance(hosts, bool) or not isinstance(hosts, int) or hosts < 1:
            raise InvalidInputError(f"hosts must be a positive integer, got {hosts!r}")
        check_layout(partitions, replicas, hosts, limits)
        if hosting not in HOSTINGS:
            raise InvalidInputError(f"hosting must be one of {HOSTINGS}, got {hosting!r}")
        try:
            RouteBy(route_by)
        except ValueError:
            raise InvalidInputError(
                f"route_by must be 'id' or 'tenant', got {route_by!r}"
            ) from None
        layout = cls(
            partitions,
            replicas,
            [f"h{i:03d}" for i in range(hosts)],
            route_by,
            hosting,
            write_quorum,
        )
        folder.mkdir(parents=True, exist_ok=True)
        st = folder.stat()
        layout.home = f"{st.st_dev}:{st.st_ino}"
        layout.save(folder)
        return layout

    @classmethod
    def load(cls, folder: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> StoreLayout:
        """Read ``store.json`` and check it against ``limits`` before anything is opened (a
        layout past them, written by hand or by a ragkit with other limits, is a
        ``StoreError``, not an open that creates thousands of directories)."""
        path = Path(folder) / STORE_FILE
        try:
            layout = cls(**json.loads(path.read_text()))
        except (OSError, TypeError, ValueError) as exc:
            raise StoreError(f"cannot read {path}: {exc}") from None
        if layout.format != FORMAT:
            raise StoreError(f"{path} has format {layout.format}; this ragkit reads {FORMAT}")
        if not isinstance(layout.hosts, list):
            raise StoreError(f"{path}: hosts must be a list of names, got {layout.hosts!r}")
        try:
            check_layout(layout.partitions, layout.replicas, len(layout.hosts), limits)
        except InvalidInputError as exc:
            raise StoreError(f"{path}: {exc}") from None
        return layout

    def save(self, folder: str | os.PathLike[str]) -> None:
        tmp = Path(folder) / (STORE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(Path(folder) / STORE_FILE)

    def client(
        self,
        folder: str | os.PathLike[str],
        name: str,
        limits: Limits = DEFAULT_LIMITS,
        actor_options: Callable[[str], dict[str, Any]] | None = None,
    ) -> HostClient:
        path = Path(folder) / "hosts" / name
        if self.hosting == "ray":
            from ragkit.backends.sharded.ray import RayHost, connect

            connect()
            options = actor_options(name) if actor_options is not None else None
            return RayHost(name, path, limits=limits, actor_options=options)
        return LocalHost(name, str(path), limits=limits)

    def open(
        self,
        folder: str | os.PathLike[str],
        *,
        limits: Limits = DEFAULT_LIMITS,
        actor_options: Callable[[str], dict[str, Any]] | None = None,
    ) -> ShardedStore:
        """The store's router with its hosts (``actor_options``: per host name, the Ray
        options of its actor, for a served cluster)."""
        folder = Path(folder)
        self._claim(folder)
        clients = [self.client(folder, name, limits, actor_options) for name in self.hosts]
        store = ShardedStore(
            clients,
            partitions=self.partitions,
            replicas=self.replicas,
            write_quorum=self.write_quorum,
            route_by=self.route_by,
            state_path=str(folder / STATE_FILE),
            store_id=self.store_id,
            limits=limits,
            name=str(folder.resolve()),
            **self.router,
        )
        store.layout_file = folder / STORE_FILE
        return store

    def _claim(self, folder: Path) -> None:
        """Take a new identity when this directory is a copy of the one the store was made in
        (its partitions' record logs do the same, each for its own file)."""
        st = folder.stat()
        home = f"{st.st_dev}:{st.st_ino}"
        if self.home == home:
            return
        if self.home is not None:
            self.store_id = uuid.uuid4().hex
        self.home = home
        self.save(folder)

    def add_host(self, folder: str | os.PathLike[str], store: ShardedStore) -> str:
        """Add the next host to an open store and record it; returns its name."""
        name = f"h{len(self.hosts):03d}"
        store.add_host(self.client(folder, name))
        self.hosts.append(name)
        self.save(folder)
        return name
