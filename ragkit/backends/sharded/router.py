"""ShardedStore: partitions with replicas over hosts, answering exactly like one shard.

A record lives in one partition (a hash of its tenant and id, or of its tenant alone with
``route_by="tenant"``); each partition has ``replicas`` copies on distinct hosts. A search reads
one in-sync replica of each partition it touches, from as few hosts as possible, in one call per
host that answers both legs with the records of the best candidates; the router merges each
leg by raw score and the HybridStore fuses once. BM25 uses corpus-wide statistics summed over
exactly one replica of each partition and cached by partition version, so the steady state is
one round. See ``_writes.py`` for how writes are replicated and lagging replicas heal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragkit._validation import check_records, check_tenant, unique_ids
from ragkit.analysis import Analyzer
from ragkit.backends.base import Capabilities, Shard, WriteBatch, check_delete
from ragkit.backends.local._backup import (
    BACKUP_FILE,
    NOT_HOME,
    check_destination,
    publish,
    staging,
)
from ragkit.backends.sharded._gather import Gathered, Gatherer
from ragkit.backends.sharded._health import Breaker, Latencies
from ragkit.backends.sharded._records import PackedRecords
from ragkit.backends.sharded._stats import StatsCache
from ragkit.backends.sharded._table import PartitionTable
from ragkit.backends.sharded._writes import Replicator
from ragkit.backends.sharded.dispatch import HostClient, LocalHost
from ragkit.backends.sharded.host import HostAnswer, HostLeg, HostSearch
from ragkit.backends.sharded.placement import (
    RouteBy,
    check_layout,
    partition_of,
    place,
    tenant_partition,
)
from ragkit.errors import InvalidInputError, ShardUnavailableError, StoreError
from ragkit.filters import Filter
from ragkit.fusion import by_score_then_id
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.request import SearchRequest
from ragkit.schema import Leg, LexicalStats, Record, ShardAnswer
from ragkit.tracing import stage


@dataclass(frozen=True, slots=True)
class HostStatus:
    name: str
    health: str  # "ok", or why the host did not answer
    breaker: str
    errors: int
    messages: int
    calls: dict[str, int]
    incarnation: str | None


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    partition: int
    host: str
    primary: bool
    in_sync: bool
    needs_copy: bool
    version: int | None  # None when the host did not answer
    lag: int | None  # versions behind the partition's newest copy
    records: int | None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    partitions: int
    replicas: int
    route_by: str
    hosts: list[HostStatus]
    copies: list[ReplicaStatus]
    rounds: dict[str, int]

    @property
    def healthy(self) -> bool:
        return all(h.health == "ok" for h in self.hosts) and all(c.in_sync for c in self.copies)


@dataclass(frozen=True, slots=True)
class MoveReport:
    """What ``add_host`` did: partitions whose replica set changed, replicas copied."""

    partitions_moved: int
    replicas_copied: int
    replicas_dropped: int


@dataclass
class _Merge:
    answers: dict[tuple[int, ...], tuple[str, HostAnswer]] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


class ShardedStore(Shard):
    """Partitions with replicas over hosts; answers like one shard holding every record.

    Key init args:
        hosts: ``HostClient`` objects (``LocalHost``, ``RayHost``, a Chroma host) or a number
            of in-memory hosts.
        partitions: fixed at creation; more partitions than hosts lets hosts be added later.
        replicas: copies of each partition, on distinct hosts.
        write_quorum: copies (the primary included) that must hold a write before it is
            acknowledged (default: a majority).
        route_by: ``"id"`` (spread evenly) or ``"tenant"`` (a tenant's records in one
            partition, so its searches touch one host).
        deadline_s: bound on every operation; a search never takes longer.
        partial: ``"allow"`` (answer with what arrived, naming the missing partitions) or
            ``"fail"`` (raise ``ShardUnavailableError``).
        hedge_after_s: ask another replica when a host has not answered after this long
            (default: adaptive, four times the recent median latency).
        heal_interval_s: how often lagging replicas are caught up in the background; they
            are also caught up when the store opens, before its first write (``None``: only
            when ``heal()`` is called or a write would otherwise miss its quorum).
        state_path: a file keeping the in-sync replica sets across restarts.
        zones: host -> zone (the Ray node it runs on): a partition's replicas go to
            different zones where possible (see ``placement.place``).
        open_timeout_s: how long opening waits for the hosts to start.

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            from ragkit.backends import ShardedStore
            router = ShardedStore(4, partitions=16, replicas=2)     # 4 in-memory hosts
            store = HybridStore(backend=router)
    """

    capabilities = Capabilities(native_hybrid=False, global_stats=True)

    def __init__(
        self,
        hosts: Sequence[HostClient] | int = 4,
        *,
        partitions: int = 16,
        replicas: int = 1,
        write_quorum: int | None = None,
        route_by: str | RouteBy = RouteBy.ID,
        deadline_s: float = 10.0,
        partial: Literal["allow", "fail"] = "allow",
        hedge_after_s: float | None = None,
        breaker_threshold: int = 3,
        breaker_reset_s: float = 5.0,
        heal_interval_s: float | None = 1.0,
        state_path: str | None = None,
        open_timeout_s: float = 120.0,
        store_id: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        name: str = "sharded",
        zones: Mapping[str, str] | None = None,
    ) -> None:
        clients = (
            [LocalHost(f"h{i}") for i in range(hosts)] if isinstance(hosts, int) else list(hosts)
        )
        check_layout(partitions, replicas, len(clients), limits)
        quorum = replicas // 2 + 1 if write_quorum is None else write_quorum
        if isinstance(quorum, bool) or not isinstance(quorum, int) or not 1 <= quorum <= replicas:
            raise InvalidInputError(f"write_quorum must be 1..{replicas}, got {write_quorum!r}")
        if partial not in ("allow", "fail"):
            raise InvalidInputError(f"partial must be 'allow' or 'fail', got {partial!r}")
        try:
            self.route_by = RouteBy(route_by)
        except ValueError:
            raise InvalidInputError(
                f"route_by must be 'id' or 'tenant', got {route_by!r}"
            ) from None
        self.name = name
        self.limits = limits
        self._store_id = store_id or uuid.uuid4().hex
        #: the store.json of an on-disk store (set when its layout opens it)
        self.layout_file: Path | None = None
        self.partitions = partitions
        self.replicas = replicas
        self.deadline_s = deadline_s
        self.partial = partial
        self.clients: dict[str, HostClient] = {c.name: c for c in clients}
        self.table = PartitionTable(
            partitions, [c.name for c in clients], replicas, state_path=state_path, zones=zones
        )
        self.rounds: Counter[str] = Counter()
        self._breakers = {c: Breaker(breaker_threshold, breaker_reset_s) for c in self.clients}
        self._breaker_args = (breaker_threshold, breaker_reset_s)
        self._gatherer = Gatherer(
            self.clients,
            self.table,
            self._breakers,
            Latencies(),
            hedge_after_s=hedge_after_s,
            stall_s=deadline_s,
        )
        self._stats = StatsCache()
        self._writer = Replicator(
            self.clients,
            self.table,
            self._gatherer,
            self._stats,
            write_quorum=quorum,
            deadline_s=deadline_s,
        )
        self.write_quorum = quorum
        self._analyzer = Analyzer()
        self._dim: int | None = None
        self._closed = threading.Event()
        # Opening waits longer than a query would: new hosts (Ray actors) take a while to start.
        self._writer.open_all(max(deadline_s, open_timeout_s))
        # Replicas a crash left behind catch up before the store takes its first write (a
        # partition that cannot reach its quorum yet is retried by each write and the healer).
        # Without a healer (heal_interval_s=None) they wait for a write that needs them, or
        # for heal().
        if heal_interval_s is not None and self.table.out_of_sync():
            self._writer.heal()
        self._healer: threading.Thread | None = None
        if heal_interval_s is not None:
            self._healer = threading.Thread(
                target=self._heal_loop, args=(heal_interval_s,), daemon=True, name="ragkit-heal"
            )
            self._healer.start()

    # ---- placement -----------------------------------------------------------------------

    def partition(self, record_id: str, tenant: str | None = None) -> int:
        return partition_of(record_id, tenant, self.partitions, self.route_by)

    def _targets(self, tenant: str | None) -> list[int]:
        if self.route_by is RouteBy.TENANT:
            return [tenant_partition(tenant, self.partitions)]
        return list(range(self.partitions))

    def _deadline(self) -> float:
        return time.monotonic() + self.deadline_s

    def _require(self, got: Gathered, what: str) -> None:
        if got.missing:
            reasons = "; ".join(f"{h}: {why}" for h, why in sorted(got.failures.items()))
            raise ShardUnavailableError(
                f"{what}: no replica of partition(s) {got.missing} answered within "
                f"{self.deadline_s:g}s ({reasons or 'no in-sync replica'})"
            )

    # ---- writes --------------------------------------------------------------------------

    def upsert(self, records: Sequence[Record]) -> None:
        """Write each record to its partition's replicas; validated as a whole first, so a
        bad record never leaves half a batch written."""
        if not records:
            return
        check_records(records, self.dim, limits=self.limits)
        groups: dict[int, list[Record]] = {}
        for record in records:
            groups.setdefault(self.partition(record.id, record.tenant), []).append(record)
        with stage("replicate", **{"ragkit.partitions": len(groups)}):
            self._writer.write({p: WriteBatch(upserts=tuple(rs)) for p, rs in groups.items()})

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        check_delete(ids, filter)
        tenant = check_tenant(tenant)
        if ids is not None:
            groups: dict[int, list[str]] = {}
            for rid in unique_ids(ids):
                groups.setdefault(self.partition(rid, tenant), []).append(rid)
            batches = {
                p: WriteBatch(deletes=tuple(g), delete_filter=filter, tenant=tenant)
                for p, g in groups.items()
            }
        else:
            batches = {
                p: WriteBatch(delete_filter=filter, tenant=tenant) for p in self._targets(tenant)
            }
        acks = self._writer.write(batches)
        return sum(len(a.deleted) for a in acks.values())

    # ---- reads by id ---------------------------------------------------------------------

    def get(
        self, ids: Sequence[str], *, tenant: str | None = None, include_vectors: bool = False
    ) -> list[Record]:
        wanted = unique_ids(ids)
        tenant = check_tenant(tenant)
        groups: dict[int, list[str]] = {}
        for rid in wanted:
            groups.setdefault(self.partition(rid, tenant), []).append(rid)
        if not groups:
            return []
        got = self._gatherer.gather(
            sorted(groups),
            lambda c, ps: c.submit("get", {p: groups[p] for p in ps}, tenant, include_vectors),
            self._deadline(),
        )
        self._require(got, "get")
        found = {r.id: r for _, _, records in got.answers for r in records}
        return [found[i] for i in wanted if i in found]

    def _per_partition(self, method: str, tenant: str | None, *args: Any) -> dict[int, Any]:
        targets = self._targets(check_tenant(tenant))
        got = self._gatherer.gather(
            targets, lambda c, ps: c.submit(method, ps, *args), self._deadline()
        )
        self._require(got, method)
        return {p: v for _, _, result in got.answers for p, v in result.items()}

    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        return sum(self._per_partition("count", tenant, filter, tenant).values())

    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        found = self._per_partition("ids", tenant, filter, tenant)
        return [i for p in sorted(found) for i in found[p]]

    def tenants(self) -> list[str | None]:
        got = self._gatherer.gather(
            list(range(self.partitions)), lambda c, ps: c.submit("tenants", ps), self._deadline()
        )
        self._require(got, "tenants")
        return list(dict.fromkeys(t for _, _, found in got.answers for t in found))

    # ---- search --------------------------------------------------------------------------

    def analyze(self, text: str) -> list[str]:
        return self._analyzer.tokens(text)

    def lexical_stats(self, terms: Sequence[str], *, tenant: str | None = None) -> LexicalStats:
        tenant = check_tenant(tenant)
        unique = list(dict.fromkeys(terms))
        stats, missing = self._lexical_stats(
            self._targets(tenant), tenant, unique, self._deadline()
        )
        if missing:
            raise ShardUnavailableError(f"statistics of partition(s) {missing} unavailable")
        return stats

    def _lexical_stats(
        self, targets: list[int], tenant: str | None, terms: list[str], deadline: float
    ) -> tuple[LexicalStats, list[int]]:
        """The tenant's statistics over ``targets`` and the partitions whose statistics could
        not be read in time (half the time left: the search round needs the rest)."""
        need = self._stats.missing(targets, tenant, terms)
        missing: list[int] = []
        if need:
            self.rounds["stats"] += 1
            until = time.monotonic() + (deadline - time.monotonic()) / 2
            with stage("stats", **{"ragkit.partitions": len(need)}):
                got = self._gatherer.gather(
                    need, lambda c, ps: c.submit("stats", ps, terms, tenant), until
                )
            for _, _, found in got.answers:
                self._stats.update(found, tenant, terms)
            missing = got.missing
        return self._stats.combine(targets, tenant, terms), missing

    def search(self, request: SearchRequest, *, stats: LexicalStats | None = None) -> ShardAnswer:
        """One round in the steady state (see the module docstring); ``stats`` is ignored:
        the router computes the corpus-wide statistics itself."""
        request.require_query()
        targets = self._targets(request.tenant)
        deadline = self._deadline()
        terms: list[str] = []
        if request.runs_lexical and request.text is not None:
            terms = list(dict.fromkeys(self._analyzer.tokens(request.text)))
        merge = _Merge()
        global_stats = None
        for attempt in range(3):
            unscored: list[int] = []  # no statistics: never scored with partial ones
            if request.runs_lexical:
                global_stats, unscored = self._lexical_stats(
                    targets, request.tenant, terms, deadline
                )
            used = self._stats.versions(targets, request.tenant)
            reachable = [p for p in targets if p not in unscored]
            self.rounds["search"] += 1
            with stage("scatter", **{"ragkit.partitions": len(reachable)}) as span:
                got = self._gatherer.gather(
                    reachable,
                    lambda c, ps, s=global_stats: c.submit(  # type: ignore[misc]
                        "search", self._host_query(request, ps, len(targets), s)
                    ),
                    deadline,
                )
                span.set_attribute("ragkit.calls", got.calls)
                span.set_attribute("ragkit.hedged", got.hedged)
                span.set_attribute("ragkit.missing", len(got.missing) + len(unscored))
            self.rounds["hedged"] += got.hedged  # calls repeated on another replica
            missing = sorted({*got.missing, *unscored})
            merge = _Merge({tuple(ps): (h, a) for h, ps, a in got.answers}, missing)
            if not request.runs_lexical or not self._moved(merge, used) or attempt == 2:
                break
            self.rounds["stale_stats"] += 1  # written meanwhile: score with fresh statistics
        return self._answer(request, merge, len(targets), global_stats, deadline)

    def _host_query(
        self,
        request: SearchRequest,
        parts: Sequence[int],
        n_targets: int,
        stats: LexicalStats | None,
        *,
        whole: bool = False,
    ) -> HostSearch:
        """How much one host returns. The global top ``n`` of a leg spreads over the
        partitions, so a host holding a share ``s`` of them returns a safe margin over
        ``s * n`` (a host whose last candidate still makes the global top ``n`` is asked for
        the rest: rare). Records go with the fused top ``k`` of each partition for calibrated
        fusion (see ``host._record_ids``), else with the top of each leg only, since
        the final top ``k`` rarely reaches deeper (a hit without its record is fetched by id)."""
        n = request.depth
        share = len(parts) / n_targets
        depth = n if whole or share >= 1 else min(n, math.ceil(2 * n * share) + 8)
        if request.mmr is not None:
            record_depth = depth  # MMR re-ranks the whole pool: it needs every vector
        else:
            record_depth = min(depth, math.ceil(2 * request.k * share) + 4)
        return HostSearch(request, tuple(parts), stats, depth, record_depth)

    def _moved(self, merge: _Merge, used: dict[int, int]) -> bool:
        """Did a partition answer at another version than its statistics were read at?"""
        moved = False
        for _, answer in merge.answers.values():
            for p, version in answer.versions.items():
                if used.get(p) != version:
                    self._stats.moved(p, version)
                    moved = True
        return moved

    def _answer(
        self,
        request: SearchRequest,
        merge: _Merge,
        n_targets: int,
        stats: LexicalStats | None,
        deadline: float,
    ) -> ShardAnswer:
        n = request.depth
        legs = {"dense": request.runs_dense, "lexical": request.runs_lexical}
        merged: dict[str, Leg] = {}
        for _ in range(2):
            incomplete: set[tuple[int, ...]] = set()
            merged = {leg: _merge_leg(merge, leg, n, ()) for leg, ran in legs.items() if ran}
            for leg, top in merged.items():
                incomplete |= _cut_short(merge, leg, top, n)
            if not incomplete:
                break
            merged = {}
            self.rounds["deeper"] += 1
            parts = sorted(p for key in incomplete for p in key)
            got = self._gatherer.gather(
                parts,
                lambda c, ps: c.submit(
                    "search", self._host_query(request, ps, n_targets, stats, whole=True)
                ),
                deadline,
            )
            for key in incomplete:
                merge.answers.pop(key)
            merge.answers.update({tuple(ps): (h, a) for h, ps, a in got.answers})
            merge.missing = sorted(set(merge.missing) | set(got.missing))
        if merge.missing and self.partial == "fail":
            raise ShardUnavailableError(
                f"partition(s) {merge.missing} did not answer within {self.deadline_s:g}s"
            )
        missing = tuple(f"partition-{p}" for p in merge.missing)
        answer = ShardAnswer(
            records=PackedRecords(
                [r for _, a in merge.answers.values() for r in a.records],
                request.tenant,
                lambda ids, vectors: self._fetch_missing(ids, request.tenant, vectors),
            )
        )
        # The merges the completeness check made, unless a deeper round came after them.
        if legs["dense"]:
            top = merged["dense"] if "dense" in merged else _merge_leg(merge, "dense", n, ())
            answer.dense = dataclasses.replace(top, missing=missing)
        if legs["lexical"]:
            top = merged["lexical"] if "lexical" in merged else _merge_leg(merge, "lexical", n, ())
            answer.lexical = dataclasses.replace(top, missing=missing)
        return answer

    def _fetch_missing(self, ids: list[str], tenant: str | None, vectors: bool) -> list[Record]:
        self.rounds["hydrate"] += 1
        return self.get(ids, tenant=tenant, include_vectors=vectors)

    # ---- settings, status, healing, hosts -------------------------------------------------

    @property
    def store_id(self) -> str:
        return self._store_id

    @property
    def generation(self) -> int | None:
        """The partitions' versions as this router knows them (it orders every write in
        one process; part 2 reads them from the served cluster)."""
        return sum(state.version for state in self.table.states)

    @property
    def dim(self) -> int | None:
        if self._dim is None:
            for client in self.clients.values():
                try:
                    dim = client.call("dim", timeout=self.deadline_s)
                except Exception:  # a dead host does not decide the dimension
                    continue
                if dim is not None:
                    self._dim = int(dim)
                    break
        return self._dim

    def read_setting(self, key: str) -> str | None:
        for client in self.clients.values():
            try:
                value = client.call("read_setting", key, timeout=self.deadline_s)
            except Exception:
                continue
            if value is not None:
                return str(value)
        return None

    def write_setting(self, key: str, value: str) -> None:
        futures = {n: c.submit("write_setting", key, value) for n, c in self.clients.items()}
        failed = {}
        for name, future in futures.items():
            try:
                future.result(timeout=self.deadline_s)
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"
        if failed:
            raise ShardUnavailableError(f"setting {key!r} not written on every host: {failed}")

    def optimize(self) -> int:
        """Compact every partition replica on every host (one call per host)."""
        futures = {n: c.submit("optimize") for n, c in self.clients.items()}
        return sum(int(f.result(timeout=self.deadline_s * 60)) for f in futures.values())

    def heal(self) -> list[tuple[int, str]]:
        """Catch up every reachable lagging replica now; returns (partition, host) healed."""
        return self._writer.heal()

    def backup(self, dest: str | os.PathLike[str]) -> dict[str, Any]:
        """Back up an on-disk sharded store while writes go on: each partition from an
        in-sync replica, each crash-consistent on its own (a write spanning partitions may
        be in one partition's copy and not yet in another's), placed where every replica
        of the copy's layout expects it. The copy takes a new identity when opened."""
        if self.layout_file is None:
            raise StoreError(
                f"{self.name} is not an on-disk sharded store (no store.json): only a store "
                "made by 'ragkit shards init' can be backed up"
            )
        target = check_destination(dest)
        tmp = staging(target)
        try:
            parts = tmp / "parts"
            parts.mkdir()
            futures = {}
            for p in range(self.partitions):
                host = self.table.primary(p, self._gatherer.usable)
                if host is None:
                    raise ShardUnavailableError(f"backup: partition {p} has no in-sync replica")
                futures[p] = self.clients[host].submit("backup", p, str(parts / f"p{p:04d}"))
            infos = {p: f.result(timeout=self.deadline_s * 600) for p, f in futures.items()}
            for p, state in enumerate(self.table.states):
                for host in state.replicas:
                    folder = tmp / "hosts" / host / f"p{p:04d}"
                    folder.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copytree(parts / f"p{p:04d}", folder)
            shutil.rmtree(parts)
            layout = json.loads(self.layout_file.read_text())
            layout.update(home=NOT_HOME, served=None)
            (tmp / self.layout_file.name).write_text(json.dumps(layout, indent=2))
            info = {
                "kind": "ragkit.backup",
                "store_id": self.store_id,
                "partitions": {str(p): i for p, i in infos.items()},
                "records": sum(int(i["records"]) for i in infos.values()),
                "created_at": min(str(i["created_at"]) for i in infos.values()),
            }
            (tmp / BACKUP_FILE).write_text(json.dumps(info, indent=2))
            publish(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return info

    def _heal_loop(self, interval_s: float) -> None:
        while not self._closed.wait(interval_s):
            if self.table.out_of_sync():
                try:
                    self._writer.heal()
                except Exception:  # a failing heal is retried on the next tick
                    continue

    def stats(self) -> dict[str, Any]:
        """Per host and per replica: health, version, lag (``status``)."""
        return {"cluster": dataclasses.asdict(self.status())}

    def status(self) -> ClusterStatus:
        """Per host: health, breaker, calls; per replica: primary, in sync, version, lag."""
        futures = {n: c.submit("status") for n, c in self.clients.items()}
        answers: dict[str, dict[str, Any]] = {}
        hosts = []
        for name, future in futures.items():
            health = "ok"
            try:
                answers[name] = future.result(timeout=min(self.deadline_s, 30.0))
            except Exception as exc:
                health = f"{type(exc).__name__}: {exc}"
                self.clients[name].abandon(future)
            breaker = self._breakers[name]
            info = answers.get(name, {})
            hosts.append(
                HostStatus(
                    name,
                    health,
                    breaker.state,
                    breaker.errors,
                    self.clients[name].messages,
                    dict(info.get("calls", {})),
                    info.get("incarnation"),
                )
            )
        copies = []
        for p, state in enumerate(self.table.states):
            found = {h: answers[h]["partitions"].get(p) for h in state.replicas if h in answers}
            versions = [f["version"] for f in found.values() if f is not None]
            newest = max([state.version, *versions])
            primary = self.table.primary(p, self._gatherer.usable)
            for host in state.replicas:
                copy = found.get(host)
                copies.append(
                    ReplicaStatus(
                        p,
                        host,
                        host == primary,
                        host in state.in_sync,
                        host in state.needs_copy,
                        None if copy is None else copy["version"],
                        None if copy is None else newest - copy["version"],
                        None if copy is None else copy["records"],
                    )
                )
        return ClusterStatus(
            self.partitions, self.replicas, self.route_by.value, hosts, copies, dict(self.rounds)
        )

    def add_host(self, client: HostClient) -> MoveReport:
        """Add a host online: partitions that placement now gives it are copied to it and
        caught up, then it joins their replica sets, then hosts that lost a partition drop
        it. Searches and writes go on throughout (each partition switches under its lock)."""
        if client.name in self.clients:
            raise InvalidInputError(f"a host named {client.name!r} already exists")
        check_layout(self.partitions, self.replicas, len(self.clients) + 1, self.limits)
        hosts = [*self.table.hosts, client.name]
        new_table = place(self.partitions, hosts, self.replicas, self.table.zones)
        self.clients[client.name] = client
        self._breakers[client.name] = Breaker(*self._breaker_args)
        copied = dropped = moved = 0
        for p, new in enumerate(new_table):
            state = self.table.states[p]
            gained = [h for h in new if h not in state.replicas]
            lost = [h for h in state.replicas if h not in new]
            if not gained and not lost:
                continue
            moved += 1
            source = self.table.primary(p, self._gatherer.usable)
            if source is None:
                raise ShardUnavailableError(f"partition {p} has no in-sync replica to copy from")
            for host in gained:
                state.replicas.append(host)  # receives forwards only once in sync
                self.table.mark(p, host, False, full_copy=True)

                def switch(p: int = p, new: list[str] = new, lost: list[str] = lost) -> None:
                    if all(h in self.table.states[p].in_sync for h in new):
                        self.table.states[p].replicas = list(new)
                        for gone in lost:
                            self.table.states[p].in_sync.discard(gone)
                        self.table.epoch += 1

                self._writer.catch_up(p, source, host, full=True, then=switch)
                copied += 1
            for host in lost:
                self.clients[host].call("drop", [p], timeout=self.deadline_s * 10)
                dropped += 1
        self.table.hosts = hosts
        self.table.save()
        return MoveReport(moved, copied, dropped)

    def close(self) -> None:
        self._closed.set()
        if self._healer is not None:
            self._healer.join(timeout=5)
        for client in self.clients.values():
            with contextlib.suppress(Exception):  # closing the rest matters more than one host
                client.call("close", timeout=self.deadline_s)
            client.close()


def _cut_short(merge: _Merge, leg: str, merged: Leg, n: int) -> set[tuple[int, ...]]:
    """Hosts that may hold more of the global top ``n`` than they returned: asked for fewer
    than ``n``, not exhausted, and their last candidate still inside ``merged``, the merged
    top ``n``."""
    top = set(merged.ids)
    short = set()
    for key, (_, answer) in merge.answers.items():
        part: HostLeg | None = answer.dense if leg == "dense" else answer.lexical
        if part is None or part.exhausted or not part.ids or len(part.ids) >= n:
            continue
        if part.ids[-1] in top:
            short.add(key)
    return short


def _merge_leg(merge: _Merge, leg: str, n: int, missing: tuple[str, ...]) -> Leg:
    found = [a.dense if leg == "dense" else a.lexical for _, a in merge.answers.values()]
    parts = [p for p in found if p is not None]
    if not parts:
        return Leg.empty(missing)
    ids = [i for p in parts for i in p.ids]
    scores = np.concatenate([p.scores for p in parts]).astype(np.float32)
    order = by_score_then_id(ids, scores)
    extra: dict[str, float] = {}
    for part in parts:
        extra.update(part.extra)
    if len(order) > n:  # scores cut off here stay known, for the other leg's candidates
        extra.update(zip([ids[i] for i in order[n:].tolist()], scores[order[n:]].tolist()))
    order = order[:n]
    ceiling = next((p.ceiling for p in parts if p.ceiling is not None), None)
    return Leg([ids[i] for i in order.tolist()], scores[order], missing, ceiling, extra)
