"""The Shard protocol: the seam that makes backends pluggable (see docs/architecture.md).

A shard stores records (id, text, metadata, vector, tenant; the id unique within its tenant)
and answers ``upsert``, ``delete``, ``get``, ``count``, ``ids`` and one ``search(request)``
that runs both legs the request asks for and returns them with the records behind the
candidates. What a backend can do beyond that is declared in its type: ``capabilities``
(native hybrid fusion, global BM25 statistics) and, for shards that can be partition replicas,
the ``ReplicaShard`` base (versioned writes and catch-up). ``ragkit.testing.shard_contract`` is the
conformance suite every implementation runs.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from ragkit._async import in_thread
from ragkit._validation import check_tenant, unique_ids
from ragkit.errors import InvalidInputError, StoreError
from ragkit.filters import Filter
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.request import SearchRequest
from ragkit.schema import LexicalStats, Record, RecordSource, SearchResult, ShardAnswer

#: the setting under which a store records the embedder it was built with
EMBEDDER_SETTING = "embedder"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend does beyond the Shard protocol, declared by its type.

    ``native_hybrid``: ``search`` fuses both legs itself and returns its own ranking
    (``ShardAnswer.ranked`` with ``native``; Weaviate). ``global_stats``: ``search`` accepts
    corpus-wide BM25 statistics (a ``RoutableShard`` also reports its own), so a router can
    score every partition alike. ``calibrated``: the legs carry their ceilings
    (``Leg.ceiling``), so the calibrated fusion (the default) can put their scores on a fixed
    scale; a store on a backend without it defaults to relative-score fusion.
    ``fenced_writes``: ``write`` honours ``WriteBatch.fence`` atomically with the write.
    ``text_fields``: ``search`` honours ``SearchRequest.field_weights`` (BM25F over named
    text fields; a LocalShard built with ``text_fields``).
    """

    native_hybrid: bool = False
    global_stats: bool = True
    calibrated: bool = True
    fenced_writes: bool = False
    text_fields: bool = False


class Searcher(Protocol):
    """Runs whole searches: a request in, hits out. ``HybridStore`` runs every search through
    one: ``ragkit._pipeline.Pipeline`` over a backend's ``search``, unless the backend runs
    whole searches itself (``Shard.searcher``; a served cluster's client does)."""

    def run(self, request: SearchRequest) -> SearchResult: ...


class Shard(ABC):
    """What every backend implements. Filters arrive parsed (``ragkit.filters.parse_filter``).

    Tenants are namespaces, for ids too: every read and write addresses exactly one tenant
    (``None`` is the default tenant), and the same id in two tenants is two records.
    Implementations provide the synchronous methods; the async twins run them in a worker
    thread unless a backend overrides them with native async calls.
    """

    name: str
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: What the shard accepts in a write (a second line behind the store's own checks).
    limits: Limits = DEFAULT_LIMITS
    #: Opened to look only: every write is a ``StoreError``.
    read_only: bool = False

    @property
    @abstractmethod
    def dim(self) -> int | None: ...

    @property
    @abstractmethod
    def store_id(self) -> str:
        """A stable identity kept with the data (caches are keyed by it, not by a path)."""

    @property
    def generation(self) -> int | None:
        """A number every write to the store moves, whoever made it (cached results are
        keyed by it); ``None`` when the backend cannot know (then results are not cached)."""
        return None

    @property
    def state_key(self) -> str | None:
        """The store's identity and generation in one opaque string, what cached results are
        filed under: two stores (a copy included) or two states of one store never share
        it. ``None``: the backend cannot tell, so nothing is cached. Backends that can name
        a state more precisely than ``store_id`` and ``generation`` override it."""
        generation = self.generation
        return None if generation is None else f"{self.store_id}:{generation}"

    def stats(self) -> dict[str, Any]:
        """What this backend reports about itself in ``HybridStore.stats()`` beside the
        counts every backend has (a LocalShard: its index state and disk use; a sharded
        store: its hosts and replicas). Nothing by default."""
        return {}

    def backup(self, dest: str | os.PathLike[str]) -> dict[str, Any]:
        """Write a crash-consistent copy of the store to ``dest`` while writes go on (see
        ``LocalShard.backup``); returns what the backup's ``BACKUP.json`` records. Engines
        that keep their own data (Chroma, Weaviate) are backed up with their own tools."""
        raise StoreError(
            f"{type(self).__name__} stores are not backed up by ragkit; use the engine's own "
            "backup (ragkit backs up local and on-disk sharded stores)"
        )

    @abstractmethod
    def upsert(self, records: Sequence[Record]) -> None:
        """Insert or replace records (by tenant and id). Vectors are required."""

    @abstractmethod
    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        """Delete records of ``tenant`` by ids, by filter, or both (their intersection); returns
        how many were deleted. Neither ids nor a filter is an error, so a missing argument
        never wipes a store."""

    @abstractmethod
    def get(
        self, ids: Sequence[str], *, tenant: str | None = None, include_vectors: bool = False
    ) -> list[Record]:
        """Records of ``tenant`` by id, in the order asked; unknown ids are skipped."""

    @abstractmethod
    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int: ...

    @abstractmethod
    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        """Ids of the records of ``tenant`` passing ``filter``."""

    @abstractmethod
    def tenants(self) -> list[str | None]:
        """Every tenant that has (or had) records in this shard."""

    @abstractmethod
    def search(self, request: SearchRequest, *, stats: LexicalStats | None = None) -> ShardAnswer:
        """The one way to search a backend: the legs ``request`` asks for (pre-filtered,
        within its tenant), each ``request.depth`` candidates best first with raw scores
        (equal scores ordered by id), and the final ranking where the backend makes it
        (``ShardAnswer``). ``stats`` replaces the shard's own BM25 statistics (a router
        passes corpus-wide ones)."""

    def searcher(self) -> Searcher | None:
        """A backend that runs whole searches itself returns its ``Searcher``; ``None`` (the
        default): ``HybridStore`` runs ``ragkit._pipeline`` over ``search``."""
        return None

    @abstractmethod
    def read_setting(self, key: str) -> str | None: ...

    @abstractmethod
    def write_setting(self, key: str, value: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def packed(
        self, ids: Sequence[str], *, tenant: str | None = None, vectors: bool = False
    ) -> list[tuple[str, str, str, bytes | None]]:
        """Records as plain tuples (id, text, metadata JSON, vector bytes or None): how a
        host sends them to a router. Backends that store JSON can skip parsing it."""
        return [
            (
                r.id,
                r.text,
                json.dumps(r.metadata, ensure_ascii=False, separators=(",", ":")),
                None if r.vector is None else np.asarray(r.vector, np.float32).tobytes(),
            )
            for r in self.get(ids, tenant=tenant, include_vectors=vectors)
        ]

    def optimize(self) -> int:
        """Compact derived state (drop deleted records from the indexes); returns how many
        dead entries were dropped. Backends without any return 0."""
        return 0

    def checkpoint(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Persist derived state (indexes) now; backends without any do nothing."""

    def delete_targets(
        self, ids: Sequence[str] | None, filter: Filter | None, tenant: str | None
    ) -> list[str]:
        """The ids a ``delete(ids, filter=, tenant=)`` call means: the given ids, those of
        ``tenant`` passing ``filter``, or their intersection."""
        check_delete(ids, filter)
        check_tenant(tenant)
        wanted = unique_ids(ids) if ids is not None else None
        if filter is None:
            return wanted or []
        matching = set(self.ids(filter=filter, tenant=tenant))
        return [i for i in wanted if i in matching] if wanted is not None else sorted(matching)

    def present_targets(
        self, ids: Sequence[str] | None, filter: Filter | None, tenant: str | None
    ) -> list[str]:
        """The ``delete_targets`` that exist: what such a delete removes and counts."""
        targets = self.delete_targets(ids, filter, tenant)
        return [r.id for r in self.get(targets, tenant=tenant)]

    # Async twins: each blocking method above in a worker thread (``ragkit._async``).
    aupsert = in_thread(upsert)
    adelete = in_thread(delete)
    aget = in_thread(get)
    acount = in_thread(count)
    asearch = in_thread(search)

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardRecords(RecordSource):
    """The records behind an answer, read from the shard by id when the hits are built (only
    the few hits kept are ever read)."""

    def __init__(self, shard: Shard, tenant: str | None) -> None:
        self._shard = shard
        self._tenant = tenant

    def fetch(self, ids: Sequence[str], *, vectors: bool = False) -> dict[str, Record]:
        found = self._shard.get(ids, tenant=self._tenant, include_vectors=vectors)
        return {r.id: r for r in found}


def check_delete(ids: Sequence[str] | None, filter: Filter | None) -> None:
    if ids is None and filter is None:
        raise InvalidInputError("delete needs ids or a filter (neither was given)")


# ---- replication: what a shard needs to be a partition replica ---------------------------


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """Writes applied to one shard atomically: deletes of ``tenant``, then upserts.

    The deletes are the ids in ``deletes``, those passing ``delete_filter`` (resolved by the
    shard that orders the write), or their intersection when both are given.

    ``fence``: (key, position) pairs (positions are dash-separated integers, such as Redis
    stream ids); a shard with ``Capabilities.fenced_writes`` applies the batch only if the
    position it holds for every key is older, and stores the new ones in the same
    transaction; otherwise it raises ``StaleWriteError`` and writes nothing.
    """

    upserts: tuple[Record, ...] = ()
    deletes: tuple[str, ...] | None = None
    delete_filter: Filter | None = None
    tenant: str | None = None
    fence: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class WriteAck:
    """What a write did: the shard's version afterwards, the ids the deletes removed, and
    whether anything changed (a delete of absent ids changes nothing and keeps the version)."""

    version: int
    deleted: tuple[str, ...] = ()
    changed: bool = True


@dataclass(slots=True)
class Changes:
    """Everything a replica at version ``since`` needs to reach version ``upto``: the live
    records written after ``since`` (with the version that wrote each) and the tombstones of
    records deleted after it. ``full``: the receiver drops everything it holds first (a
    fresh copy, which also carries the store settings). ``latest`` is the source's version
    when the changes were read."""

    since: int
    upto: int
    latest: int
    records: list[Record] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    tombstones: list[tuple[str | None, str, int]] = field(default_factory=list)
    full: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    horizon: int = 0  # with ``full``: the source's oldest complete history (see ``horizon``)

    @property
    def complete(self) -> bool:
        return self.upto >= self.latest


class ReplicaGapError(InvalidInputError):
    """A replicated write arrived before the writes it follows: the replica must catch up."""

    def __init__(self, have: int, got: int) -> None:
        super().__init__(f"replica is at version {have}; write {got} leaves a gap")
        self.have = have
        self.got = got

    def __reduce__(self) -> tuple[type[ReplicaGapError], tuple[int, int]]:
        return ReplicaGapError, (self.have, self.got)  # crosses process boundaries (Ray)


class RoutableShard(Shard):
    """A shard a router can put behind its partitions: it analyzes text as the router does
    and reports its BM25 statistics, so every partition is scored on the same corpus-wide
    statistics."""

    @abstractmethod
    def analyze(self, text: str) -> list[str]:
        """The lexical terms of ``text`` (what ``lexical_stats`` is asked about)."""

    @abstractmethod
    def lexical_stats(self, terms: Sequence[str], *, tenant: str | None = None) -> LexicalStats:
        """BM25 statistics of ``tenant``'s records for ``terms``. Statistics are per tenant:
        one tenant's scores never depend on another tenant's documents."""


class ReplicaShard(RoutableShard):
    """A shard that can be a partition replica: every write gets the next version number,
    a replica applies the primary's versions in order, and a replica that fell behind
    catches up from ``changes_since`` (deletes are tombstones, so they never come back)."""

    @property
    @abstractmethod
    def version(self) -> int:
        """The version of the last write applied (0 for an empty shard)."""

    @property
    def horizon(self) -> int:
        """Changes after this version are complete (tombstones included); catching up from
        an older version needs a full copy."""
        return 0

    @abstractmethod
    def write(self, batch: WriteBatch, *, version: int | None = None) -> WriteAck:
        """Apply ``batch`` atomically. ``version=None``: this shard orders the write (it is
        the primary, or stands alone) and takes the next version. Otherwise the primary's
        version: already applied versions are ignored (at-least-once delivery is safe), a
        version past the next one raises ``ReplicaGapError``."""

    @abstractmethod
    def changes_since(self, version: int, *, limit: int = 5000) -> Changes:
        """Changes after ``version``, at most about ``limit`` records per call (call again
        from ``upto`` until ``complete``)."""

    @abstractmethod
    def apply_changes(self, changes: Changes) -> int:
        """Apply changes read from another replica atomically; returns the new version."""

    def upsert(self, records: Sequence[Record]) -> None:
        if records:
            self.write(WriteBatch(upserts=tuple(records)))

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        check_delete(ids, filter)
        wanted = None if ids is None else tuple(unique_ids(ids))
        batch = WriteBatch(deletes=wanted, delete_filter=filter, tenant=check_tenant(tenant))
        return len(self.write(batch).deleted)


def position_order(position: str) -> tuple[int, ...]:
    """A fence position as comparable numbers (``"1700000000000-3"`` -> ``(1700000000000, 3)``)."""
    try:
        return tuple(int(part) for part in position.split("-"))
    except ValueError:
        raise InvalidInputError(
            f"a fence position is dash-separated integers such as a Redis stream id, got "
            f"{position!r}"
        ) from None
