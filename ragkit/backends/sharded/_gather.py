"""One round of calls over the partitions a request touches, bounded by a deadline.

The plan sends one call to each chosen host, covering all of that host's partitions. A call
that fails is re-planned at once onto other in-sync replicas; a call still out after the hedge
delay is re-planned too, and whichever answer covers a partition first is used. When the
deadline passes, the partitions without an answer are reported missing; nothing waits longer.
Calls no longer needed are abandoned: dropped if they have not left, their answers ignored if
they have.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from ragkit.backends.sharded._health import Breaker, Latencies
from ragkit.backends.sharded._table import PartitionTable
from ragkit.backends.sharded.dispatch import HostClient
from ragkit.backends.sharded.host import PartitionNotHeldError
from ragkit.tracing import in_context, shard_error, span_context, start_span

Start = Callable[[HostClient, list[int]], "Future[Any]"]


@dataclass
class Gathered:
    """The accepted answers (host, partitions it answered for, result) and what is missing."""

    answers: list[tuple[str, list[int], Any]] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    hedged: int = 0


@dataclass
class _Out:
    host: str
    partitions: list[int]
    started: float
    span: Span
    hedged: bool = False


@dataclass(eq=False)
class Gatherer:
    """Sends one message per host for a set of partitions and gathers the answers by a
    deadline, hedging slow hosts and skipping those whose breaker is open."""

    clients: Mapping[str, HostClient]
    table: PartitionTable
    breakers: Mapping[str, Breaker]
    latencies: Latencies
    hedge_after_s: float | None  # None: adaptive, four times the recent median latency
    stall_s: float
    hedge_floor_s: float = 0.005

    def usable(self, host: str) -> bool:
        """Not cut off by its breaker, and not sitting on a message older than a deadline."""
        return self.breakers[host].allows() and not self.clients[host].stalled(self.stall_s)

    def gather(self, partitions: list[int], start: Start, deadline: float) -> Gathered:
        out = Gathered()
        calls: dict[Future[Any], _Out] = {}
        covered: dict[int, int] = {}  # partition -> index of the answer covering it
        failed: set[str] = set()
        slow: set[str] = set()
        # Hosts that no longer held a partition they were asked for: the placement moved on
        # while this search was planned. Asked again once, by the table as it is now (they
        # still hold their other partitions); only a second refusal excludes them.
        moved: set[str] = set()

        def launch(parts: list[int]) -> None:
            plan, stranded = self.table.plan(parts, self.usable, exclude=failed | slow)
            for host, host_parts in plan.items():
                span = start_span(
                    "host", **{"ragkit.host": host, "ragkit.partitions": len(host_parts)}
                )
                try:
                    with in_context(span_context(span)):  # in-process hosts trace below it
                        future = start(self.clients[host], host_parts)
                except Exception as exc:  # could not even send: treat as a failed call
                    future = Future()
                    future.set_exception(exc)
                calls[future] = _Out(host, host_parts, time.monotonic(), span)
                out.calls += 1
            del stranded  # reported as missing at the end unless another call covers them

        launch(list(partitions))
        hedge_at = time.monotonic() + self._hedge_delay(deadline)
        hedged = False
        while calls and len(covered) < len(partitions):
            now = time.monotonic()
            if now >= deadline:
                break
            until = deadline if hedged else min(deadline, hedge_at)
            done, _ = wait(list(calls), timeout=max(0.0, until - now), return_when=FIRST_COMPLETED)
            for future in done:
                call = calls.pop(future)
                if self._settle(future, call, out, covered, failed, moved):
                    launch([p for p in call.partitions if p not in covered])
            if not hedged and time.monotonic() >= hedge_at:
                hedged = True
                waiting = [c for c in calls.values() if any(p not in covered for p in c.partitions)]
                for call in waiting:
                    call.hedged = True
                    slow.add(call.host)
                    out.hedged += 1
                for call in waiting:
                    launch([p for p in call.partitions if p not in covered])
        for future, call in calls.items():
            self.clients[call.host].abandon(future)
            call.span.set_attribute("ragkit.abandoned", True)
            call.span.set_attribute("ragkit.hedged", call.hedged)
            call.span.end()
            if time.monotonic() >= deadline:  # a slow host was hedged; this one never answered
                self.breakers[call.host].failed()
                out.failures.setdefault(call.host, "no answer within the deadline")
        out.missing = sorted(set(partitions) - set(covered))
        out.answers = [a for a in out.answers if a[0]]  # drop answers replaced by larger ones
        return out

    def _hedge_delay(self, deadline: float) -> float:
        remaining = max(0.0, deadline - time.monotonic())
        if self.hedge_after_s is not None:
            return min(self.hedge_after_s, remaining)
        return self.latencies.hedge_delay(self.hedge_floor_s, remaining / 2)

    def _settle(
        self,
        future: Future[Any],
        call: _Out,
        out: Gathered,
        covered: dict[int, int],
        failed: set[str],
        moved: set[str],
    ) -> bool:
        """Take a finished call's answer; True when its partitions must be asked again."""
        exc = future.exception()
        call.span.set_attribute("ragkit.hedged", call.hedged)
        call.span.set_attribute("ragkit.failed", exc is not None)
        call.span.end()
        if exc is not None:
            out.failures[call.host] = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, PartitionNotHeldError):  # a moved partition is no failure
                if call.host not in moved:
                    moved.add(call.host)
                    return True
            else:
                self.breakers[call.host].failed()
                shard_error(call.host)
            failed.add(call.host)  # for this request: ask the other replicas
            return True
        self.breakers[call.host].succeeded()
        self.latencies.add(time.monotonic() - call.started)
        overlap = {covered[p] for p in call.partitions if p in covered}
        if not overlap:
            index = len(out.answers)
        elif all(set(out.answers[i][1]) <= set(call.partitions) for i in overlap):
            # This answer covers everything the earlier ones it overlaps covered: use it
            # instead of them (answers are merged per host and cannot be split).
            index = min(overlap)
            for i in overlap:
                out.answers[i] = ("", [], None)
        else:
            return False
        answer = (call.host, call.partitions, future.result())
        if index == len(out.answers):
            out.answers.append(answer)
        else:
            out.answers[index] = answer
        for p in call.partitions:
            covered[p] = index
        return False
