"""Writes through the router: primary-backup replication, catch-up, moving partitions.

A write to a partition goes to its primary (the first in-sync replica in placement order),
which gives it the partition's next version and applies it; the router then forwards it, with
that version, to the other in-sync replicas, and the write is acknowledged once
``write_quorum`` copies (the primary included) hold it. A replica that misses a forward leaves
the in-sync set (persisted) and never serves or leads until it has caught up from an in-sync
replica: incrementally from its version (tombstones carry the deletes, so nothing deleted comes
back), or with a full copy when its history cannot be trusted (it was a primary whose write
outcome is unknown, or its version could not be checked). The last catch-up step runs under
the partition's write lock, so no write slips between it and the replica rejoining.

Three rules keep the copies of a partition identical when failures and writers race:
- a catch-up only ever fills a replica that is out of sync (two writes short of their quorum
  may both decide to copy one; the second finds it in sync and leaves it alone), and only
  from a source still in sync when it finishes;
- a forward counts as a copy only if the replica applied it at the primary's version: one
  that skips it as already applied holds a different history and is copied afresh;
- a partition with no in-sync replica gets one replica promoted, under its locks: two can
  reach one version by different writes, so the others catch up from it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any

from ragkit.backends.base import ReplicaGapError, WriteAck, WriteBatch
from ragkit.backends.sharded._gather import Gatherer
from ragkit.backends.sharded._stats import StatsCache
from ragkit.backends.sharded._table import PartitionTable
from ragkit.backends.sharded.dispatch import HostClient
from ragkit.errors import InvalidInputError, QuorumError, ShardUnavailableError

log = logging.getLogger(__name__)

CHANGES_BATCH = 5000


@dataclass(eq=False)
class Replicator:
    """Orders each partition's writes on its primary, forwards them to the in-sync replicas
    and catches lagging replicas up."""

    clients: Mapping[str, HostClient]
    table: PartitionTable
    gatherer: Gatherer
    stats: StatsCache
    write_quorum: int
    deadline_s: float
    locks: list[threading.Lock] = field(init=False)
    # One catch-up per partition at a time: a full copy starts by wiping its target, so
    # two copies into one replica must never interleave.
    recovering: list[threading.Lock] = field(init=False)

    def __post_init__(self) -> None:
        self.locks = [threading.Lock() for _ in range(self.table.partitions)]
        self.recovering = [threading.Lock() for _ in range(self.table.partitions)]

    # ---- writes --------------------------------------------------------------------------

    def write(self, batches: Mapping[int, WriteBatch]) -> dict[int, WriteAck]:
        """Apply each partition's batch on its primary and forward it to the in-sync
        replicas; raises ``QuorumError`` naming the partitions with too few copies.

        A partition with fewer in-sync copies than the quorum (a crash left some behind)
        first catches up the lagging replicas it can reach, so a write that a quorum of live
        hosts can take is never refused."""
        self.restore_quorum(batches)
        with contextlib.ExitStack() as held:
            for p in sorted(batches):
                held.enter_context(self.locks[p])
            deadline = time.monotonic() + self.deadline_s
            acks, primaries, problems = self._primaries(batches, deadline)
            copies = self._forward(batches, acks, primaries, deadline)
        short = {p: n for p, n in copies.items() if n < self.write_quorum}
        for p in batches:
            if p not in acks:
                short[p] = 0
        if short:
            detail = "; ".join(
                f"partition {p}: {n} cop{'y' if n == 1 else 'ies'}"
                + (f" ({problems[p]})" if p in problems else "")
                for p, n in sorted(short.items())
            )
            raise QuorumError(
                f"writes to {len(short)} partition(s) were acknowledged by fewer than "
                f"write_quorum={self.write_quorum} replicas: {detail}. Copies that did take "
                "the write keep it, and lagging replicas catch up before they serve."
            )
        return acks

    def _primaries(
        self, batches: Mapping[int, WriteBatch], deadline: float
    ) -> tuple[dict[int, WriteAck], dict[int, str], dict[int, str]]:
        acks: dict[int, WriteAck] = {}
        primaries: dict[int, str] = {}
        problems: dict[int, str] = {}
        tried: dict[int, set[str]] = {p: set() for p in batches}
        pending = set(batches)
        while pending and time.monotonic() < deadline:
            by_host: dict[str, list[int]] = {}
            for p in sorted(pending):
                state = self.table.states[p]
                order = [h for h in state.replicas if h in state.in_sync and h not in tried[p]]
                healthy = [h for h in order if self.gatherer.usable(h)]
                candidates = healthy or order
                if not candidates:
                    problems.setdefault(p, "no in-sync replica could take the write")
                    pending.discard(p)
                    continue
                by_host.setdefault(candidates[0], []).append(p)
            calls = {
                self.clients[h].submit("write", [(p, batches[p], None) for p in ps]): (h, ps)
                for h, ps in by_host.items()
            }
            answers = self._wait(calls, deadline)
            for future, (host, ps) in calls.items():
                result = answers.get(future)
                for p in ps:
                    outcome = result.get(p) if isinstance(result, dict) else result
                    if isinstance(outcome, WriteAck):
                        acks[p], primaries[p] = outcome, host
                        self.table.states[p].version = max(
                            self.table.states[p].version, outcome.version
                        )
                        self.stats.moved(p, outcome.version)
                        pending.discard(p)
                    elif isinstance(outcome, InvalidInputError) and not isinstance(
                        outcome, ReplicaGapError
                    ):
                        raise outcome  # bad input fails the same way on every replica
                    else:
                        # The primary may or may not have applied it: it leaves the in-sync
                        # set and comes back only through a full copy.
                        tried[p].add(host)
                        problems[p] = f"primary {host}: {_why(outcome)}"
                        self._drop(p, host, full=True)
        return acks, primaries, problems

    def _forward(
        self,
        batches: Mapping[int, WriteBatch],
        acks: Mapping[int, WriteAck],
        primaries: Mapping[int, str],
        deadline: float,
    ) -> dict[int, int]:
        copies = dict.fromkeys(acks, 1)
        by_host: dict[str, list[tuple[int, WriteBatch, int | None]]] = {}
        for p, ack in acks.items():
            if not ack.changed:
                copies[p] = self.table.replicas  # nothing changed: every copy agrees
                continue
            batch = batches[p]
            forward = WriteBatch(batch.upserts, ack.deleted or None, None, batch.tenant)
            state = self.table.states[p]
            for host in state.replicas:
                if host != primaries[p] and host in state.in_sync:
                    by_host.setdefault(host, []).append((p, forward, ack.version))
        calls = {self.clients[h].submit("write", ws): (h, ws) for h, ws in by_host.items()}
        answers = self._wait(calls, deadline)
        for future, (host, ws) in calls.items():
            result = answers.get(future)
            for p, _, version in ws:
                outcome = result.get(p) if isinstance(result, dict) else result
                if isinstance(outcome, WriteAck) and outcome.changed and outcome.version == version:
                    copies[p] += 1
                elif isinstance(outcome, WriteAck):
                    # It holds that version already, so its history is not the primary's
                    # (it skipped the write as a redelivery): it is no copy of this write.
                    log.warning(
                        "ragkit: replica %s of partition %d was at version %d when forwarded "
                        "version %s; it is copied afresh",
                        host,
                        p,
                        outcome.version,
                        version,
                    )
                    self._drop(p, host, full=True)
                else:
                    self._drop(p, host, full=False)
        return copies

    def _wait(self, calls: Mapping[Future[Any], Any], deadline: float) -> dict[Future[Any], Any]:
        wait(list(calls), timeout=max(0.0, deadline - time.monotonic()))
        out: dict[Future[Any], Any] = {}
        for future, (host, _) in calls.items():
            if not future.done():
                self.clients[host].abandon(future)
                self.gatherer.breakers[host].failed()
                out[future] = TimeoutError(f"host {host} did not answer within the deadline")
            elif (exc := future.exception()) is not None:
                self.gatherer.breakers[host].failed()
                out[future] = exc
            else:
                self.gatherer.breakers[host].succeeded()
                out[future] = future.result()
        return out

    def _drop(self, partition: int, host: str, *, full: bool) -> None:
        self.table.mark(partition, host, False, full_copy=full)

    # ---- catch-up ------------------------------------------------------------------------

    def restore_quorum(self, partitions: Iterable[int]) -> None:
        """Catch up, now, reachable lagging replicas of the partitions that have fewer
        in-sync copies than the write quorum (waiting for a catch-up the healer has under
        way); one that cannot be caught up is left to the write to report."""
        short = [p for p in partitions if len(self.table.states[p].in_sync) < self.write_quorum]
        if not short:
            return
        if any(not self.table.states[p].in_sync for p in short):
            self.promote(self.deadline_s)
        for p in short:
            state = self.table.states[p]
            for host in list(state.replicas):
                if len(state.in_sync) >= self.write_quorum:
                    break
                if host in state.in_sync or not self.gatherer.usable(host):
                    continue
                source = self.table.primary(p, self.gatherer.usable)
                if source is None:
                    break
                try:
                    self.catch_up(p, source, host, full=host in state.needs_copy)
                except Exception as exc:  # the write reports what is still short
                    log.debug("ragkit: replica %s of partition %d not caught up: %s", host, p, exc)

    def promote(self, timeout_s: float) -> list[int]:
        """Partitions left with no in-sync replica (every copy failed a write, or timed out
        under load) get a most up-to-date replica promoted once every copy answers
        (the one holding the last acknowledged write may be the one still missing), so
        they take writes and serve again; returns the partitions promoted."""
        empty = [p for p, state in enumerate(self.table.states) if not state.in_sync]
        if not empty:
            return []
        placed: dict[str, list[int]] = {}
        for p in empty:
            for host in self.table.states[p].replicas:
                placed.setdefault(host, []).append(p)
        calls = {self.clients[h].submit("open", ps): (h, ps) for h, ps in placed.items()}
        answers = self._wait(calls, time.monotonic() + timeout_s)
        versions: dict[str, dict[int, int]] = {}
        for future, (host, _) in calls.items():
            result = answers.get(future)
            if isinstance(result, dict):
                versions[host] = {int(p): int(v) for p, v in result.items()}
        return self._promote_best(versions)

    def _promote_best(self, versions: Mapping[str, Mapping[int, int]]) -> list[int]:
        """Promote one most up-to-date replica of each partition with none in sync.

        One, not every replica at the top version: two replicas can reach one version by
        different writes (each led a write whose outcome was unknown), so the others catch
        up from the one promoted (a no-op when they agree). Under the partition's locks, and
        never while a copy into one of its replicas is under way."""
        promoted = []
        for p, state in enumerate(self.table.states):
            if state.in_sync:
                continue
            reachable = {h: versions[h][p] for h in state.replicas if p in versions.get(h, {})}
            if len(reachable) < len(state.replicas):
                continue  # the copy holding the last acknowledged write may be the missing one
            if not self.recovering[p].acquire(blocking=False):
                continue  # a copy is filling one of them: its version means nothing yet
            try:
                with self.locks[p]:
                    if state.in_sync:
                        continue  # another thread promoted meanwhile
                    best = max(reachable.values())
                    trusted = [h for h in state.replicas if h not in state.needs_copy]
                    top = [h for h in trusted + state.replicas if reachable[h] == best]
                    self.table.mark(p, top[0], True)
                    promoted.append(p)
            finally:
                self.recovering[p].release()
        return promoted

    def heal(self) -> list[tuple[int, str]]:
        """Bring every reachable out-of-sync replica back in sync; returns those healed."""
        self.promote(self.deadline_s)
        healed = []
        for p, host in self.table.out_of_sync():
            if not self.gatherer.usable(host):
                continue
            source = self.table.primary(p, self.gatherer.usable)
            if source is None or source == host:
                continue
            if not self.recovering[p].acquire(blocking=False):
                continue  # a copy of this partition is already under way
            try:
                full = host in self.table.states[p].needs_copy
                self._copy(p, source, host, full=full, then=None)
            except Exception as exc:  # still down or failing: try again later
                log.debug("ragkit: replica %s of partition %d not healed yet: %s", host, p, exc)
                continue
            finally:
                self.recovering[p].release()
            healed.append((p, host))
        return healed

    def catch_up(
        self,
        partition: int,
        source: str,
        target: str,
        *,
        full: bool = False,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Copy what ``target`` lacks of ``partition`` from ``source``, then mark it in sync
        (and run ``then``) under the partition's write lock."""
        with self.recovering[partition]:
            self._copy(partition, source, target, full=full, then=then)

    def _copy(
        self,
        partition: int,
        source: str,
        target: str,
        *,
        full: bool,
        then: Callable[[], None] | None,
    ) -> None:
        state = self.table.states[partition]
        if target in state.in_sync:
            # Caught up meanwhile (by the healer or another write's catch-up, which held
            # ``recovering``). Copying again would wipe or rewind a replica that serves and
            # takes forwards, and a write it led meanwhile would be lost on its peer.
            if then is not None:
                with self.locks[partition]:
                    then()
            return
        full = full or target in state.needs_copy
        timeout = self.deadline_s * 10
        src, dst = self.clients[source], self.clients[target]
        version = 0 if full else int(dst.call("open", [partition], timeout=timeout)[partition])
        if full:
            dst.call("open", [partition], timeout=timeout)

        def step(since: int) -> tuple[int, bool]:
            changes = src.call("changes", partition, since, CHANGES_BATCH, timeout=timeout)
            return int(dst.call("apply_changes", partition, changes, timeout=timeout)), (
                changes.complete
            )

        done = False
        while not done:  # the bulk, while writes go on
            version, done = step(version)
        with self.locks[partition]:
            if source not in state.in_sync:  # it left (a failed write): another may lead now
                raise ShardUnavailableError(
                    f"replica {source} of partition {partition} left the in-sync set while "
                    f"{target} copied from it; the copy is retried from an in-sync replica"
                )
            done = False
            while not done:  # what was written meanwhile
                version, done = step(version)
            self.table.states[partition].version = max(
                self.table.states[partition].version, version
            )
            self.table.mark(partition, target, True)
            if then is not None:
                then()

    def open_all(self, timeout_s: float) -> None:
        """Open every placed replica (creating new ones) and check the in-sync sets: an
        in-sync replica behind the others (a write reached the primary just before a crash)
        catches up; one that cannot be asked comes back only through a full copy."""
        placed: dict[str, list[int]] = {}
        for p, state in enumerate(self.table.states):
            for host in state.replicas:
                placed.setdefault(host, []).append(p)
        calls = {self.clients[h].submit("open", ps): (h, ps) for h, ps in placed.items()}
        answers = self._wait(calls, time.monotonic() + timeout_s)
        versions: dict[str, dict[int, int]] = {}
        for future, (host, _) in calls.items():
            result = answers[future]
            if isinstance(result, dict):
                versions[host] = {int(p): int(v) for p, v in result.items()}
        self._promote_best(versions)
        for p, state in enumerate(self.table.states):
            known = {h: versions[h][p] for h in state.in_sync if h in versions}
            top = max(known.values(), default=0)
            state.version = top
            for host in state.replicas:
                if host not in versions:
                    self._drop(p, host, full=True)
                elif host in state.in_sync and known[host] < top:
                    self._drop(p, host, full=False)


def _why(outcome: object) -> str:
    if isinstance(outcome, BaseException):
        return f"{type(outcome).__name__}: {outcome}"
    return "no answer"
