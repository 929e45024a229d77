"""Hosts that fail on purpose, for the sharded-store tests: real LocalHosts (real LocalShards,
real threads) whose calls can be made to raise like a dead peer or hang like a stuck one."""

from __future__ import annotations

import threading
from typing import Any

from ragkit.backends.sharded import LocalHost
from ragkit.backends.sharded.dispatch import Batch, Sent
from ragkit.backends.sharded.host import PartitionHost


class _StuckablePartitions(PartitionHost):
    def __init__(self, *args: Any, release: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stuck = False
        self.release = release

    def run(self, batch: Any) -> Any:
        if self.stuck:
            self.release.wait()  # a host that stopped answering: its threads are stuck here
        return super().run(batch)


class FaultyHost(LocalHost):
    """``down``: every call fails at once (a dead peer). ``stuck``: calls never return until
    ``unstick()`` (a hung peer holding its threads)."""

    def __init__(self, name: str, path: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, path, **kwargs)
        self.down = False
        self._release = threading.Event()
        self.host = _StuckablePartitions(name, self.host.factory, release=self._release)

    @property
    def stuck(self) -> bool:
        return isinstance(self.host, _StuckablePartitions) and self.host.stuck

    def hang(self) -> None:
        assert isinstance(self.host, _StuckablePartitions)
        self._release.clear()
        self.host.stuck = True

    def unstick(self) -> None:
        assert isinstance(self.host, _StuckablePartitions)
        self.host.stuck = False
        self._release.set()

    def _send(self, batch: Batch, context: Any) -> Sent:
        if self.down:
            raise ConnectionError(f"host {self.name} is down")
        return super()._send(batch, context)


def faulty_hosts(n: int, root: Any = None) -> list[FaultyHost]:
    return [FaultyHost(f"h{i}", None if root is None else str(root / f"h{i}")) for i in range(n)]
