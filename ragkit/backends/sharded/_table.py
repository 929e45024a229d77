"""The partition table: each partition's replica hosts, which of them are in sync, and the
plan of one read (one in-sync replica per partition, from as few hosts as possible)."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.backends.sharded.placement import place


@dataclass
class PartitionState:
    replicas: list[str]  # hosts in placement order: the first in-sync one is the primary
    in_sync: set[str] = field(default_factory=set)
    needs_copy: set[str] = field(default_factory=set)  # out of sync with an untrusted history
    version: int = 0  # the highest version a primary acknowledged (as this router saw it)


class PartitionTable:
    """Replica sets and in-sync sets; persisted (``state_path``) so a router that restarts
    never lets a replica that missed writes serve or lead."""

    def __init__(
        self,
        partitions: int,
        hosts: Sequence[str],
        replicas: int,
        *,
        state_path: str | os.PathLike[str] | None = None,
        zones: Mapping[str, str] | None = None,
    ) -> None:
        self.partitions = partitions
        self.zones = dict(zones or {})
        self.replicas = replicas
        self.hosts = list(hosts)
        self._path = None if state_path is None else Path(state_path)
        self._lock = threading.Lock()
        self._rotation = itertools.count()
        in_sync, needs_copy = self._load()
        self.states = [
            PartitionState(
                list(reps), set(in_sync.get(p, reps)) & set(reps), set(needs_copy.get(p, []))
            )
            for p, reps in enumerate(place(partitions, self.hosts, replicas, self.zones))
        ]
        self.epoch = 0  # bumped whenever who may serve changes

    def _load(self) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
        if self._path is None or not self._path.exists():
            return {}, {}
        data = json.loads(self._path.read_text())
        return tuple(  # type: ignore[return-value]
            {int(p): list(hosts) for p, hosts in data.get(key, {}).items()}
            for key in ("in_sync", "needs_copy")
        )

    def save(self) -> None:
        if self._path is None:
            return
        data = {
            "in_sync": {str(p): sorted(s.in_sync) for p, s in enumerate(self.states)},
            "needs_copy": {
                str(p): sorted(s.needs_copy) for p, s in enumerate(self.states) if s.needs_copy
            },
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self._path)

    def mark(self, partition: int, host: str, in_sync: bool, *, full_copy: bool = False) -> None:
        """Put a replica in or out of the in-sync set; ``full_copy``: its history cannot be
        trusted, so it comes back only by copying the whole partition. (A partition left
        with no in-sync replica gets its most up-to-date reachable replica promoted by
        ``Replicator.promote``.)"""
        with self._lock:
            state = self.states[partition]
            before = (host in state.in_sync, host in state.needs_copy)
            if in_sync:
                state.in_sync.add(host)
                state.needs_copy.discard(host)
            else:
                state.in_sync.discard(host)
                if full_copy:
                    state.needs_copy.add(host)
            if before != (host in state.in_sync, host in state.needs_copy):
                self.epoch += 1
                self.save()

    def out_of_sync(self) -> list[tuple[int, str]]:
        return [(p, h) for p, s in enumerate(self.states) for h in s.replicas if h not in s.in_sync]

    def primary(self, partition: int, usable: Callable[[str], bool]) -> str | None:
        """The replica that orders the partition's writes: the first in-sync one in placement
        order that is usable; failing that, the first in-sync one at all."""
        state = self.states[partition]
        ordered = [h for h in state.replicas if h in state.in_sync]
        return next((h for h in ordered if usable(h)), ordered[0] if ordered else None)

    def plan(
        self,
        partitions: Iterable[int],
        usable: Callable[[str], bool],
        exclude: Iterable[str] = (),
    ) -> tuple[dict[str, list[int]], list[int]]:
        """One in-sync replica per partition, covering the partitions from as few hosts as
        possible (each host answers all of its partitions in one call); ties go round-robin
        so the replicas share the load. Returns the plan and the partitions with no usable
        in-sync replica outside ``exclude`` (a host whose circuit breaker is open is not
        usable: its partitions are reported missing at once instead of waiting for it)."""
        excluded = set(exclude)
        choices: dict[int, list[str]] = {}
        stranded = []
        for p in partitions:
            state = self.states[p]
            healthy = [
                h for h in state.replicas if h in state.in_sync and h not in excluded and usable(h)
            ]
            if healthy:
                choices[p] = healthy
            else:
                stranded.append(p)
        turn = next(self._rotation)
        rank = {h: (i + turn) % len(self.hosts) for i, h in enumerate(self.hosts)}
        plan: dict[str, list[int]] = {}
        remaining = set(choices)
        while remaining:
            cover: dict[str, list[int]] = {}
            for p in remaining:
                for h in choices[p]:
                    cover.setdefault(h, []).append(p)
            best = max(cover, key=lambda h: (len(cover[h]), rank.get(h, 0)))
            plan[best] = sorted(cover[best])
            remaining.difference_update(cover[best])
        return plan, stranded
