"""ShardedStore: a router over shards, answering exactly like one shard holding everything.

Placement hashes each record's routing key (its id, or its tenant) to a replica set of
``replicas`` shards. Searches fan out to every shard, each leg is merged across shards by raw
score (duplicates from replicas removed), and the HybridStore fuses once. BM25 runs with
global statistics gathered from all shards, so scores equal a single shard's.

Completeness: every record lives on ``replicas`` shards, so a search is complete as long as
fewer than ``replicas`` shards are missing; otherwise it is partial (``partial="allow"``:
``SearchResult.partial`` and ``missing_shards``) or an error (``partial="fail"``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from ragkit.analysis import Analyzer
from ragkit.backends.base import Shard
from ragkit.backends.sharded._fanout import FanOut, FanOutResult
from ragkit.backends.sharded.placement import placement_function
from ragkit.errors import InvalidInputError, QuorumError, ShardUnavailableError
from ragkit.filters import Filter
from ragkit.schema import Candidate, Candidates, LexicalStats, Record

T = TypeVar("T")
_ID_BATCH = 2000


@dataclass(frozen=True, slots=True)
class MoveReport:
    """What ``add_shard`` did: records looked at and records whose replica set changed."""

    records: int
    moved: int

    @property
    def moved_fraction(self) -> float:
        return self.moved / self.records if self.records else 0.0


class ShardedStore(Shard):
    """Shards records over any ``Shard`` implementations, with replicas and failover.

    Key init args:
        shards: the shards (each with a unique ``name``).
        replicas: copies of each record (on distinct shards).
        write_quorum: replicas that must acknowledge a write (default: a majority).
        placement: ``"rendezvous"`` or ``"jump"``.
        route_by: ``"id"`` (default) or ``"tenant"`` (all of a tenant's records on one
            replica set, so its searches touch only those shards).
        deadline_s: bound on every fan-out; nothing ever waits longer.
        partial: ``"allow"`` (answer with what arrived, flagged) or ``"fail"``.
        hedge_after_s: with replicas, stop waiting for the slowest shards after this delay
            once the shards that answered already cover every record.
        retries, breaker_threshold, breaker_reset_s: transient-error retries (tenacity) and
            the per-shard circuit breaker.

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            from ragkit.backends import LocalShard, ShardedStore
            shards = [LocalShard(f"./kb/shard-{i}", name=f"s{i}") for i in range(4)]
            store = HybridStore(backend=ShardedStore(shards, replicas=2))
    """

    def __init__(
        self,
        shards: Sequence[Shard],
        *,
        replicas: int = 1,
        write_quorum: int | None = None,
        placement: str = "rendezvous",
        route_by: Literal["id", "tenant"] = "id",
        deadline_s: float = 10.0,
        partial: Literal["allow", "fail"] = "allow",
        hedge_after_s: float | None = None,
        retries: int = 2,
        breaker_threshold: int = 3,
        breaker_reset_s: float = 5.0,
        name: str = "sharded",
    ) -> None:
        names = [s.name for s in shards]
        if not shards or len(set(names)) != len(names):
            raise InvalidInputError(f"shards need unique names, got {names}")
        if not 1 <= replicas <= len(shards):
            raise InvalidInputError(f"replicas must be 1..{len(shards)}, got {replicas}")
        quorum = replicas // 2 + 1 if write_quorum is None else write_quorum
        if not 1 <= quorum <= replicas:
            raise InvalidInputError(f"write_quorum must be 1..{replicas}, got {write_quorum}")
        if partial not in ("allow", "fail"):
            raise InvalidInputError(f"partial must be 'allow' or 'fail', got {partial!r}")
        if route_by not in ("id", "tenant"):
            raise InvalidInputError(f"route_by must be 'id' or 'tenant', got {route_by!r}")
        self.name = name
        self.replicas = replicas
        self.write_quorum = quorum
        self.placement = placement
        self._place = placement_function(placement)
        self.route_by = route_by
        self.partial = partial
        self.hedge_after_s = hedge_after_s
        self._shards: dict[str, Shard] = dict(zip(names, shards))
        self._placed: list[str] = list(names)  # the shards placement hashes over
        self._writes = threading.RLock()  # held by writers; resharding holds it throughout
        self._analyzer = Analyzer()
        self._fanout = FanOut(
            deadline_s=deadline_s,
            retries=retries,
            breaker_threshold=breaker_threshold,
            breaker_reset_s=breaker_reset_s,
            max_workers=max(4, 2 * len(shards)),
        )

    # ---- placement -----------------------------------------------------------------------

    @property
    def shards(self) -> dict[str, Shard]:
        return dict(self._shards)

    def owners(self, record_id: str, tenant: str | None = None) -> list[str]:
        """The replica set of a record, primary first."""
        key = (tenant or "") if self.route_by == "tenant" else record_id
        return self._place(key, self._placed, self.replicas)

    def _run(self, names: Sequence[str], call: Callable[[Shard], T], **kwargs: Any) -> FanOutResult:
        return self._fanout.run([(n, self._shards[n]) for n in names], call, **kwargs)

    def _search_targets(self, tenant: str | None) -> list[str]:
        if self.route_by == "tenant":
            return self.owners("", tenant)
        return list(self._shards)

    def _coverage(self, targets: Sequence[str], out: FanOutResult) -> tuple[str, ...]:
        """Shards whose absence leaves records unanswered (empty when the answer is whole)."""
        missing = [n for n in targets if n not in out.results]
        whole = (
            len(missing) < self.replicas if self.route_by == "id" else len(missing) < len(targets)
        )
        if whole:
            return ()
        if self.partial == "fail":
            reasons = "; ".join(f"{n}: {out.failed.get(n, 'no answer')}" for n in missing)
            raise ShardUnavailableError(f"shards did not answer: {reasons}")
        return tuple(missing)

    def _enough(self, targets: Sequence[str]) -> int:
        return len(targets) - self.replicas + 1 if self.route_by == "id" else 1

    # ---- writes --------------------------------------------------------------------------

    def upsert(self, records: Sequence[Record]) -> None:
        """Write each record to its replica set; raises ``QuorumError`` when a record got
        fewer than ``write_quorum`` acknowledgements (those that did ack stay written)."""
        if not records:
            return
        with self._writes:
            groups: dict[str, list[Record]] = {}
            owners = {}
            for record in records:
                owners[record.id] = self.owners(record.id, record.tenant)
                for name in owners[record.id]:
                    groups.setdefault(name, []).append(record)
            out = self._fanout.run(
                [(n, self._shards[n]) for n in groups],
                lambda shard: shard.upsert(groups[shard.name]),
            )
            short = [
                rid
                for rid, names in owners.items()
                if sum(n in out.results for n in names) < self.write_quorum
            ]
            if short:
                raise QuorumError(
                    f"{len(short)} of {len(records)} records (e.g. {short[0]!r}) were acknowledged "
                    f"by fewer than {self.write_quorum} replicas; failed shards: {out.failed}"
                )

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        with self._writes:
            wanted = self.delete_targets(ids, filter, tenant)
            existing = [r.id for r in self.get(wanted)]
            if not existing:
                return 0
            records = {r.id: r for r in self.get(existing)}
            groups: dict[str, list[str]] = {}
            for rid in existing:
                for name in self.owners(rid, records[rid].tenant):
                    groups.setdefault(name, []).append(rid)
            out = self._run(list(groups), lambda shard: shard.delete(groups[shard.name]))
            if out.failed:
                raise QuorumError(f"delete did not reach every replica: {out.failed}")
            return len(existing)

    # ---- reads by id ---------------------------------------------------------------------

    def get(self, ids: Sequence[str], *, include_vectors: bool = False) -> list[Record]:
        """Records by id from one replica each, failing over to the next replica."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Record] = {}
        candidates = {rid: self._placed_owners_any_tenant(rid) for rid in wanted}
        attempts = self.replicas if self.route_by == "id" else len(self._placed)
        for attempt in range(attempts):
            groups: dict[str, list[str]] = {}
            for rid, names in candidates.items():
                if rid not in found and attempt < len(names):
                    groups.setdefault(names[attempt], []).append(rid)
            if not groups:
                break
            # Hedged read: a replica slower than hedge_after_s is not waited for; the next
            # replica is asked instead (the last replica gets the full deadline).
            hedge = self.hedge_after_s if attempt < attempts - 1 else None
            out = self._run(
                list(groups),
                lambda shard, groups=groups: shard.get(  # type: ignore[misc]
                    groups[shard.name], include_vectors=include_vectors
                ),
                deadline_s=hedge,
                timeouts_are_failures=hedge is None,
            )
            for name, records in out.results.items():
                for record in records:
                    found[record.id] = record
                for rid in groups[name]:
                    candidates[rid] = []  # answered: absent means absent, no failover
        return [found[rid] for rid in wanted if rid in found]

    def _placed_owners_any_tenant(self, record_id: str) -> list[str]:
        if self.route_by == "id":
            return self.owners(record_id)
        return list(self._placed)  # the tenant is unknown from an id: ask each shard in turn

    def tenants(self) -> list[str | None]:
        out = self._run(list(self._shards), lambda shard: shard.tenants())
        return list(dict.fromkeys(t for name in self._shards for t in out.results.get(name, [])))

    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        targets = self._search_targets(tenant)
        out = self._run(targets, lambda shard: shard.ids(filter=filter, tenant=tenant))
        self._coverage(targets, out)
        return list(dict.fromkeys(i for n in targets for i in out.results.get(n, [])))

    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        return len(self.ids(filter=filter, tenant=tenant))

    # ---- search --------------------------------------------------------------------------

    @staticmethod
    def _merge(parts: Sequence[Sequence[Candidate]], k: int) -> list[Candidate]:
        best: dict[str, float] = {}
        for part in parts:
            for cand in part:
                if cand.id not in best or cand.score > best[cand.id]:
                    best[cand.id] = cand.score
        merged = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [Candidate(rid, score) for rid, score in merged]

    def search_dense_batch(
        self,
        vectors: NDArray[np.float32],
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> list[list[Candidate]]:
        targets = self._search_targets(tenant)
        out = self._run(
            targets,
            lambda shard: shard.search_dense_batch(vectors, k, filter=filter, tenant=tenant),
            enough=self._enough(targets),
            hedge_after_s=self.hedge_after_s,
        )
        missing = self._coverage(targets, out)
        merged: list[list[Candidate]] = []
        for i in range(len(vectors)):
            leg = Candidates(self._merge([r[i] for r in out.results.values()], k))
            leg.missing_shards = missing
            merged.append(leg)
        return merged

    def analyze(self, text: str) -> list[str]:
        return self._analyzer.tokens(text)

    def lexical_stats(self, terms: Sequence[str]) -> LexicalStats:
        """Statistics of the distinct records: every record is counted on each of its
        replicas, so the shards' sums are divided by the replica count."""
        out = self._run(list(self._shards), lambda shard: shard.lexical_stats(terms))
        total = LexicalStats.combine(list(out.results.values()))
        r = self.replicas if self.route_by == "id" else 1
        return LexicalStats(
            round(total.doc_count / r),
            round(total.total_length / r),
            {t: round(df / r) for t, df in total.doc_freqs.items()},
        )

    def search_lexical(
        self,
        text: str,
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
        stats: LexicalStats | None = None,
    ) -> list[Candidate]:
        if stats is None:
            stats = self.lexical_stats(self.analyze(text))
        targets = self._search_targets(tenant)
        out = self._run(
            targets,
            lambda shard: shard.search_lexical(text, k, filter=filter, tenant=tenant, stats=stats),
            enough=self._enough(targets),
            hedge_after_s=self.hedge_after_s,
        )
        leg = Candidates(self._merge(list(out.results.values()), k))
        leg.missing_shards = self._coverage(targets, out)
        return leg

    # ---- settings, status, lifecycle ------------------------------------------------------

    @property
    def dim(self) -> int | None:
        for shard in self._shards.values():
            try:
                dim = shard.dim
            except Exception:  # a dead shard does not decide the dimension
                continue
            if dim is not None:
                return dim
        return None

    def read_setting(self, key: str) -> str | None:
        out = self._run(list(self._shards), lambda shard: shard.read_setting(key))
        return next((v for n in self._shards if (v := out.results.get(n)) is not None), None)

    def write_setting(self, key: str, value: str) -> None:
        out = self._run(list(self._shards), lambda shard: shard.write_setting(key, value))
        if out.failed:
            raise ShardUnavailableError(f"setting {key!r} not written everywhere: {out.failed}")

    def status(self, *, replica_lag: bool = False) -> list[dict[str, Any]]:
        """Per shard: records (all tenants), health, breaker state, errors and retries.

        With ``replica_lag``, also how many records placement assigns to the shard that it
        does not hold (a full scan of every shard's ids: an operations check, not a hot path).
        """

        def held(shard: Shard) -> dict[str | None, list[str]]:
            return {t: shard.ids(tenant=t) for t in shard.tenants()}

        out = self._run(list(self._shards), held, deadline_s=min(self._fanout.deadline_s, 30.0))
        lag: dict[str, int] = dict.fromkeys(self._shards, 0)
        if replica_lag:
            present = {n: {i for ids in r.values() for i in ids} for n, r in out.results.items()}
            everything = {(t, i) for r in out.results.values() for t, ids in r.items() for i in ids}
            for tenant, rid in everything:
                for name in self.owners(rid, tenant):
                    if name in present and rid not in present[name]:
                        lag[name] += 1
        rows = []
        for name in self._shards:
            breaker = self._fanout.breaker(name)
            held_ids = out.results.get(name)
            row: dict[str, Any] = {
                "shard": name,
                "records": None if held_ids is None else sum(map(len, held_ids.values())),
                "health": "ok" if name in out.results else out.failed.get(name, "unknown"),
                "breaker": breaker.state,
                "errors": breaker.errors,
                "retries": breaker.retries,
                "placed": name in self._placed,
            }
            if replica_lag:
                row["replica_lag"] = lag[name] if name in out.results else None
            rows.append(row)
        return rows

    def add_shard(self, shard: Shard) -> MoveReport:
        """Add a shard online: copy the records it now owns, switch placement, then remove
        them from shards that no longer own them. Searches keep working throughout (copies
        are deduplicated); writes wait until the move is done."""
        if shard.name in self._shards:
            raise InvalidInputError(f"a shard named {shard.name!r} already exists")
        with self._writes:
            old = list(self._placed)
            new = [*old, shard.name]
            self._shards[shard.name] = shard
            seen: set[str] = set()
            moved: dict[str, tuple[list[str], list[str]]] = {}
            for tenant in self.tenants():
                for rid in self.ids(tenant=tenant):
                    if rid in seen:
                        continue
                    seen.add(rid)
                    key = (tenant or "") if self.route_by == "tenant" else rid
                    before = self._place(key, old, self.replicas)
                    after = self._place(key, new, self.replicas)
                    if set(before) != set(after):
                        moved[rid] = (before, after)
            moving = list(moved)
            for start in range(0, len(moving), _ID_BATCH):
                batch = self.get(moving[start : start + _ID_BATCH], include_vectors=True)
                groups: dict[str, list[Record]] = {}
                for record in batch:
                    before, after = moved[record.id]
                    for name in set(after) - set(before):
                        groups.setdefault(name, []).append(record)
                out = self._run(
                    list(groups),
                    lambda s, groups=groups: s.upsert(groups[s.name]),  # type: ignore[misc]
                )
                if out.failed:
                    raise ShardUnavailableError(f"resharding could not copy records: {out.failed}")
            self._placed = new
            drops: dict[str, list[str]] = {}
            for rid, (before, after) in moved.items():
                for name in set(before) - set(after):
                    drops.setdefault(name, []).append(rid)
            self._run(list(drops), lambda s: s.delete(drops[s.name]))
            return MoveReport(len(seen), len(moved))

    def close(self) -> None:
        self._fanout.close()
        for shard in self._shards.values():
            try:
                shard.close()
            except Exception:  # closing the rest matters more than one dead shard
                continue
