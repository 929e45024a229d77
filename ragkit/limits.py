"""What ragkit accepts. Input beyond these limits is an ``InvalidInputError`` naming the value,
raised before anything is embedded or written, so a rejected call changes nothing.

Every store checks its input against a ``Limits`` (``HybridStore(limits=...)``, and each
backend's ``limits=``); the defaults suit most applications and each one can be raised or
lowered. Integers are the exception: above 2**53 a float64 cannot hold every integer, so
equality and range filters would compare them inexactly on one backend and exactly on another;
``max_int`` may be lowered but not raised past 2**53 (store larger numbers as strings).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ragkit.errors import InvalidInputError

EXACT_INT = 2**53


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on everything a caller sends (all counts and lengths inclusive)."""

    #: characters of a record's text
    max_text_chars: int = 1_000_000
    #: characters of a query
    max_query_chars: int = 10_000
    #: characters of a record id
    max_id_chars: int = 512
    #: characters of a tenant name
    max_tenant_chars: int = 256
    #: bytes of a record's metadata as JSON
    max_metadata_bytes: int = 65_536
    #: keys in a record's metadata, nested dicts included
    max_metadata_keys: int = 256
    #: nesting of dicts and lists in metadata
    max_metadata_depth: int = 16
    #: largest magnitude of an integer in metadata or a filter (at most 2**53)
    max_int: int = EXACT_INT
    #: nesting of $and / $or / $not in a filter
    max_filter_depth: int = 32
    #: conditions in a filter, each value of an $in / $nin list counted
    max_filter_conditions: int = 1_000
    #: records in one write call
    max_batch: int = 100_000
    #: ``k`` and ``candidates`` of a search
    max_k: int = 10_000
    #: hosts of a sharded store (each one a process or a Ray actor)
    max_hosts: int = 256
    #: partitions of a sharded store (each replica is a directory with its own SQLite file
    #: and indexes, opened by every process that opens the store)
    max_partitions: int = 4_096
    #: replicas of each partition
    max_replicas: int = 9

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(
                    f"Limits.{f.name} must be a positive integer, got {value!r}"
                )
        if self.max_int > EXACT_INT:
            raise InvalidInputError(
                f"Limits.max_int={self.max_int} is above 2**53: larger integers cannot be "
                "compared exactly as numbers; store them as strings"
            )


DEFAULT_LIMITS = Limits()
