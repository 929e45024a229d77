"""What a LocalShard directory must look like before it is opened.

``DIR/STORE`` marks a ragkit store (its kind, format and identity); ``DIR/records.sqlite3`` is
the source of truth. A directory that holds indexes but whose record log is missing or empty
was damaged (the indexes cannot rebuild the records), so it is an error, never an empty
store; a folder that is not a store is not turned into one by a read-only command
(``create=False``); a path that is a file is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ragkit.backends.local._checkpoint import LEGACY, PREFIX
from ragkit.backends.local._records import RecordLog
from ragkit.errors import StoreError

LOG_FILE = "records.sqlite3"
MARKER = "STORE"


def _has_indexes(path: Path) -> bool:
    return path.is_dir() and any(
        (folder / "manifest.json").exists()
        for folder in path.iterdir()
        if folder.name.startswith(PREFIX) or folder.name in LEGACY
    )


def is_store(path: str | os.PathLike[str]) -> bool:
    folder = Path(path)
    return (folder / MARKER).exists() or (folder / LOG_FILE).exists()


def check_store_directory(path: Path, *, create: bool) -> None:
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a store directory")
    log_file = path / LOG_FILE
    log_missing = not log_file.exists() or log_file.stat().st_size == 0
    if log_missing and ((path / MARKER).exists() or _has_indexes(path)):
        raise StoreError(
            f"{path} is a damaged ragkit store: its record log {LOG_FILE} is missing or empty "
            "(the indexes alone cannot rebuild the records); restore it from a backup"
        )
    if not create and not is_store(path):
        raise StoreError(
            f"no ragkit store at {path}; create one with 'ragkit ingest' (or open it with "
            "create=True)"
        )
    path.mkdir(parents=True, exist_ok=True)


def adopt_store(path: Path, log: RecordLog) -> None:
    """Write the marker of a new (or round-1) store; check an existing one belongs to the
    record log it sits beside."""
    marker = path / MARKER
    if marker.exists():
        try:
            found = json.loads(marker.read_text())
        except ValueError:
            raise StoreError(f"{marker} is not a ragkit store marker") from None
        if found.get("store_id") == log.copied_from and log.copied_from is not None:
            _write_marker(marker, log)  # a copy took a new identity: the marker follows it
            return
        if found.get("store_id") != log.store_id:
            raise StoreError(
                f"{path / LOG_FILE} belongs to another store than {marker} describes; "
                "the directory was assembled from two stores"
            )
        return
    _write_marker(marker, log)


def _write_marker(marker: Path, log: RecordLog) -> None:
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"kind": "ragkit.LocalShard", "store_id": log.store_id}))
    tmp.replace(marker)
