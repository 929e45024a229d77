"""Checkpoints that cannot disagree with the record log unnoticed.

A checkpoint directory holds the derived indexes and a ``manifest.json`` listing every file
with its CRC-32. The manifest's SHA-256 is recorded in SQLite (the source of truth) when the
checkpoint is installed, so an index file that was truncated, edited or swapped (still
parseable or not), a manifest with a lowered sequence number, or a checkpoint copied in from
another store is refused, and the shard rebuilds its indexes from SQLite instead.

Checkpoints are versioned directories, ``DIR/checkpoint-<seq>-<token>/``, written once and
never changed: a new one is written and sealed beside the installed one, then installed by a
single SQLite transaction naming it (``index_dir``) and its digest. A reader opening meanwhile
reads the name and digest in one snapshot, so it loads the previous checkpoint or the new one,
never a mix; the previous one is kept until the next install, and a reader whose checkpoint
was removed under it (two installs during one load) reads the name again instead of
rebuilding. Stores from before keep their checkpoint in ``DIR/index/`` until their next one.

CRC-32 (3.5 GB/s here, against SHA-256's 1.3 GB/s on multi-GB indexes) is enough for the
files: anyone able to forge a collision can edit SQLite in the same directory, so what is
guaranteed is consistency with SQLite, not authenticity (see SECURITY.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sqlite3
import uuid
import zlib
from pathlib import Path

from ragkit.errors import StoreError

MANIFEST = "manifest.json"
PREFIX = "checkpoint-"
#: where stores from before versioned checkpoints keep theirs (``index.old``: mid-swap)
LEGACY = ("index", "index.old")


def installed_folder(store: Path) -> Path | None:
    """The checkpoint directory a closed store's record log names (``None``: none yet)."""
    uri = f"{(store / 'records.sqlite3').resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = 'index_dir'").fetchone()
    if row is not None:
        return store / str(row[0])
    legacy = [store / name for name in LEGACY if (store / name / MANIFEST).exists()]
    return legacy[0] if legacy else None


def new_folder(store: Path, seq: int) -> Path:
    """A fresh, unique directory for the next checkpoint (nobody points at it yet)."""
    folder = store / f"{PREFIX}{seq:012d}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


def remove_others(store: Path, keep: set[str]) -> None:
    """Remove every checkpoint directory (legacy ones and leftovers of a crash included)
    except those named in ``keep``."""
    for entry in store.iterdir():
        name = entry.name
        ours = name.startswith(PREFIX) or name in LEGACY or name == "index.tmp"
        if ours and name not in keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _crc32(path: Path) -> int:
    value = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            value = zlib.crc32(chunk, value)
    return value


def seal(folder: Path) -> str:
    """Record every file's CRC-32 in the manifest; returns the manifest's SHA-256."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {
        p.name: _crc32(p) for p in sorted(folder.iterdir()) if p.name != MANIFEST and p.is_file()
    }
    data = json.dumps(manifest, sort_keys=True).encode()
    (folder / MANIFEST).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def verify(folder: Path, accepted: list[str]) -> dict[str, object]:
    """The manifest of a checkpoint whose manifest SQLite accepted and whose files are
    exactly the ones it lists, unchanged; otherwise ``StoreError``."""
    data = (folder / MANIFEST).read_bytes()
    if hashlib.sha256(data).hexdigest() not in accepted:
        raise StoreError(f"checkpoint {folder} is not the one the record log installed")
    manifest: dict[str, object] = json.loads(data)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise StoreError(f"checkpoint {folder} lists no files")
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST}
    if present != set(files):
        missing, extra = sorted(set(files) - present), sorted(present - set(files))
        raise StoreError(
            f"checkpoint {folder} does not hold the files its manifest lists "
            f"(missing: {missing or 'none'}; unlisted: {extra or 'none'})"
        )
    for name, crc in files.items():
        if _crc32(folder / name) != crc:
            raise StoreError(f"checkpoint file {folder / name} is damaged (CRC-32 mismatch)")
    return manifest
