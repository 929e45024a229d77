"""The CLI commands, printing with rich (tables, progress bars)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragkit.beir import fetch_dataset, read_qrels
from ragkit.cli._progress import IngestProgress
from ragkit.errors import InvalidInputError
from ragkit.evaluation import evaluate as run_evaluation
from ragkit.ingest.sources import Skipped, SourceDoc, read_source
from ragkit.schema import Hit
from ragkit.store import HybridStore

T = TypeVar("T")


def _batches(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while batch := list(islice(items, size)):
        yield batch


def check_new_store(path: str, *, create: bool) -> None:
    """A write command makes a store only in a new or empty folder, or with ``--create``:
    a typo never turns a folder of other files (or ``/`` through a link) into a store."""
    from ragkit.backends.local._directory import is_store
    from ragkit.backends.sharded.layout import StoreLayout

    folder = Path(path)
    if create or not folder.exists() or is_store(folder) or StoreLayout.exists(folder):
        return
    if not folder.is_dir():
        raise InvalidInputError(f"--store {path} is a file, not a store directory")
    if any(folder.iterdir()):
        raise InvalidInputError(
            f"--store {path} is a folder that holds other files and no ragkit store; name a new "
            "or empty folder, or pass --create to make a store in this one"
        )


def text_fields(args: argparse.Namespace, path: str | Path) -> list[str] | None:
    """``--text-fields`` as given; without it, ``title`` for a new store (the loaders write
    it; a store that indexes it weighs a title match twice), ``None`` (the store's own) for
    an existing one."""
    from ragkit.backends.local._directory import is_store
    from ragkit.backends.sharded.layout import StoreLayout

    if args.text_fields is not None:
        return [name.strip() for name in args.text_fields.split(",") if name.strip()]
    folder = Path(path)
    if is_store(folder) or StoreLayout.exists(folder):
        return None
    return ["title"]


def ingest_docs(
    store: HybridStore,
    docs: Iterator[SourceDoc],
    *,
    total: int | None,
    batch_size: int,
    tenant: str | None,
    console: Console,
    label: str = "indexing",
) -> int:
    done = 0
    with IngestProgress(console, label, total=total) as progress:
        for batch in _batches(docs, batch_size):
            store.add_texts(
                [d.text for d in batch],
                [d.metadata for d in batch],
                [d.id for d in batch],
                tenant=tenant,
            )
            done += len(batch)
            progress.update(done)
    return done


def _report(console: Console, skipped: Skipped) -> None:
    for line in skipped.lines():
        console.print(f"[yellow]{line}[/]", soft_wrap=True)


def ingest(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    source = Path(args.source)
    check_new_store(args.store, create=args.create)
    skipped = Skipped()
    docs = list(
        read_source(
            source,
            max_chars=args.chunk_chars,
            skipped=skipped,
            source_name=args.source_name,
            follow_outside=args.follow_outside,
        )
    )
    _report(console, skipped)
    if not docs:
        raise InvalidInputError(f"{source} holds no documents to index")
    started = time.monotonic()
    with HybridStore(args.store, text_fields=text_fields(args, args.store)) as store:
        n = ingest_docs(
            store,
            iter(docs),
            total=len(docs),
            batch_size=args.batch_size,
            tenant=args.tenant,
            console=console,
        )
        seconds = time.monotonic() - started
        console.print(
            f"indexed [bold]{n}[/] passages from {source} into {args.store} "
            f"({store.count(tenant=args.tenant)} in the store) in {seconds:.1f} s "
            f"({n / max(seconds, 1e-9):.1f} chunks/s); {skipped.files()} files skipped",
            soft_wrap=True,
        )
    return 0


def _local(store: str) -> bool:
    """Is this directory a single-shard store (which opens read-only for reads)?"""
    from ragkit.backends.sharded.layout import StoreLayout

    return not StoreLayout.exists(store)


def _score(score: float | None, rank: int | None) -> str:
    return "-" if score is None else f"{score:.3f} (#{rank or '-'})"


def _json_option(value: str | None, flag: str) -> Any:
    try:
        return json.loads(value) if value else None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{flag} is not valid JSON: {exc}") from None


def _marked(hit: Hit) -> str:
    """The hit's snippet (``--highlight``), its matched terms in bold, on one line."""
    text, spans = hit.text, hit.highlights or []
    start = text.find(hit.snippet or "")
    end = start + len(hit.snippet or "")
    out, at = [], start
    for begin, stop in spans:
        if begin >= at and stop <= end:
            out += [escape(text[at:begin]), f"[bold]{escape(text[begin:stop])}[/bold]"]
            at = stop
    out.append(escape(text[at:end]))
    return " ".join("".join(out).split())


def search(args: argparse.Namespace) -> int:
    console = Console()
    flt = _json_option(args.filter, "--filter")
    # Read-only: a store an application holds open can be searched too.
    with HybridStore(args.store, create=False, read_only=_local(args.store)) as store:
        result = store.search(
            args.query,
            k=args.k,
            mode=args.mode,
            filter=flt,
            fusion=args.fusion,
            alpha=args.alpha,
            tenant=args.tenant,
            candidates=args.candidates,
            mmr=args.mmr,
            rrf_k=args.rrf_k,
            field_weights=_json_option(args.field_weights, "--field-weights"),
            group_by=args.group_by,
            group_size=args.group_size,
            expand=args.expand,
            highlight=args.highlight,
            decay=_json_option(args.decay, "--decay"),
            rerank=args.rerank,
            query_syntax=args.query_syntax,
        )
    group_of = {hit.id: group.key for group in result.groups or () for hit in group.hits}
    if args.json:
        for rank, hit in enumerate(result, start=1):
            row = {"id": hit.id, **hit.score_info(rank, result.scale)}
            if args.group_by is not None:
                row["group"] = group_of[hit.id]
            row.update(metadata=hit.metadata, text=hit.window_text)
            print(json.dumps(row, ensure_ascii=False, default=str))
        return 0
    if not result.hits:
        console.print(f"no results for {args.query!r} in {args.store}")
        return 0
    table = Table(title=f"{args.mode} search: {args.query!r}", show_lines=True)
    columns = ["#", "id", "score", "dense", "lexical", "text"]
    if args.group_by is not None:
        columns.insert(1, args.group_by)
    for column in columns:
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(result, start=1):
        text = " ".join(hit.window_text.split())  # one line: newlines would break the table
        limit = 160 if not args.expand else 600
        snippet = escape(text if len(text) <= limit else text[: limit - 3] + "...")
        if hit.snippet is not None:
            snippet = _marked(hit)
        first = [str(rank)] + ([str(group_of[hit.id])] if args.group_by is not None else [])
        table.add_row(
            *first,
            hit.id,
            f"{hit.score:.4f}",
            _score(hit.dense_score, hit.dense_rank),
            _score(hit.lexical_score, hit.lexical_rank),
            snippet,
        )
    console.print(table)
    return 0


def _eval_store(args: argparse.Namespace, scratch: str) -> HybridStore:
    path = args.store or Path(scratch) / "store"
    return HybridStore(path, text_fields=text_fields(args, path))


def evaluate(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.dataset:
        console.print(f"fetching BEIR dataset {args.dataset} (once; then from the cache)")
        data = fetch_dataset(args.dataset)
    else:
        data = Path(args.data)
    modes = ["hybrid", "dense", "lexical"] if args.mode == "all" else [args.mode]
    n_queries = len(read_qrels(data, args.split))
    with tempfile.TemporaryDirectory() as scratch, _eval_store(args, scratch) as store:
        if store.count() == 0:
            skipped = Skipped()
            docs = read_source(data, skipped=skipped)
            ingest_docs(
                store,
                docs,
                total=None,
                batch_size=256,
                tenant=None,
                console=console,
                label="indexing corpus",
            )
            _report(console, skipped)
        with IngestProgress(
            console, "querying", total=n_queries * len(modes), unit="queries"
        ) as progress:
            results = run_evaluation(
                store,
                data,
                modes,
                split=args.split,
                progress=lambda n: progress.update(progress.done + n),
            )
    if args.json:
        for result in results:
            print(json.dumps(result.as_dict()))
        return 0
    table = Table(title=f"{data.name} ({args.split}, {results[0].queries} queries)")
    for column in ("mode", "nDCG@10", "Recall@100", "MRR@10"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for r in results:
        table.add_row(r.mode, f"{r.ndcg_at_10:.4f}", f"{r.recall_at_100:.4f}", f"{r.mrr_at_10:.4f}")
    Console().print(table)
    return 0


def migrate_store(args: argparse.Namespace) -> int:
    from ragkit.backends._remote import redact
    from ragkit.migrate import migrate, open_uri

    console = Console(stderr=True)
    source = open_uri(args.source)
    try:
        target = open_uri(args.target)
    except BaseException:
        source.close()
        raise
    try:
        with IngestProgress(console, "migrating", unit="records") as progress:

            def on_batch(done: int, total: int) -> None:
                progress.update(done, total=total)
                print(f"copied {done}/{total}", flush=True)  # one line per batch, for scripts

            report = migrate(
                source, target, key=args.source, batch_size=args.batch_size, on_batch=on_batch
            )
    finally:
        source.close()
        target.close()
    resumed = f" (resumed at {report.resumed_from})" if report.resumed_from else ""
    console.print(
        f"migrated {report.total} records from {redact(args.source)} to "
        f"{redact(args.target)}{resumed}; counts match, {report.verified_sample} sampled "
        "records identical"
    )
    return 0


def optimize_store(args: argparse.Namespace) -> int:
    with HybridStore(args.store, create=False) as store:
        dropped = store.optimize()
        live = store.count()
    Console(stderr=True).print(f"{args.store}: dropped {dropped} dead index rows; {live} records")
    return 0


def backup_store(args: argparse.Namespace) -> int:
    """A crash-consistent copy of a store, taken while an application keeps writing to it
    (a local store is read without its lock; a sharded store needs no other process to
    hold it: back it up from that process with HybridStore.backup)."""
    from ragkit._opening import open_path

    backend = open_path(args.store, create=False, read_only=_local(args.store))
    try:
        info = backend.backup(args.dest)
    finally:
        backend.close()
    Console(stderr=True).print(
        f"backed up {args.store} to {args.dest}: {info['records']:,} records "
        f"(store {info['store_id'][:12]}, {info['created_at']}); "
        f"restore it with 'ragkit restore {args.dest} NEW_DIR'"
    )
    return 0


def restore_store(args: argparse.Namespace) -> int:
    """A backup made a store of its own: checked first, then given a new identity."""
    from ragkit.backup import restore

    info = restore(args.backup, args.dest)
    Console(stderr=True).print(
        f"restored {args.backup} to {args.dest}: {info['records']:,} records as of "
        f"{info['created_at']}, new store id {info['restored_as'][:12]}"
    )
    return 0


def store_stats(args: argparse.Namespace) -> int:
    # Read-only: the stats of a store an application holds open can be read too.
    with HybridStore(args.store, create=False, read_only=_local(args.store)) as store:
        stats = store.stats()
    for key in ("searches", "writes", "cache", "latency_ms"):
        stats.pop(key)  # this command's own handle: always zero, never the application's
    if args.json:
        print(json.dumps(stats, default=str))
        return 0
    console = Console()
    table = Table(title=f"{args.store}", show_header=False)
    table.add_row("records", f"{stats['records']:,}")
    table.add_row("tenants", str(stats["tenants"]))
    table.add_row("embedder", f"{stats['embedder']['model_id']} ({stats['embedder']['dim']}-d)")
    table.add_row("backend", stats["backend"])
    table.add_row("generation (moves with every write)", str(stats["generation"]))
    if "index" in stats:
        index = stats["index"]
        table.add_row(
            "index rows (dead: dropped by ragkit optimize)",
            f"{index['rows']:,} ({index['dead_rows']:,} dead)",
        )
        table.add_row("HNSW graph", "yes" if index["hnsw"] else "no (exact scan)")
    if "disk_bytes" in stats:
        table.add_row("on disk", f"{stats['disk_bytes'] / 2**20:.1f} MiB")
    console.print(table)
    if "cluster" in stats:
        hosts = Table(title="hosts")
        for column in ("host", "health", "breaker", "errors", "messages"):
            hosts.add_column(column)
        for row in stats["cluster"]["hosts"]:
            hosts.add_row(
                *(str(row[c]) for c in ("name", "health", "breaker", "errors", "messages"))
            )
        console.print(hosts)
    return 0
