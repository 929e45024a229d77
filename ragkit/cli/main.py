"""Argument parsing and dispatch; each command lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ragkit.errors import RagkitError


def _text_fields_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--text-fields",
        default=None,
        metavar="NAMES",
        help="metadata fields indexed as text fields of their own, comma-separated (BM25F; "
        "a title weighs twice by default). Default: title for a new store, else the "
        "store's own; '' for none",
    )


def _positive(value: str) -> int:
    """An argparse type: a positive integer."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


def _chunk_chars(value: str) -> int:
    from ragkit.ingest.chunkers import MIN_CHUNK_CHARS

    number = _positive(value)
    if number < MIN_CHUNK_CHARS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_CHUNK_CHARS}, got {number}")
    return number


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragkit")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of commands that read a folder into a store."""
    parser.add_argument(
        "--source-name",
        default=None,
        help="name the folder's files <name>/<path> (default: the folder's absolute path); "
        "two folders with different names never overwrite each other",
    )
    parser.add_argument(
        "--follow-outside",
        action="store_true",
        help="also read links that lead outside the folder (skipped and reported by default)",
    )
    parser.add_argument(
        "--create",
        action="store_true",
        help="make a store in a folder that already holds other files",
    )


def _parser() -> argparse.ArgumentParser:
    from ragkit.cli import cluster, commands, ingestion, shards
    from ragkit.fusion import Fusion
    from ragkit.schema import SearchMode

    parser = argparse.ArgumentParser(
        prog="ragkit", description="Hybrid BM25 + vector search in one directory."
    )
    parser.add_argument("--version", action="version", version=f"ragkit {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="index a JSONL file, a BEIR folder or a text folder")
    ingest.add_argument(
        "source", help="a .jsonl file, a BEIR folder, or a folder of .txt/.md/.rst files"
    )
    ingest.add_argument(
        "--store", required=True, help="the store directory (made if new or empty; see --create)"
    )
    ingest.add_argument("--tenant", default=None)
    add_source_arguments(ingest)
    ingest.add_argument(
        "--chunk-chars", type=_chunk_chars, default=1000, help="max characters per chunk"
    )
    ingest.add_argument("--batch-size", type=_positive, default=256)
    _text_fields_argument(ingest)
    ingest.set_defaults(run=commands.ingest)

    search = sub.add_parser("search", help="search a store")
    search.add_argument("query")
    search.add_argument("--store", required=True)
    # One flag per SearchRequest option (tests/test_search_options.py keeps them in step).
    search.add_argument("--mode", choices=[m.value for m in SearchMode], default="hybrid")
    search.add_argument("--filter", default=None, help='JSON, e.g. \'{"year": {"$gte": 2020}}\'')
    search.add_argument("-k", type=_positive, default=10)
    search.add_argument("--fusion", choices=[f.value for f in Fusion], default=None)
    search.add_argument("--alpha", type=float, default=None, help="weight of the dense leg")
    search.add_argument("--tenant", default=None)
    search.add_argument(
        "--candidates", type=_positive, default=None, help="hits each leg contributes"
    )
    search.add_argument("--mmr", type=float, default=None, help="MMR lambda in [0, 1]")
    search.add_argument("--rrf-k", type=int, default=None, help="the k of RRF fusion")
    search.add_argument(
        "--field-weights",
        default=None,
        help='JSON weights per text field (BM25F), e.g. \'{"title": 2, "text": 1}\'',
    )
    search.add_argument(
        "--group-by", default=None, help="one answer per value of this field (e.g. source)"
    )
    search.add_argument("--group-size", type=_positive, default=1, help="hits per group")
    search.add_argument(
        "--expand", type=int, default=0, help="neighbouring chunks shown each side of a hit"
    )
    search.add_argument(
        "--highlight", action="store_true", help="mark the query's terms; show a snippet"
    )
    search.add_argument(
        "--decay",
        default=None,
        help='JSON, e.g. \'{"field": "published_at", "origin": "now", "scale": "30d"}\'',
    )
    search.add_argument(
        "--rerank", default=None, help="a sentence-transformers cross-encoder directory"
    )
    search.add_argument(
        "--query-syntax",
        choices=["plain", "simple"],
        default="plain",
        help='simple: "phrases", +required, -excluded, OR',
    )
    search.add_argument("--json", action="store_true", help="print hits as JSON lines")
    search.set_defaults(run=commands.search)

    evaluate = sub.add_parser("eval", help="nDCG@10, Recall@100, MRR@10 on a BEIR dataset")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a BEIR folder (corpus, queries, qrels/<split>.tsv)")
    source.add_argument(
        "--dataset",
        help="a public BEIR dataset by name (e.g. scifact), downloaded once into "
        "~/.cache/ragkit/beir (RAGKIT_CACHE); needs the network the first time",
    )
    evaluate.add_argument(
        "--store", default=None, help="store dir (built from the corpus if empty)"
    )
    evaluate.add_argument("--mode", choices=["hybrid", "dense", "lexical", "all"], default="all")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--json", action="store_true", help="one JSON object per mode")
    _text_fields_argument(evaluate)
    evaluate.set_defaults(run=commands.evaluate)
    migrate = sub.add_parser("migrate", help="copy a store between backends (resumable)")
    migrate.add_argument(
        "--from",
        dest="source",
        required=True,
        help=(
            "DIR, chroma:PATH#COLLECTION, chroma+http://HOST:PORT/COLLECTION, "
            "weaviate+http://HOST:PORT/COLLECTION, milvus+file://PATH#COLLECTION, "
            "milvus+http://HOST:PORT/COLLECTION, qdrant+file://PATH#COLLECTION or "
            "qdrant+http://HOST:PORT/COLLECTION (credentials as USER:PASSWORD@HOST)"
        ),
    )
    migrate.add_argument("--to", dest="target", required=True, help="same forms as --from")
    migrate.add_argument("--batch-size", type=_positive, default=500)
    migrate.set_defaults(run=commands.migrate_store)

    optimize = sub.add_parser("optimize", help="drop deleted records from a store's indexes")
    optimize.add_argument("--store", required=True)
    optimize.set_defaults(run=commands.optimize_store)

    stats = sub.add_parser("stats", help="records, tenants, embedder, index state, disk use")
    stats.add_argument("--store", required=True)
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(run=commands.store_stats)

    backup = sub.add_parser(
        "backup", help="a crash-consistent copy of a store, taken while writes go on"
    )
    backup.add_argument("--store", required=True)
    backup.add_argument("dest", help="where the backup goes: a new path or an empty directory")
    backup.set_defaults(run=commands.backup_store)

    restore = sub.add_parser("restore", help="make a backup a store of its own (new identity)")
    restore.add_argument("backup", help="a directory written by 'ragkit backup'")
    restore.add_argument("dest", help="the new store: a new path or an empty directory")
    restore.set_defaults(run=commands.restore_store)

    ingestion.add_parsers(sub, _positive, add_source_arguments)
    shards.add_parser(sub)
    cluster.add_parser(sub, _positive)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The bundled model is on disk: never let a library try the network at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except RagkitError as exc:
        print(f"ragkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Writes are transactional: what was acknowledged stays, the rest never started.
        print("ragkit: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
