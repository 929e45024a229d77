"""Placement: which shards hold a record (its replica set), from a hash of its routing key.

Both schemes move only the records whose owner changes when a shard is added (about 1/N):

- ``rendezvous`` (highest random weight): every shard scores the key; the R highest scores
  win. Any shard can be added or removed.
- ``jump`` (Lamping & Veach's jump consistent hash): O(log N) with no per-shard work; shards
  are numbered, so they can only be added or removed at the end. Replicas are the next R - 1
  shards after the primary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from enum import StrEnum

from ragkit.errors import InvalidInputError


class Placement(StrEnum):
    RENDEZVOUS = "rendezvous"
    JUMP = "jump"


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def rendezvous(key: str, shards: Sequence[str], replicas: int) -> list[str]:
    scored = sorted(shards, key=lambda name: (_hash64(f"{name}\x00{key}"), name), reverse=True)
    return scored[:replicas]


def jump_bucket(key: int, buckets: int) -> int:
    """Lamping & Veach (2014): the bucket of ``key`` among ``buckets``."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def jump(key: str, shards: Sequence[str], replicas: int) -> list[str]:
    first = jump_bucket(_hash64(key), len(shards))
    return [shards[(first + i) % len(shards)] for i in range(replicas)]


_SCHEMES: dict[Placement, Callable[[str, Sequence[str], int], list[str]]] = {
    Placement.RENDEZVOUS: rendezvous,
    Placement.JUMP: jump,
}


def placement_function(name: str | Placement) -> Callable[[str, Sequence[str], int], list[str]]:
    try:
        return _SCHEMES[Placement(name)]
    except ValueError:
        accepted = ", ".join(p.value for p in Placement)
        raise InvalidInputError(
            f"placement={name!r} is not supported; accepted: {accepted}"
        ) from None
