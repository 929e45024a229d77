"""The ingestion pipeline: load -> chunk -> embed -> upsert, with back-pressure.

Stages run as asyncio tasks joined by bounded queues, so a slow stage (an embedding service
that rate-limits) makes the ones before it wait instead of buffering without limit:

- *plan* chunks each source and compares the chunks with what the store holds for it:
  identical chunks are left alone, chunks whose text the store already has (same content
  hash, at another position or under another source: a moved section, a renamed file)
  reuse the stored vector, chunks the source no longer produces are deleted, and only new
  text goes on to be embedded; a source that cannot be planned is a dead letter;
- *embed* (``concurrency`` workers) embeds batches of ``batch_size`` texts of similar
  length (pooled ``SORT_POOL`` batches deep and sorted, so little padding), retrying
  transient errors (rate limits, timeouts, 5xx) with exponential backoff and jitter
  (tenacity); a batch that keeps failing becomes a dead letter and the pipeline goes on;
- *write* upserts each batch (a batch the store rejects is retried record by record, so
  only the bad record becomes a dead letter).

Counters, queue peaks and dead letters come back in an ``IngestReport``; each stage records
spans and durations through ``ragkit.tracing``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ragkit._validation import check_positive
from ragkit.embeddings.openai import is_transient
from ragkit.errors import InvalidInputError, RagkitError
from ragkit.ingest.chunkers import (
    HASH_KEY,
    SOURCE_KEY,
    Chunk,
    Chunker,
    MarkdownChunker,
    SourceDocument,
)
from ragkit.ingest.loaders import as_source, load_folder
from ragkit.ingest.report import DeadLetter, IngestReport
from ragkit.ingest.sources import source_root
from ragkit.schema import Record
from ragkit.tracing import ingested, stage

if TYPE_CHECKING:
    from ragkit.store import HybridStore

log = logging.getLogger(__name__)
T = TypeVar("T")

#: metadata key naming the folder sync a record belongs to (what ``sync_folder`` prunes)
SYNC_KEY = "sync"
#: chunks to embed are pooled this many batches deep and sorted by length before batching
SORT_POOL = 8


@dataclass(slots=True)
class Plan:
    """What one source needs: chunks to embed, records ready to write, ids to delete."""

    source: str
    to_embed: list[Chunk]
    ready: list[Record]
    stale: list[str]
    unchanged: int


class _Bounded(asyncio.Queue[T]):
    """An asyncio queue that remembers the most items it ever held."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.peak = 0

    async def put(self, item: T) -> None:
        await super().put(item)
        self.peak = max(self.peak, self.qsize())


class IngestPipeline:
    """Keeps a store current with a set of sources (see the module docstring).

    Key init args:
        store: the ``HybridStore`` to write (its embedder embeds, unless ``embedder``).
        chunker: how sources become chunks (default ``MarkdownChunker()``: heading sections,
            long ones split; see ``ragkit.ingest.chunkers``).
        batch_size: texts per embedder call and records per write (default 64).
        concurrency: embedder calls in flight at once (default: 1 for a model on this
            machine's CPU, where a second call only competes for the cores; 2 for a service).
        queue_size: batches each queue holds before the stage feeding it waits (default 4).
        max_attempts: embedder attempts per batch, first included (default 6).
        backoff: (initial, maximum) seconds between attempts (exponential, with jitter).
        dead_letter_path: a JSONL file each dead letter is appended to, besides the report.
        tenant: the tenant every record is written to.
        progress: called with the report after every write.

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            from ragkit.ingest import IngestPipeline, load_folder
            store = HybridStore("./kb")
            report = IngestPipeline(store).ingest(load_folder("./docs"))
            print(report.summary())
    """

    def __init__(
        self,
        store: HybridStore,
        *,
        chunker: Chunker | None = None,
        embedder: Any = None,
        batch_size: int = 64,
        concurrency: int | None = None,
        queue_size: int = 4,
        max_attempts: int = 6,
        backoff: tuple[float, float] = (0.5, 20.0),
        dead_letter_path: str | Path | None = None,
        tenant: str | None = None,
        progress: Callable[[IngestReport], None] | None = None,
    ) -> None:
        self.embedder = embedder if embedder is not None else store.embedder
        if concurrency is None:
            concurrency = 1 if getattr(self.embedder, "computes_locally", False) else 2
        check_positive(
            batch_size=batch_size,
            concurrency=concurrency,
            queue_size=queue_size,
            max_attempts=max_attempts,
        )
        self.store = store
        self.chunker: Chunker = chunker if chunker is not None else MarkdownChunker()
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.dead_letter_path = Path(dead_letter_path) if dead_letter_path else None
        self.tenant = tenant
        self.progress = progress

    # ---- planning: what a source needs --------------------------------------------------

    def plan(
        self,
        doc: SourceDocument,
        *,
        extra: dict[str, Any] | None = None,
        embedding: set[str] | None = None,
    ) -> Plan:
        """Compare ``doc``'s chunks with what the store holds for the source.

        ``embedding``: content hashes this run sends to the embedder (updated here). A chunk
        with one of them is embedded too, never given the vector an identical text of this
        run got moments earlier, so what a run stores does not depend on the timing of its
        writes (two ingestions of one corpus store the same vectors)."""
        chunks = self.chunker.split(doc)
        if extra:
            for chunk in chunks:
                chunk.metadata.update(extra)
        held_ids = self.store.ids({SOURCE_KEY: doc.id}, tenant=self.tenant)
        held = {r.id: r for r in self.store.get(held_ids, tenant=self.tenant, include_vectors=True)}
        by_hash = {str(r.metadata.get(HASH_KEY)): r.vector for r in held.values()}
        fresh = embedding or set()
        by_hash = {h: v for h, v in by_hash.items() if h not in fresh}
        by_hash |= self._vectors_elsewhere(
            [c.content_hash for c in chunks if c.content_hash not in fresh], by_hash
        )
        wanted = {c.id for c in chunks}
        plan = Plan(doc.id, [], [], [i for i in held_ids if i not in wanted], 0)
        for chunk in chunks:
            metadata = chunk.record_metadata()
            before = held.get(chunk.id)
            if before is not None and before.text == chunk.text and before.metadata == metadata:
                plan.unchanged += 1
                continue
            vector = by_hash.get(chunk.content_hash)
            if vector is None:
                plan.to_embed.append(chunk)
                if embedding is not None:
                    embedding.add(chunk.content_hash)
            else:
                plan.ready.append(self.record(chunk, vector))
        return plan

    def _vectors_elsewhere(self, hashes: list[str], known: dict[str, Any]) -> dict[str, Any]:
        """Stored vectors of other sources' chunks with these content hashes."""
        missing = sorted({h for h in hashes if h not in known})
        found: dict[str, Any] = {}
        for start in range(0, len(missing), 256):
            wanted = missing[start : start + 256]
            # a chunk repeated across many sources (a footer) would fetch every copy: a few
            # per hash are enough; a hash missed here is only embedded again
            ids = self.store.ids({HASH_KEY: {"$in": wanted}}, tenant=self.tenant)
            ids = ids[: 4 * len(wanted)]
            for record in self.store.get(ids, tenant=self.tenant, include_vectors=True):
                found.setdefault(str(record.metadata.get(HASH_KEY)), record.vector)
        return found

    def record(self, chunk: Chunk, vector: Any) -> Record:
        return Record(chunk.id, chunk.text, chunk.record_metadata(), vector, self.tenant)

    # ---- embedding with retries ---------------------------------------------------------

    def _retry_args(self, report: IngestReport) -> dict[str, Any]:
        def count(state: RetryCallState) -> None:
            report.retries += 1
            ingested("retried", 1)
            log.info("ragkit ingest: embedder attempt %d failed, retrying", state.attempt_number)

        return {
            "retry": retry_if_exception(is_transient),
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait_random_exponential(multiplier=self.backoff[0], max=self.backoff[1]),
            "before_sleep": count,
            "reraise": True,
        }

    def embed(self, texts: Sequence[str], report: IngestReport) -> np.ndarray[Any, Any]:
        """Vectors for ``texts``, retrying transient errors (the blocking twin of the
        pipeline's embed stage, for callers outside an event loop)."""
        for attempt in Retrying(**self._retry_args(report)):
            with attempt, stage("ingest_embed", **{"ragkit.texts": len(texts)}):
                return np.asarray(self.embedder.embed_documents(list(texts)), dtype=np.float32)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aembed(self, texts: Sequence[str], report: IngestReport) -> np.ndarray[Any, Any]:
        async for attempt in AsyncRetrying(**self._retry_args(report)):
            with attempt:
                with stage("ingest_embed", **{"ragkit.texts": len(texts)}):
                    vectors = await asyncio.to_thread(self.embedder.embed_documents, list(texts))
                return np.asarray(vectors, dtype=np.float32)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- writing -------------------------------------------------------------------------

    def write(self, records: list[Record], report: IngestReport) -> None:
        """Upsert ``records``; a batch the store rejects is retried one record at a time, so
        only the bad ones become dead letters."""
        if not records:
            return
        with stage("ingest_write", **{"ragkit.records": len(records)}):
            try:
                self.store.upsert(records)
                report.upserted += len(records)
                ingested("upserted", len(records))
            except InvalidInputError:
                for record in records:
                    try:
                        self.store.upsert([record])
                        report.upserted += 1
                    except InvalidInputError as exc:
                        self.dead_letter(report, _source(record), [record.id], exc, 1, "write")
        if self.progress is not None:
            self.progress(report)

    def dead_letter(
        self,
        report: IngestReport,
        source: str,
        ids: list[str],
        error: BaseException,
        attempts: int,
        stage_name: str,
    ) -> None:
        letter = DeadLetter(source, ids, f"{type(error).__name__}: {error}", attempts, stage_name)
        report.dead_letters.append(letter)
        ingested("dead_letter", len(ids))
        log.warning("ragkit ingest: gave up on %s (%s)", ids[:3], letter.error)
        if self.dead_letter_path is not None:
            with self.dead_letter_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({**asdict(letter), "time": time.time()}) + "\n")

    # ---- the pipeline --------------------------------------------------------------------

    async def _sorted_batches(
        self, pending: list[Chunk], batches: _Bounded[list[Chunk] | None], *, keep_tail: bool
    ) -> list[Chunk]:
        """Put ``pending`` on the embed queue in batches of texts of similar length (a batch
        is padded to its longest text: sorting keeps the embedder at its own speed); with
        ``keep_tail`` the last, partial batch is kept back to be sorted with what follows."""
        ordered = sorted(pending, key=lambda c: len(c.text))
        cut = len(ordered) - len(ordered) % self.batch_size if keep_tail else len(ordered)
        for start in range(0, cut, self.batch_size):
            await batches.put(ordered[start : min(start + self.batch_size, cut)])
        return ordered[cut:]

    async def aingest(
        self,
        sources: Iterable[Any] | AsyncIterable[Any],
        *,
        extra: dict[str, Any] | None = None,
        report: IngestReport | None = None,
    ) -> IngestReport:
        """Ingest ``sources`` (``SourceDocument``s, strings, LangChain Documents, LlamaIndex
        documents or nodes; an iterable or an async iterable): each source's chunks replace
        the ones the store held for it. ``extra``: metadata added to every chunk."""
        report = report if report is not None else IngestReport()
        started = time.perf_counter()
        docs: _Bounded[SourceDocument | None] = _Bounded(self.queue_size)
        batches: _Bounded[list[Chunk] | None] = _Bounded(self.queue_size)
        ready: _Bounded[list[Record] | None] = _Bounded(self.queue_size)
        queues: dict[str, _Bounded[Any]] = {"sources": docs, "embed": batches, "write": ready}
        report.queue_bounds = {name: q.maxsize for name, q in queues.items()}

        async def load() -> None:
            if isinstance(sources, AsyncIterable):
                async for item in sources:
                    await docs.put(as_source(item))
            else:
                for item in sources:
                    await docs.put(as_source(item))
            await docs.put(None)

        async def plan() -> None:
            pending: list[Chunk] = []
            embedding: set[str] = set()
            while (doc := await docs.get()) is not None:
                report.sources += 1
                try:
                    with stage("ingest_plan", **{"ragkit.source": doc.id}):
                        planned = await asyncio.to_thread(
                            self.plan, doc, extra=extra, embedding=embedding
                        )
                except RagkitError as exc:  # one bad source is one dead letter
                    self.dead_letter(report, doc.id, [doc.id], exc, 1, "plan")
                    continue
                report.chunks += len(planned.to_embed) + len(planned.ready) + planned.unchanged
                report.unchanged += planned.unchanged
                report.reused += len(planned.ready)
                ingested("unchanged", planned.unchanged)
                ingested("reused", len(planned.ready))
                if planned.stale:
                    gone = await asyncio.to_thread(
                        self.store.delete, planned.stale, tenant=self.tenant
                    )
                    report.deleted += gone
                    ingested("deleted", gone)
                for start in range(0, len(planned.ready), self.batch_size):
                    await ready.put(planned.ready[start : start + self.batch_size])
                pending.extend(planned.to_embed)
                if len(pending) >= self.batch_size * SORT_POOL:
                    pending = await self._sorted_batches(pending, batches, keep_tail=True)
            await self._sorted_batches(pending, batches, keep_tail=False)
            for _ in range(self.concurrency):
                await batches.put(None)

        async def embed() -> None:
            while (batch := await batches.get()) is not None:
                try:
                    vectors = await self.aembed([c.text for c in batch], report)
                except Exception as exc:  # every failure is a dead letter
                    attempts = self.max_attempts if is_transient(exc) else 1
                    for source, ids in _by_source(batch).items():
                        self.dead_letter(report, source, ids, exc, attempts, "embed")
                    continue
                report.embedded += len(batch)
                ingested("embedded", len(batch))
                await ready.put([self.record(c, v) for c, v in zip(batch, vectors)])
            await ready.put(None)

        async def write() -> None:
            finished = 0
            while finished < self.concurrency:
                records = await ready.get()
                if records is None:
                    finished += 1
                    continue
                await asyncio.to_thread(self.write, records, report)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(load())
                group.create_task(plan())
                for _ in range(self.concurrency):
                    group.create_task(embed())
                group.create_task(write())
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            raise first from None
        finally:
            report.queue_peaks = {name: q.peak for name, q in queues.items()}
            report.seconds += time.perf_counter() - started
        return report

    def ingest(self, sources: Iterable[Any], **options: Any) -> IngestReport:
        """The blocking twin of ``aingest`` (not from inside a running event loop)."""
        return _run(self.aingest(sources, **options))

    async def adelete_sources(self, source_ids: Sequence[str]) -> int:
        """Delete every chunk of these sources; returns how many records were deleted."""
        if not source_ids:
            return 0
        return await asyncio.to_thread(
            self.store.delete, filter={SOURCE_KEY: {"$in": list(source_ids)}}, tenant=self.tenant
        )

    def delete_sources(self, source_ids: Sequence[str]) -> int:
        """The blocking twin of ``adelete_sources``."""
        return _run(self.adelete_sources(source_ids))

    async def async_folder(
        self,
        folder: str | Path,
        *,
        source_name: str | None = None,
        follow_outside: bool = False,
        prune: bool = True,
        key: str | None = None,
    ) -> IngestReport:
        """Make the store hold exactly the chunks of ``folder``'s text and Markdown files:
        changed files are re-chunked (only new text is embedded), files that vanished have
        their chunks deleted (``prune``).

        Files are named ``<source_name>/<relative path>`` (default source name: the folder's
        absolute path), so folders with files of the same names never overwrite each other.
        Records of this sync carry ``sync=<source name>`` (or ``key``) and a sync prunes only
        its own records. Links leading outside the folder are read only with
        ``follow_outside``; what is skipped, and why, is in ``report.skipped``."""
        root = Path(folder)
        name = source_root(root, source_name)
        sync_key = key or name
        report = IngestReport()
        docs = list(
            load_folder(
                root, source_name=name, follow_outside=follow_outside, skipped=report.skipped
            )
        )
        await self.aingest(docs, extra={SYNC_KEY: sync_key}, report=report)
        if prune:
            present = {d.id for d in docs}

            def vanished() -> list[str]:
                ids = self.store.ids({SYNC_KEY: sync_key}, tenant=self.tenant)
                held = {
                    str(r.metadata.get(SOURCE_KEY)) for r in self.store.get(ids, tenant=self.tenant)
                }
                return sorted(held - present)

            gone = await asyncio.to_thread(vanished)
            if gone:
                report.deleted += await asyncio.to_thread(
                    self.store.delete,
                    filter={SYNC_KEY: sync_key, SOURCE_KEY: {"$in": gone}},
                    tenant=self.tenant,
                )
        return report

    def sync_folder(self, folder: str | Path, **options: Any) -> IngestReport:
        """The blocking twin of ``async_folder`` (the same options)."""
        return _run(self.async_folder(folder, **options))


def _source(record: Record) -> str:
    return str(record.metadata.get(SOURCE_KEY, record.id))


def _by_source(chunks: Sequence[Chunk]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for chunk in chunks:
        out.setdefault(chunk.source, []).append(chunk.id)
    return out


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion. Called from inside a running event loop (a notebook cell,
    an async app calling the blocking twin), it runs on its own loop in a worker thread
    while this one waits, instead of failing; awaiting the a-prefixed twin is better there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragkit-ingest") as worker:
        return worker.submit(asyncio.run, coro).result()
