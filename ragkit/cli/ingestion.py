"""``ragkit sync`` (a folder kept in sync with a store) and ``ragkit consume`` (a Redis
stream consumer)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from rich.console import Console

from ragkit.cli._progress import IngestProgress
from ragkit.cli.commands import check_new_store
from ragkit.ingest import (
    CharChunker,
    IngestPipeline,
    IngestReport,
    MarkdownChunker,
    StreamConsumer,
    TokenChunker,
    WholeChunker,
)
from ragkit.ingest.chunkers import Chunker
from ragkit.store import HybridStore


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    positive: Any,
    add_source_arguments: Any,
) -> None:
    sync = sub.add_parser(
        "sync",
        help="make a store hold exactly a folder's text and Markdown files (re-run after edits)",
    )
    sync.add_argument("folder")
    sync.add_argument(
        "--store", required=True, help="the store directory (made if new or empty; see --create)"
    )
    add_source_arguments(sync)
    sync.add_argument(
        "--chunker",
        choices=["markdown", "chars", "tokens"],
        default="markdown",
        help="heading sections (default), character windows or token windows",
    )
    sync.add_argument("--size", type=positive, default=None, help="chunk size (chars or tokens)")
    sync.add_argument("--overlap", type=int, default=None, help="overlap (chars or tokens)")
    sync.add_argument("--no-prune", action="store_true", help="keep chunks of vanished files")
    sync.add_argument("--tenant", default=None)
    sync.add_argument("--batch-size", type=positive, default=64)
    sync.add_argument("--dead-letters", default=None, help="append failures to this JSONL file")
    sync.add_argument("--shared", action="store_true", help="open the store with shared=True")
    sync.set_defaults(run=sync_folder)

    consume = sub.add_parser("consume", help="apply upsert/delete events from a Redis stream")
    consume.add_argument("--stream", required=True)
    consume.add_argument("--store", required=True)
    consume.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    consume.add_argument("--group", default="ragkit")
    consume.add_argument("--consumer", default=None, help="this consumer's name (<host>-<pid>)")
    consume.add_argument(
        "--chunker",
        choices=["whole", "markdown", "chars", "tokens"],
        default="whole",
        help="one record per event (default) or the event's text chunked",
    )
    consume.add_argument("--batch-size", type=positive, default=100)
    consume.add_argument("--block-ms", type=positive, default=1000)
    consume.add_argument("--claim-idle-ms", type=positive, default=30_000)
    consume.add_argument("--lease-ms", type=positive, default=30_000)
    consume.add_argument(
        "--until-idle", type=float, default=None, help="exit after this many idle seconds"
    )
    consume.add_argument(
        "--exclusive",
        action="store_true",
        help="open the store without shared=True (the only process writing it)",
    )
    consume.set_defaults(run=consume_stream)


def _chunker(kind: str, size: int | None, overlap: int | None) -> Chunker:
    if kind == "whole":
        return WholeChunker()
    if kind == "markdown":
        return MarkdownChunker(size or 1500, overlap or 0)
    if kind == "chars":
        return CharChunker(size or 1000, 100 if overlap is None else overlap)
    return TokenChunker(size or 256, 32 if overlap is None else overlap)


def sync_folder(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    chunker = _chunker(args.chunker, args.size, args.overlap)
    check_new_store(args.store, create=args.create)
    with (
        HybridStore(args.store, shared=args.shared) as store,
        IngestProgress(console, "syncing") as progress,
    ):

        def show(report: IngestReport) -> None:
            # the total grows as files are planned; written counts chunks written or dead
            done = report.upserted + sum(len(d.ids) for d in report.dead_letters)
            progress.update(
                done,
                total=max(report.chunks - report.unchanged, done),
                files=report.sources,
            )

        pipeline = IngestPipeline(
            store,
            chunker=chunker,
            batch_size=args.batch_size,
            tenant=args.tenant,
            dead_letter_path=args.dead_letters,
            progress=show,
        )
        report = pipeline.sync_folder(
            args.folder,
            source_name=args.source_name,
            follow_outside=args.follow_outside,
            prune=not args.no_prune,
        )
        show(report)
    for line in report.skipped.lines():
        console.print(f"[yellow]{line}[/]", soft_wrap=True)
    console.print(report.summary(), soft_wrap=True, highlight=False)
    for letter in report.dead_letters[:10]:
        console.print(f"[red]dead letter[/] {letter.source}: {letter.error}", soft_wrap=True)
    return 1 if report.dead_letters else 0


def consume_stream(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    # SIGTERM finishes the batch in hand, acknowledges it, and exits 0; one that arrives while
    # the store is still opening ends the command before it reads any event.
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    chunker = _chunker(args.chunker, None, None)
    with HybridStore(args.store, shared=not args.exclusive) as store:
        consumer = StreamConsumer(
            store,
            args.redis,
            args.stream,
            group=args.group,
            consumer=args.consumer,
            chunker=chunker,
            batch_size=args.batch_size,
            block_ms=args.block_ms,
            claim_idle_ms=args.claim_idle_ms,
            lease_ms=args.lease_ms,
        )
        signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
        if stopped.is_set():
            consumer.stop()
        console.print(
            f"consuming {args.stream} as {consumer.name} (group {args.group}) into {args.store}",
            soft_wrap=True,
        )
        report = consumer.run(until_idle_s=args.until_idle)
    console.print(
        f"{report.events} events: {report.applied} applied, {report.stale} stale, "
        f"{report.claimed} claimed from idle consumers, {report.dead} dead letters",
        soft_wrap=True,
    )
    return 0
