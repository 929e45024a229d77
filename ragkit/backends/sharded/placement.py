"""Placement: which partition holds a record, and which hosts hold a partition's replicas.

A sharded store has a fixed number of partitions chosen at creation. A record's partition is a
hash of its routing key (the tenant and id, or the tenant alone with ``route_by="tenant"``)
modulo the partition count, so it never changes.

A partition's replicas go to distinct hosts by rendezvous (highest random weight) hashing:
every host scores the partition and the best-scoring hosts win. Plain rendezvous hashing of a
few partitions over a few hosts is uneven (16 partitions over 8 hosts leaves some hosts with
one and others with five), and with one call per host per query the busiest host sets the
latency, so each host takes at most ``ceil(partitions * replicas / hosts)`` replicas: a
partition goes to its best-scoring hosts that still have room ("consistent hashing with
bounded loads", Mirrokni, Thorup and Zadimoghaddam 2018). Adding a host moves whole partitions,
mostly onto the new host.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from enum import StrEnum

from ragkit.errors import InvalidInputError
from ragkit.limits import DEFAULT_LIMITS, Limits


class RouteBy(StrEnum):
    """What decides a record's partition: its id (spread evenly) or its tenant (all of a
    tenant's records in one partition, so a tenant's searches touch one partition)."""

    ID = "id"
    TENANT = "tenant"


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def partition_of(
    record_id: str, tenant: str | None, partitions: int, route_by: RouteBy = RouteBy.ID
) -> int:
    """The partition of a record (of a tenant's records with ``route_by="tenant"``)."""
    owner = "" if tenant is None else tenant
    key = owner if route_by is RouteBy.TENANT else f"{owner}\x1f{record_id}"
    return _hash64(key) % partitions


def tenant_partition(tenant: str | None, partitions: int) -> int:
    return partition_of("", tenant, partitions, RouteBy.TENANT)


def place(
    partitions: int,
    hosts: Sequence[str],
    replicas: int,
    zones: Mapping[str, str] | None = None,
) -> list[list[str]]:
    """Each partition's replica hosts, best first (the first is the preferred primary).

    ``zones`` (host -> zone, such as the Ray node a host runs on): a partition's replicas go
    to hosts in different zones wherever one with room is left, so losing a zone (a node)
    leaves a copy of every partition while there are at least as many zones as replicas.
    """
    if len(set(hosts)) != len(hosts) or not hosts:
        raise InvalidInputError(f"hosts need unique names, got {list(hosts)}")
    if not 1 <= replicas <= len(hosts):
        raise InvalidInputError(f"replicas must be 1..{len(hosts)} (one per host), got {replicas}")
    capacity = math.ceil(partitions * replicas / len(hosts))
    load = dict.fromkeys(hosts, 0)
    zone = {h: (zones or {}).get(h, h) for h in hosts}
    table = []
    for p in range(partitions):
        ranked = sorted(hosts, key=lambda h: (_hash64(f"{h}\x00{p}"), h), reverse=True)
        chosen: list[str] = []
        for h in ranked:  # with room, in a zone this partition does not use yet
            used = {zone[c] for c in chosen}
            if len(chosen) < replicas and load[h] < capacity and zone[h] not in used:
                chosen.append(h)
        chosen += [h for h in ranked if h not in chosen and load[h] < capacity][
            : replicas - len(chosen)
        ]
        # The last partitions may find room on too few distinct hosts: exceed it by one.
        chosen += [h for h in ranked if h not in chosen][: replicas - len(chosen)]
        for h in chosen:
            load[h] += 1
        table.append(chosen)
    return table


def check_layout(
    partitions: object, replicas: object, n_hosts: int, limits: Limits = DEFAULT_LIMITS
) -> None:
    """Partitions, replicas and hosts are positive and within ``limits`` (``Limits.max_hosts``,
    ``max_partitions``, ``max_replicas``): a layout past them would create more directories and
    open more files than a store can use, so it is refused before anything is created."""
    if n_hosts > limits.max_hosts:
        raise InvalidInputError(
            f"hosts={n_hosts} is above the limit of {limits.max_hosts} (Limits.max_hosts)"
        )
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise InvalidInputError(f"partitions must be a positive integer, got {partitions!r}")
    if partitions > limits.max_partitions:
        raise InvalidInputError(
            f"partitions={partitions} is above the limit of {limits.max_partitions} "
            "(Limits.max_partitions; each partition replica is a directory with its own SQLite "
            "file and indexes)"
        )
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= n_hosts:
        raise InvalidInputError(
            f"replicas must be 1..{n_hosts} (replicas of a partition live on distinct hosts), "
            f"got {replicas!r}"
        )
    if replicas > limits.max_replicas:
        raise InvalidInputError(
            f"replicas={replicas} is above the limit of {limits.max_replicas} (Limits.max_replicas)"
        )
