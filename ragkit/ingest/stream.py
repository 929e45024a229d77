"""A Redis Streams consumer that keeps a store current, exactly once in effect.

Producers append events to a stream (``publish_upsert``, ``publish_delete``, or ``XADD``
with the same fields); any number of ``StreamConsumer``s in one consumer group share them.
Redis delivers each event at least once; the consumer makes the effect exactly once:

- An event is acknowledged (``XACK``) only after its write is durable in the store.
  A consumer that dies before acknowledging leaves its events pending; the others claim
  them once idle for ``claim_idle_ms`` (``XAUTOCLAIM``), and a consumer restarted under its
  old name re-reads its own pending events first.
- Writes are idempotent by id: an upsert replaces the record (or the source's chunks), a
  delete of a missing record is a no-op, so an event applied twice changes nothing.
- Order per id holds across consumers: the stream id of the last event applied to each id
  is kept in a Redis hash (``<stream>:applied``, only ever moved forward), and an event
  older than that is skipped, so a redelivered upsert never resurrects a record a later
  delete removed. Checking and writing happen under a short per-id lease in Redis
  (``<stream>:lock:<id>``, taken for all ids of a batch at once, expiring after
  ``lease_ms`` if its holder dies).
- Fencing: a consumer paused past its lease (GC, SIGSTOP, a slow disk) may come back after
  another consumer applied a newer event. On a store directory (``HybridStore.write_fenced``)
  every write carries its events' stream positions and the store refuses, in the same
  transaction, a write older than the position it holds for an id: the late write is
  stale, never applied. Other backends have only the lease (see the how-to).

Event fields are in ``ragkit.ingest.events``. Events that cannot be applied (bad fields, a
record the store rejects) go to the dead-letter stream ``<stream>:dead`` with the reason, and
are acknowledged. ``ragkit consume`` runs a consumer from the command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragkit._validation import check_positive
from ragkit.errors import (
    InvalidInputError,
    MissingDependencyError,
    RagkitError,
    StaleWriteError,
)
from ragkit.ingest.chunkers import SOURCE_KEY, Chunker, SourceDocument, WholeChunker
from ragkit.ingest.events import DELETE, UPSERT, Event, decode_field, entry_order, printable_field
from ragkit.ingest.pipeline import IngestPipeline
from ragkit.ingest.report import IngestReport
from ragkit.schema import Record
from ragkit.tracing import ingested, stage

if TYPE_CHECKING:
    from ragkit.store import HybridStore

log = logging.getLogger(__name__)

# All locks of a batch or none: no consumer ever holds some while waiting for others.
_LOCK_ALL = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then return 0 end
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 1
"""
# Set each field of the applied marker to its entry only if that is newer than the one held.
_ADVANCE = """
local function newer(a, b)
  local am, as = string.match(a, "(%d+)-(%d+)")
  local bm, bs = string.match(b, "(%d+)-(%d+)")
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
for i = 1, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if not held or newer(ARGV[i + 1], held) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""
_UNLOCK = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""


def _redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise MissingDependencyError(
            "the stream consumer needs redis-py: pip install 'ragkit[redis]'"
        ) from exc
    return redis


def _client(redis_url: str | Any) -> Any:
    if isinstance(redis_url, str):
        return _redis().Redis.from_url(redis_url)
    return redis_url


@dataclass
class ConsumeReport:
    """What a consumer did since it started."""

    events: int = 0  # events read (including redeliveries)
    applied: int = 0  # events whose write was made
    stale: int = 0  # events older than one already applied to their id: skipped
    claimed: int = 0  # events claimed from idle consumers
    dead: int = 0  # events sent to the dead-letter stream
    acked: int = 0
    ingest: IngestReport = field(default_factory=IngestReport)


class StreamConsumer:
    """One consumer of a Redis stream's consumer group, writing to ``store``.

    Key init args:
        store: the store to keep current (open it with ``shared=True`` when several
            consumer processes write one store directory).
        redis_url: ``redis://...`` or a ``redis.Redis`` client.
        stream: the stream name.
        group: the consumer group (created, with the stream, when missing).
        consumer: this consumer's name (default ``<host>-<pid>``); a consumer restarted
            under the same name re-reads its own unacknowledged events first.
        chunker: how an upsert's text becomes records (default ``WholeChunker``: one record
            with the event's id; any other chunker replaces the source's chunks).
        batch_size: events read and written per round (default 100).
        block_ms: how long a read waits for new events (default 1000).
        claim_idle_ms: events pending this long on another consumer are claimed (30 s).
        lease_ms: how long a per-id lease lasts if its holder dies (default 30 s).
        pipeline_options: passed to the ``IngestPipeline`` that embeds (batch size,
            retries, backoff).

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            from ragkit.ingest import StreamConsumer, publish_upsert
            store = HybridStore("./kb", shared=True)
            consumer = StreamConsumer(store, "redis://127.0.0.1:6379/0", "docs")
            consumer.run()          # until stop() or Ctrl-C
    """

    def __init__(
        self,
        store: HybridStore,
        redis_url: str | Any,
        stream: str,
        *,
        group: str = "ragkit",
        consumer: str | None = None,
        chunker: Chunker | None = None,
        batch_size: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        lease_ms: int = 30_000,
        **pipeline_options: Any,
    ) -> None:
        check_positive(
            batch_size=batch_size, block_ms=block_ms, claim_idle_ms=claim_idle_ms, lease_ms=lease_ms
        )
        self.store = store
        self.redis = _client(redis_url)
        self.stream, self.group = stream, group
        self.name = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.chunker: Chunker = chunker if chunker is not None else WholeChunker()
        self.whole = isinstance(self.chunker, WholeChunker)
        self.batch_size, self.block_ms = batch_size, block_ms
        self.claim_idle_ms, self.lease_ms = claim_idle_ms, lease_ms
        self.pipeline = IngestPipeline(store, chunker=self.chunker, **pipeline_options)
        self.applied_key = f"{stream}:applied"
        self.dead_stream = f"{stream}:dead"
        self.report = ConsumeReport()
        self._stop = threading.Event()
        self._lock_all = self.redis.register_script(_LOCK_ALL)
        self._unlock = self.redis.register_script(_UNLOCK)
        self._advance = self.redis.register_script(_ADVANCE)
        self.fenced = store.backend.capabilities.fenced_writes
        self._own_pending = True  # first re-read what this name left unacknowledged
        self._claim_from = "0-0"
        self._next_claim = 0.0
        self.ensure_group()

    def ensure_group(self) -> None:
        """Create the group (reading the stream from its start) and the stream if missing."""
        redis = _redis()
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        """Finish the current batch and return from ``run``."""
        self._stop.set()

    # ---- reading -------------------------------------------------------------------------

    def _read(self) -> list[tuple[str, dict[Any, Any] | None]]:
        if self._own_pending:
            reply = self.redis.xreadgroup(
                self.group, self.name, {self.stream: "0"}, count=self.batch_size
            )
            entries = reply[0][1] if reply else []
            if entries:
                return [(decode_field(i), f) for i, f in entries]
            self._own_pending = False
        now = time.monotonic()
        if now >= self._next_claim:
            start, claimed, *_ = self.redis.xautoclaim(
                self.stream,
                self.group,
                self.name,
                min_idle_time=self.claim_idle_ms,
                start_id=self._claim_from,
                count=self.batch_size,
            )
            self._claim_from = decode_field(start)
            if self._claim_from == "0-0":  # scanned every pending entry: pause a while
                self._next_claim = now + self.claim_idle_ms / 2000
            entries = [(decode_field(i), f) for i, f in claimed]
            if entries:
                self.report.claimed += len(entries)
                return entries
        reply = self.redis.xreadgroup(
            self.group, self.name, {self.stream: ">"}, count=self.batch_size, block=self.block_ms
        )
        return [(decode_field(i), f) for i, f in reply[0][1]] if reply else []

    # ---- applying ------------------------------------------------------------------------

    def process(self, entries: Sequence[tuple[str, dict[Any, Any] | None]]) -> None:
        """Apply one batch of entries and acknowledge them (see the module docstring)."""
        self.report.events += len(entries)
        ingested("event", len(entries))
        latest: dict[str, Event] = {}
        parsed = 0
        for entry, fields in entries:
            if fields is None:  # trimmed from the stream while pending: nothing to apply
                continue
            try:
                event = Event.parse(entry, fields)
            except (InvalidInputError, ValueError) as exc:  # UnicodeDecodeError included
                self._dead(entry, fields, exc)
                continue
            parsed += 1
            before = latest.get(event.key)
            if before is None or entry_order(event.entry) > entry_order(before.entry):
                latest[event.key] = event
        self.report.stale += parsed - len(latest)  # superseded within the batch
        if latest:
            with stage("consume_batch", **{"ragkit.events": len(entries)}):
                self._apply_isolating(list(latest.values()))
        self.redis.xack(self.stream, self.group, *[entry for entry, _ in entries])
        self.report.acked += len(entries)

    def _apply_isolating(self, events: list[Event]) -> None:
        """Apply ``events``; when the store refuses the batch as bad input, apply its halves
        apart, down to the one event that is refused, which becomes a dead letter (so one
        poison event never stalls the group, and never takes its neighbours with it)."""
        try:
            self._apply(events)
        except InvalidInputError as exc:
            if len(events) == 1:
                event = events[0]
                self._dead(event.entry, {"id": event.id}, exc)
                return
            middle = len(events) // 2
            self._apply_isolating(events[:middle])
            self._apply_isolating(events[middle:])

    def _apply(self, events: list[Event]) -> None:
        prepared = self._prepare([e for e in events if e.op == UPSERT])
        keys = [f"{self.stream}:lock:{e.key}" for e in events]
        token = uuid.uuid4().hex
        self._acquire(keys, token)
        acquired = time.monotonic()
        try:
            applied = self.redis.hmget(self.applied_key, [e.key for e in events])
            fresh = [
                e
                for e, done in zip(events, applied)
                if done is None or entry_order(e.entry) > entry_order(decode_field(done))
            ]
            self.report.stale += len(events) - len(fresh)
            if (time.monotonic() - acquired) * 1000 > self.lease_ms / 2:
                raise RagkitError("lease nearly expired before writing; the batch is retried")
            written = self._write(fresh, prepared)
            self.report.stale += len(fresh) - len(written)
            if written:  # forward only: a late writer never moves the marker back
                pairs = [value for e in written for value in (e.key, e.entry)]
                self._advance(keys=[self.applied_key], args=pairs)
            self.report.applied += len(written)
        finally:
            self._unlock(keys=keys, args=[token])

    def _acquire(self, keys: list[str], token: str) -> None:
        wait = 0.005
        while not self._lock_all(keys=keys, args=[token, self.lease_ms]):
            time.sleep(wait)  # another consumer is writing one of these ids right now
            wait = min(wait * 2, 0.2)

    def _prepare(self, upserts: list[Event]) -> dict[str, list[Record]]:
        """Records for each upsert event, embedded (outside any lease: the slow part)."""
        out: dict[str, list[Record]] = {}
        to_embed: list[tuple[str, Record]] = []
        for event in upserts:
            if self.whole:
                records = [Record(event.id, event.text, dict(event.metadata), None, event.tenant)]
            else:
                doc = SourceDocument(event.id, event.text, event.metadata)
                records = [
                    Record(c.id, c.text, c.record_metadata(), None, event.tenant)
                    for c in self.chunker.split(doc)
                ]
            if event.vector is not None and len(records) == 1:
                records[0].vector = event.vector
            out[event.entry] = records
            to_embed.extend((event.entry, r) for r in records if r.vector is None)
        if to_embed:
            texts = [r.text for _, r in to_embed]
            try:
                vectors = self.pipeline.embed(texts, self.report.ingest)
            except Exception as exc:  # after retries: those events are dead
                failed = {entry for entry, _ in to_embed}
                for event in upserts:
                    if event.entry in failed:
                        self._dead(event.entry, {"id": event.id}, exc)
                        out.pop(event.entry, None)
                return out
            self.report.ingest.embedded += len(texts)
            ingested("embedded", len(texts))
            for (_, record), vector in zip(to_embed, vectors):
                record.vector = vector
        return out

    def _write(self, events: list[Event], prepared: dict[str, list[Record]]) -> list[Event]:
        """Write ``events`` (deletes, then upserts, per tenant); returns those written. On a
        store that takes fenced writes each tenant's events are one transaction carrying
        their stream positions, so a write this consumer makes after losing its lease (a
        pause) is refused where something newer was applied; those events are stale."""
        by_tenant: dict[str | None, list[Event]] = {}
        for event in events:
            by_tenant.setdefault(event.tenant, []).append(event)
        written: list[Event] = []
        for tenant, group in by_tenant.items():
            while group:
                try:
                    self._write_group(tenant, group, prepared)
                except StaleWriteError as exc:
                    refused = set(exc.keys)
                    kept = [e for e in group if self._fence_key(e) not in refused]
                    if len(kept) == len(group):  # refused for keys it did not send
                        raise
                    group = kept
                    continue
                written.extend(group)
                break
        return written

    def _fence_key(self, event: Event) -> str:
        return f"{self.stream}/{event.key}"

    def _write_group(
        self, tenant: str | None, group: list[Event], prepared: dict[str, list[Record]]
    ) -> None:
        deletes = [e.id for e in group if e.op == DELETE]
        upserts = [e for e in group if e.op == UPSERT and e.entry in prepared]
        records = [r for e in upserts for r in prepared[e.entry]]
        # whole: one record per id; chunked: every chunk of a deleted or replaced source goes
        removed = deletes if self.whole else deletes + [e.id for e in upserts]
        flt = None if self.whole or not removed else {SOURCE_KEY: {"$in": removed}}
        if self.fenced:
            self.store.write_fenced(
                records,
                deletes=removed if self.whole and removed else None,
                delete_filter=flt,
                tenant=tenant,
                fence={self._fence_key(e): e.entry for e in group},
            )
        else:
            if removed:
                self.store.delete(removed if self.whole else None, filter=flt, tenant=tenant)
            if records:
                self.store.upsert(records)
        self.report.ingest.upserted += len(records)

    def _dead(self, entry: str, fields: dict[Any, Any], error: BaseException) -> None:
        self.report.dead += 1
        log.warning("ragkit consume: event %s is a dead letter (%s)", entry, error)
        self.redis.xadd(
            self.dead_stream,
            {
                "entry": entry,
                "id": printable_field(fields.get("id", fields.get(b"id", b""))),
                "error": f"{type(error).__name__}: {error}",
                "consumer": self.name,
            },
        )

    # ---- the loop ------------------------------------------------------------------------

    def run(
        self, *, until_idle_s: float | None = None, max_events: int | None = None
    ) -> ConsumeReport:
        """Consume until ``stop()``, until nothing arrived for ``until_idle_s`` seconds, or
        until ``max_events`` were processed. A failed batch is left unacknowledged and read
        again (this consumer's pending entries come first)."""
        idle_since = time.monotonic()
        while not self._stop.is_set():
            if max_events is not None and self.report.events >= max_events:
                break
            try:
                entries = self._read()
                if entries:
                    self.process(entries)
                    idle_since = time.monotonic()
                elif until_idle_s is not None and time.monotonic() - idle_since > until_idle_s:
                    break
            except (RagkitError, OSError, _redis().RedisError) as exc:
                log.warning("ragkit consume: batch failed, retrying (%s)", exc)
                self._own_pending = True
                self._stop.wait(0.5)
        return self.report

    async def arun(
        self, *, until_idle_s: float | None = None, max_events: int | None = None
    ) -> ConsumeReport:
        """The async twin of ``run`` (in a worker thread; ``stop()`` ends it)."""
        return await asyncio.to_thread(self.run, until_idle_s=until_idle_s, max_events=max_events)

    def lag(self) -> dict[str, int]:
        """The group's ``pending`` (delivered, not acknowledged) and ``lag`` (not delivered)."""
        for group in self.redis.xinfo_groups(self.stream):
            name = decode_field(group["name"])
            if name == self.group:
                return {"pending": int(group["pending"]), "lag": int(group.get("lag") or 0)}
        return {"pending": 0, "lag": 0}
