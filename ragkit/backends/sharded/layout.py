"""A sharded store in one directory: ``shards.json`` names the shards and how records are
placed; each shard lives in a subdirectory. ``HybridStore(path)`` opens such a directory as a
ShardedStore, so the CLI and applications need no other configuration."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragkit.backends.base import Shard
from ragkit.backends.sharded.router import ShardedStore
from ragkit.errors import InvalidInputError, StoreError

LAYOUT_FILE = "shards.json"


@dataclass
class ShardLayout:
    shards: list[str]
    replicas: int = 1
    write_quorum: int | None = None
    placement: str = "rendezvous"
    route_by: Literal["id", "tenant"] = "id"
    hosting: Literal["local", "ray"] = "local"
    router: dict[str, Any] = field(default_factory=dict)  # extra ShardedStore arguments

    @staticmethod
    def exists(folder: str | os.PathLike[str]) -> bool:
        return (Path(folder) / LAYOUT_FILE).exists()

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        n_shards: int,
        *,
        replicas: int = 1,
        placement: str = "rendezvous",
        hosting: Literal["local", "ray"] = "local",
    ) -> ShardLayout:
        folder = Path(folder)
        if (folder / LAYOUT_FILE).exists() or (folder / "records.sqlite3").exists():
            raise StoreError(f"{folder} already holds a store")
        if n_shards < 1 or not 1 <= replicas <= n_shards:
            raise InvalidInputError(f"need 1 <= replicas ({replicas}) <= shards ({n_shards})")
        if hosting not in ("local", "ray"):
            raise InvalidInputError(f"hosting must be 'local' or 'ray', got {hosting!r}")
        layout = cls(
            [f"shard-{i:03d}" for i in range(n_shards)], replicas, None, placement, "id", hosting
        )
        folder.mkdir(parents=True, exist_ok=True)
        layout.save(folder)
        return layout

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> ShardLayout:
        try:
            return cls(**json.loads((Path(folder) / LAYOUT_FILE).read_text()))
        except (OSError, TypeError, ValueError) as exc:
            raise StoreError(f"cannot read {Path(folder) / LAYOUT_FILE}: {exc}") from None

    def save(self, folder: str | os.PathLike[str]) -> None:
        tmp = Path(folder) / (LAYOUT_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(Path(folder) / LAYOUT_FILE)

    def make_shard(self, folder: Path, name: str) -> Shard:
        if self.hosting == "ray":
            from ragkit.backends.sharded.ray import RayShard

            return RayShard(folder / name, name=name)
        from ragkit.backends.local import LocalShard

        return LocalShard(folder / name, name=name)

    def open(self, folder: str | os.PathLike[str]) -> ShardedStore:
        folder = Path(folder)
        return ShardedStore(
            [self.make_shard(folder, name) for name in self.shards],
            replicas=self.replicas,
            write_quorum=self.write_quorum,
            placement=self.placement,
            route_by=self.route_by,
            name=str(folder),
            **self.router,
        )
