"""The router's handle on a host: calls go out as messages, bounded, coalesced when busy.

Each ``HostClient`` keeps at most ``max_inflight`` messages in flight to its host. A call made
while that many are out waits in a short queue and leaves with the next message, together with
every other call that queued meanwhile: under load one message (one Ray actor call) carries
several queries, and an idle store sends each call at once. A host that stops answering can
hold only its own ``max_inflight`` messages and ``max_queue`` waiting calls; past that, calls
to it fail at once (``HostBusyError``) and the router asks another replica. Nothing is shared
between hosts, so a hung host never takes a slot another host's calls need.

Waiting is on ``concurrent.futures.Future`` objects: for Ray they are the futures of the
actor calls' object refs, completed by Ray itself, so no thread waits per call.
"""

from __future__ import annotations

import functools
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ragkit.backends.sharded.host import LocalReplicas, PartitionHost, ReplicaFactory
from ragkit.errors import RagkitError
from ragkit.tracing import current_context, in_context

Batch = list[tuple[str, tuple[Any, ...]]]
Answers = list[tuple[bool, Any]]


class HostBusyError(RagkitError):
    """A host has as many calls outstanding as it may; the router asks another replica."""


@dataclass(slots=True)
class _Call:
    method: str
    args: tuple[Any, ...]
    future: Future[Any]
    context: Any


@dataclass(slots=True)
class Sent:
    """One message in flight and the calls it carries."""

    future: Future[Answers]
    calls: list[_Call] = field(default_factory=list)
    sent_at: float = field(default_factory=time.monotonic)


class HostClient(ABC):
    """Sends calls to one host. Subclasses say how a message travels (``_send``)."""

    def __init__(
        self, name: str, *, max_inflight: int = 2, max_batch: int = 32, max_queue: int = 256
    ) -> None:
        self.name = name
        self.max_inflight = max_inflight
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.messages = 0  # messages sent (one per ``_send``)
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
        self._inflight: list[Sent] = []

    @abstractmethod
    def _send(self, batch: Batch, context: Any) -> Sent:
        """Start one message carrying ``batch``."""

    def submit(self, method: str, *args: Any) -> Future[Any]:
        """Call ``method`` on the host; the future holds its result or its exception."""
        call = _Call(method, args, Future(), current_context())
        with self._lock:
            if len(self._queue) >= self.max_queue:  # drop calls nobody waits for any more
                self._queue = deque(c for c in self._queue if not c.future.cancelled())
            if len(self._queue) >= self.max_queue:
                call.future.set_exception(
                    HostBusyError(f"host {self.name} has {len(self._queue)} calls waiting")
                )
                return call.future
            self._queue.append(call)
            batches = self._take()
        self._send_all(batches)
        return call.future

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call and wait (for operations off the hot path)."""
        return self.submit(method, *args).result(timeout=timeout)

    def abandon(self, future: Future[Any]) -> None:
        """The caller no longer waits for this call: drop it if it has not left yet. A
        message that has left runs to its end (its answer is ignored): a Ray actor runs one
        caller's calls in order of their sequence numbers, so cancelling a sent call leaves a
        gap that holds every later call from this process until Ray's reorder timeout, and a
        healthy host stops answering; ``max_inflight`` bounds what a hung host can hold."""
        future.cancel()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + len(self._inflight)

    def stalled(self, age_s: float) -> bool:
        """Has a message been out longer than ``age_s``? A host that answers nothing for that
        long is stuck (or gone): the router asks other replicas until it answers again."""
        now = time.monotonic()
        with self._lock:
            return any(now - sent.sent_at > age_s for sent in self._inflight)

    def _take(self) -> list[list[_Call]]:
        """Calls to send now, as messages (under the lock)."""
        batches: list[list[_Call]] = []
        while len(self._inflight) + len(batches) < self.max_inflight and self._queue:
            batch: list[_Call] = []
            while self._queue and len(batch) < self.max_batch:
                call = self._queue.popleft()
                if call.future.set_running_or_notify_cancel():
                    batch.append(call)
            if batch:
                batches.append(batch)
        return batches

    def _send_all(self, batches: list[list[_Call]]) -> None:
        for calls in batches:
            try:
                sent = self._send([(c.method, c.args) for c in calls], calls[0].context)
            except Exception as exc:
                sent = Sent(Future())
                sent.future.set_exception(exc)
            sent.calls = calls
            self.messages += 1
            with self._lock:
                self._inflight.append(sent)
            # The callback holds the calls, not the Sent: a Sent holding its own future's
            # callback would be a reference cycle, and every call's arguments and answer
            # (records) would wait for the garbage collector instead of going at once.
            sent.future.add_done_callback(functools.partial(self._on_done, calls))

    def _on_done(self, calls: list[_Call], future: Future[Answers]) -> None:
        try:
            answers = future.result()
        except BaseException as exc:  # the message failed as a whole: every call in it did
            answers = [(False, exc)] * len(calls)
        for call, (ok, value) in zip(calls, answers):
            try:
                if ok:
                    call.future.set_result(value)
                else:
                    call.future.set_exception(value)
            except InvalidStateError:  # abandoned meanwhile
                pass
        with self._lock:
            self._inflight = [s for s in self._inflight if s.future is not future]
            batches = self._take()
        self._send_all(batches)

    def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Release the client's resources (the host's data stays)."""


class LocalHost(HostClient):
    """A host in this process: its partition replicas are LocalShards in ``path`` (or in
    memory), called from a small thread pool of its own.

    Instantiate:
        .. code-block:: python

            from ragkit.backends import ShardedStore
            from ragkit.backends.sharded import LocalHost
            hosts = [LocalHost(f"h{i}", f"./kb/hosts/h{i}") for i in range(4)]
            router = ShardedStore(hosts, partitions=16, replicas=2)
    """

    def __init__(
        self,
        name: str,
        path: str | None = None,
        *,
        replicas: ReplicaFactory | None = None,
        max_inflight: int = 2,
        **shard_args: Any,
    ) -> None:
        super().__init__(name, max_inflight=max_inflight)
        self.host = PartitionHost(name, replicas or LocalReplicas(path, **shard_args))
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix=name)

    def _send(self, batch: Batch, context: Any) -> Sent:
        return Sent(self._pool.submit(self._run, batch, context))

    def _run(self, batch: Batch, context: Any) -> Answers:
        with in_context(context):
            return self.host.run(batch)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
