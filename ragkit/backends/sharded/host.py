"""A host: a group of partition replicas that answers the router's calls.

The same ``PartitionHost`` runs in-process (``LocalHost``), inside a Ray actor (``RayHost``)
or in front of a Chroma server. It answers one call per query for all the partitions the
router chose on it: both legs, merged over those partitions, with the records of the top
candidates packed as plain tuples (cheap to pickle). Calls arrive in batches (``run``), so a
busy router sends one message per host for several concurrent queries.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ragkit._rowids import RowScores
from ragkit.backends.base import EMBEDDER_SETTING, Changes, ReplicaShard, WriteAck, WriteBatch
from ragkit.errors import RagkitError
from ragkit.filters import Filter
from ragkit.fusion import Fused, by_score_then_id, fuse_calibrated
from ragkit.request import SearchRequest
from ragkit.schema import Leg, LexicalStats, Record, ShardAnswer


class PartitionNotHeldError(RagkitError):
    """The host holds no replica of that partition (any more): the router's placement moved
    on. Not a host failure: the router asks another replica."""


#: (id, text, metadata JSON, vector bytes or None): a record as it travels from a host
PackedRecord = tuple[str, str, str, bytes | None]


@dataclass(frozen=True, slots=True)
class HostSearch:
    """One query for one host: the request, the partitions to search on it, the corpus-wide
    BM25 statistics, how many candidates per leg to return and for how many of the best of
    each leg to send the records (a calibrated hybrid search without MMR sends those of its
    fused top ``k`` instead: see ``_record_ids``)."""

    request: SearchRequest
    partitions: tuple[int, ...]
    stats: LexicalStats | None
    depth: int
    record_depth: int


@dataclass(slots=True)
class HostLeg:
    """One leg merged over a host's partitions. ``exhausted``: the host has no further
    candidates, so a router never needs to ask it for more."""

    ids: list[str]
    scores: NDArray[np.float32]
    exhausted: bool
    ceiling: float | None = None
    extra: dict[str, float] = field(default_factory=dict)  # see Leg.extra


@dataclass(slots=True)
class HostAnswer:
    dense: HostLeg | None
    lexical: HostLeg | None
    records: list[PackedRecord]
    versions: dict[int, int]


@dataclass(frozen=True, slots=True)
class PartitionStats:
    """BM25 statistics of one partition at one version, for the query's terms."""

    version: int
    doc_count: int
    total_length: int
    doc_freqs: dict[str, int]


class ReplicaFactory(ABC):
    """Creates, finds and removes the partition replicas of one host."""

    @abstractmethod
    def open(self, partition: int, host: str) -> ReplicaShard: ...

    @abstractmethod
    def existing(self) -> list[int]:
        """Partitions stored here already (reopened when the host restarts)."""

    @abstractmethod
    def drop(self, partition: int) -> None:
        """Remove a closed replica's data."""


class CollectionReplicas(ReplicaFactory):
    """Partition replicas as collections of one engine instance (Chroma, Milvus, Qdrant):
    ``PREFIX<sep>p0003`` each, with its settings in ``PREFIX<sep>p0003<sep>ragkit`` and its
    lexical sidecar under ``sidecar_root/p0003`` (or in memory). Subclasses open a replica
    and list and drop the engine's collections."""

    separator: ClassVar[str]

    def __init__(
        self,
        client: Any,
        prefix: str = "ragkit",
        sidecar_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.client, self.prefix = client, prefix
        self.sidecar_root = None if sidecar_root is None else Path(sidecar_root)

    @abstractmethod
    def _collections(self) -> list[str]: ...

    @abstractmethod
    def _drop(self, collection: str) -> None: ...

    def _collection(self, partition: int) -> str:
        return f"{self.prefix}{self.separator}p{partition:04d}"

    def _sidecar(self, partition: int) -> Path | None:
        return None if self.sidecar_root is None else self.sidecar_root / f"p{partition:04d}"

    def existing(self) -> list[int]:
        pattern = re.compile(rf"{re.escape(self.prefix + self.separator)}p(\d{{4}})")
        return sorted(int(m.group(1)) for n in self._collections() if (m := pattern.fullmatch(n)))

    def drop(self, partition: int) -> None:
        name = self._collection(partition)
        for collection in (name, f"{name}{self.separator}ragkit"):
            with contextlib.suppress(Exception):  # already gone
                self._drop(collection)
        sidecar = self._sidecar(partition)
        if sidecar is not None:
            shutil.rmtree(sidecar, ignore_errors=True)


class LocalReplicas(ReplicaFactory):
    """Partition replicas as LocalShards: ``ROOT/p0003/`` each, or in memory (``root=None``)."""

    def __init__(self, root: str | os.PathLike[str] | None, **shard_args: Any) -> None:
        self.root = None if root is None else Path(root)
        self.shard_args = shard_args

    def _folder(self, partition: int) -> Path | None:
        return None if self.root is None else self.root / f"p{partition:04d}"

    def open(self, partition: int, host: str) -> ReplicaShard:
        from ragkit.backends.local import LocalShard

        folder = self._folder(partition)
        return LocalShard(folder, name=f"{host}/p{partition}", **self.shard_args)

    def existing(self) -> list[int]:
        if self.root is None or not self.root.exists():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir()]
        return sorted(int(n[1:]) for n in found if n.startswith("p") and n[1:].isdigit())

    def drop(self, partition: int) -> None:
        folder = self._folder(partition)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _merge_leg(parts: list[tuple[int, Leg]], depth: int) -> tuple[HostLeg, dict[str, int]]:
    """The best ``depth`` candidates over the partitions (score desc, then id); the scores of
    those cut off stay known (``extra``), for fusing candidates the other leg kept."""
    ids = [i for _, leg in parts for i in leg.ids]
    owner = {i: p for p, leg in parts for i in leg.ids}
    extras = [(p, _plain(leg.extra)) for p, leg in parts]
    for p, scored in extras:
        owner.update(dict.fromkeys(scored, p))
    scores = np.concatenate([leg.scores for _, leg in parts]) if parts else np.empty(0, np.float32)
    order = by_score_then_id(ids, scores)
    exhausted = len(ids) <= depth and all(len(leg.ids) < depth for _, leg in parts)
    extra: dict[str, float] = {}
    for _, scored in extras:
        extra.update(scored)
    cut = order[depth:].tolist()
    if cut:
        extra.update(zip([ids[i] for i in cut], scores[order[depth:]].tolist()))
    order = order[:depth]
    ceiling = next((leg.ceiling for _, leg in parts if leg.ceiling is not None), None)
    top = [ids[i] for i in order.tolist()]
    return HostLeg(top, scores[order].astype(np.float32), exhausted, ceiling, extra), owner


def _plain(scores: Mapping[str, float]) -> dict[str, float]:
    """``Leg.extra`` as a dict of its own (a ``RowScores`` read key by key is slow)."""
    return scores.as_dict() if isinstance(scores, RowScores) else dict(scores)


def _as_host_leg(leg: Leg, depth: int) -> HostLeg | None:
    """A partition's leg as ``_merge_leg`` would give it alone, when it already is in the
    merge's order (score descending, then id) and within ``depth``; else ``None``."""
    scores = leg.scores
    if len(scores) > depth:
        return None
    if len(scores) > 1:
        step = np.diff(scores)
        if bool((step > 0).any()):
            return None
        ids = leg.ids
        if any(ids[i] >= ids[i + 1] for i in np.flatnonzero(step == 0).tolist()):
            return None
    return HostLeg(
        list(leg.ids),
        np.asarray(scores, dtype=np.float32),
        len(scores) < depth,
        leg.ceiling,
        _plain(leg.extra),
    )


def _host_legs(
    query: HostSearch, request: SearchRequest, answers: list[tuple[int, ShardAnswer]]
) -> tuple[list[HostLeg | None], dict[str, int] | None]:
    """Each leg merged over the partitions, and the partition of each candidate. One
    partition's legs, already in the merge's order, are taken as they are (no owners:
    every candidate is that partition's)."""
    if len(answers) == 1:
        _, answer = answers[0]
        legs: list[HostLeg | None] = []
        for leg, ran in (
            (answer.dense, request.runs_dense),
            (answer.lexical, request.runs_lexical),
        ):
            if not ran:
                legs.append(None)
            elif leg is None or (host_leg := _as_host_leg(leg, query.depth)) is None:
                break
            else:
                legs.append(host_leg)
        else:
            return legs, None
    merged: list[HostLeg | None] = []
    owners: dict[str, int] = {}
    for ran, which in ((request.runs_dense, "dense"), (request.runs_lexical, "lexical")):
        if not ran:
            merged.append(None)
            continue
        parts = [(p, leg) for p, a in answers if (leg := getattr(a, which)) is not None]
        host_leg, owner = _merge_leg(parts, query.depth)
        merged.append(host_leg)
        owners.update(owner)
    return merged, owners


def _top(fused: Fused, k: int) -> Sequence[str]:
    """The ids of a ranking's top ``k`` and of any tied with the k-th."""
    if len(fused.ids) <= k:
        return fused.ids
    return fused.ids[: int(np.count_nonzero(fused.scores >= fused.scores[k - 1]))]


def _record_ids(query: HostSearch, legs: list[HostLeg | None]) -> list[str]:
    """The candidates whose records go with the answer.

    A calibrated hybrid search (without MMR) scores a record from its two raw leg scores,
    the lexical one on the corpus-wide statistics, so its fused score here is the one the
    router gives it. The host sends the records of its own fused top ``k`` (and ties), or
    of each partition's where the shard ranks its candidates itself
    (``ShardAnswer.ranked``, see ``PartitionHost.call_search``). A record of the global
    top ``k`` is left out only when a record beyond the global candidate depth of both legs
    outscores it here; the router then fetches it by id. Other fusions rescale each leg
    over all hosts' candidates, so they get the records of the top ``record_depth`` of each
    leg, and the router fetches the rare hit beyond them by id.
    """
    request = query.request
    dense, lexical = legs
    if request.fills_legs and request.mmr is None and dense is not None and lexical is not None:
        fused = fuse_calibrated(
            [
                Leg(dense.ids, dense.scores, ceiling=dense.ceiling, extra=dense.extra),
                Leg(lexical.ids, lexical.scores, ceiling=lexical.ceiling, extra=lexical.extra),
            ],
            [request.alpha, 1.0 - request.alpha],
        )
        if len(fused.ids) <= request.k:
            return list(fused.ids)
        cut = fused.scores[request.k - 1]
        return [rid for rid, score in zip(fused.ids, fused.scores.tolist()) if score >= cut]
    wanted: dict[str, None] = {}
    for leg in legs:
        if leg is not None:
            wanted.update(dict.fromkeys(leg.ids[: query.record_depth]))
    return list(wanted)


class PartitionHost:
    """The partition replicas of one host and the calls the router makes on them."""

    def __init__(self, name: str, replicas: ReplicaFactory) -> None:
        self.name = name
        self.factory = replicas
        self.incarnation = uuid.uuid4().hex  # changes when the host process restarts
        self.calls: Counter[str] = Counter()
        self.busy_s = 0.0  # CPU time spent answering calls
        self._lock = threading.Lock()
        self._shards: dict[int, ReplicaShard] = {
            p: replicas.open(p, name) for p in replicas.existing()
        }

    # ---- the batched entry point ---------------------------------------------------------

    def run(self, batch: Sequence[tuple[str, tuple[Any, ...]]]) -> list[tuple[bool, Any]]:
        """Run several calls; each answer is ``(True, result)`` or ``(False, exception)``, so
        one failing call does not fail the others."""
        out: list[tuple[bool, Any]] = []
        started = time.thread_time()
        for method, args in batch:
            self.calls[method] += 1
            try:
                out.append((True, getattr(self, f"call_{method}")(*args)))
            except Exception as exc:
                out.append((False, exc))
        self.busy_s += time.thread_time() - started
        return out

    def run_pickled(self, payload: bytes) -> bytes:
        """``run`` for a message pickled by the caller (the Ray transport: handing Ray one
        ``bytes`` object instead of nested dataclasses saves about 0.5 ms of cloudpickle per
        call on each side, measured on 2 cores)."""
        return pickle.dumps(self.run(pickle.loads(payload)), protocol=pickle.HIGHEST_PROTOCOL)

    def _shard(self, partition: int) -> ReplicaShard:
        shard = self._shards.get(partition)
        if shard is None:
            raise PartitionNotHeldError(
                f"host {self.name} holds no replica of partition {partition}"
            )
        return shard

    # ---- partitions ----------------------------------------------------------------------

    def call_open(self, partitions: Sequence[int]) -> dict[int, int]:
        """Make sure replicas of these partitions exist here; returns their versions."""
        with self._lock:
            for p in partitions:
                if p not in self._shards:
                    self._shards[p] = self.factory.open(p, self.name)
            return {p: self._shards[p].version for p in partitions}

    def call_drop(self, partitions: Sequence[int]) -> None:
        with self._lock:
            for p in partitions:
                shard = self._shards.pop(p, None)
                if shard is not None:
                    shard.close()
                    self.factory.drop(p)

    def call_versions(self) -> dict[str, Any]:
        return {
            "incarnation": self.incarnation,
            "versions": {p: s.version for p, s in self._shards.items()},
        }

    # ---- search --------------------------------------------------------------------------

    def call_search(self, query: HostSearch) -> HostAnswer:
        request = query.request.with_depth(query.depth)
        k = query.request.k  # ``request`` asks each leg for ``depth``
        answers: list[tuple[int, ShardAnswer]] = []
        versions = {}
        for p in query.partitions:
            shard = self._shard(p)
            versions[p] = shard.version
            answers.append((p, shard.search(request, stats=query.stats)))
        legs, owners = _host_legs(query, request, answers)
        tenant, vectors = request.tenant, request.mmr is not None
        records: list[PackedRecord] = []
        if all(answer.ranked is not None for _, answer in answers):
            # A calibrated hybrid search: each partition ranked its own candidates.
            for p, answer in answers:
                assert answer.ranked is not None
                wanted = _top(answer.ranked, k)
                records += self._shards[p].packed(wanted, tenant=tenant, vectors=vectors)
        elif owners is None:  # one partition
            wanted = _record_ids(query, legs)
            records = self._shards[answers[0][0]].packed(wanted, tenant=tenant, vectors=vectors)
        else:
            records = self._pack(owners, _record_ids(query, legs), tenant, vectors)
        return HostAnswer(legs[0], legs[1], records, versions)

    def _pack(
        self, owners: dict[str, int], ids: list[str], tenant: str | None, vectors: bool
    ) -> list[PackedRecord]:
        by_partition: dict[int, list[str]] = {}
        for rid in ids:
            by_partition.setdefault(owners[rid], []).append(rid)
        packed: list[PackedRecord] = []
        for p, part_ids in by_partition.items():
            packed.extend(self._shards[p].packed(part_ids, tenant=tenant, vectors=vectors))
        return packed

    def call_stats(
        self, partitions: Sequence[int], terms: Sequence[str], tenant: str | None
    ) -> dict[int, PartitionStats]:
        out = {}
        for p in partitions:
            shard = self._shard(p)
            version = shard.version
            stats = shard.lexical_stats(terms, tenant=tenant)
            out[p] = PartitionStats(
                version, stats.doc_count, stats.total_length, dict(stats.doc_freqs)
            )
        return out

    # ---- reads by id ---------------------------------------------------------------------

    def call_get(
        self, wanted: dict[int, list[str]], tenant: str | None, vectors: bool
    ) -> list[Record]:
        out: list[Record] = []
        for p, ids in wanted.items():
            out.extend(self._shard(p).get(ids, tenant=tenant, include_vectors=vectors))
        return out

    def call_count(
        self, partitions: Sequence[int], flt: Filter | None, tenant: str | None
    ) -> dict[int, int]:
        return {p: self._shard(p).count(filter=flt, tenant=tenant) for p in partitions}

    def call_ids(
        self, partitions: Sequence[int], flt: Filter | None, tenant: str | None
    ) -> dict[int, list[str]]:
        return {p: self._shard(p).ids(filter=flt, tenant=tenant) for p in partitions}

    def call_tenants(self, partitions: Sequence[int]) -> list[str | None]:
        found: dict[str | None, None] = {}
        for p in partitions:
            found.update(dict.fromkeys(self._shard(p).tenants()))
        return list(found)

    # ---- writes and replication ----------------------------------------------------------

    def call_write(
        self, writes: Sequence[tuple[int, WriteBatch, int | None]]
    ) -> dict[int, WriteAck | Exception]:
        """Writes to several partitions (``version=None``: this replica is the primary and
        orders the write). A failure of one partition does not stop the others."""
        out: dict[int, WriteAck | Exception] = {}
        for p, batch, version in writes:
            try:
                out[p] = self._shard(p).write(batch, version=version)
            except Exception as exc:
                out[p] = exc
        return out

    def call_changes(self, partition: int, since: int, limit: int) -> Changes:
        shard = self._shard(partition)
        changes = shard.changes_since(since, limit=limit)
        if changes.full:
            changes.settings = _user_settings(shard)
        return changes

    def call_apply_changes(self, partition: int, changes: Changes) -> int:
        shard = self._shard(partition)
        for key, value in changes.settings.items():
            shard.write_setting(key, value)
        return shard.apply_changes(changes)

    # ---- settings, status, lifecycle -----------------------------------------------------

    def call_read_setting(self, key: str) -> str | None:
        for p in sorted(self._shards):
            value = self._shards[p].read_setting(key)
            if value is not None:
                return value
        return None

    def call_write_setting(self, key: str, value: str) -> None:
        for shard in self._shards.values():
            shard.write_setting(key, value)

    def call_dim(self) -> int | None:
        return next((s.dim for s in self._shards.values() if s.dim is not None), None)

    def call_status(self) -> dict[str, Any]:
        return {
            "incarnation": self.incarnation,
            "pid": os.getpid(),
            "node": _ray_node(),
            "calls": dict(self.calls),
            "busy_s": self.busy_s,
            "partitions": {
                p: {"version": s.version, "records": s.count(), "tenants": len(s.tenants())}
                for p, s in sorted(self._shards.items())
            },
        }

    def call_backup(self, partition: int, dest: str) -> dict[str, Any]:
        """A crash-consistent copy of this host's replica of ``partition`` at ``dest``."""
        shard = self._shards.get(partition)
        if shard is None:
            raise PartitionNotHeldError(f"host {self.name} holds no replica of {partition}")
        return shard.backup(dest)

    def call_optimize(self) -> int:
        return sum(shard.optimize() for shard in self._shards.values())

    def call_checkpoint(self) -> None:
        for shard in self._shards.values():
            shard.checkpoint()

    def call_close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()


def _ray_node() -> str | None:
    """The Ray node this host runs on (``None`` outside Ray)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


def _user_settings(shard: ReplicaShard) -> dict[str, str]:
    value = shard.read_setting(EMBEDDER_SETTING)
    return {} if value is None else {EMBEDDER_SETTING: value}
