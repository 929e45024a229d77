"""Backups of a LocalShard directory: crash-consistent, taken while writes go on.

A backup is a store directory of its own: the record log copied by SQLite's online backup
(one read transaction, so exactly the writes committed when it began, every batch whole),
the checkpoint that log names (hard-linked where the file system allows, since checkpoint
files are never changed once sealed), the store marker and ``BACKUP.json`` describing it. It
is written beside its destination and renamed into place, so a destination either holds a
whole backup or nothing. The copy's log is marked as not at home, so whoever opens it (by
``ragkit restore`` or directly) gives it a new identity first: two restores of one backup are
two stores, and neither is ever answered from the original's cached results.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from ragkit.backends.local._checkpoint import verify
from ragkit.errors import InvalidInputError, StoreError

BACKUP_FILE = "BACKUP.json"
LOG_FILE = "records.sqlite3"
MARKER = "STORE"
#: ``home`` of a backup's log: never a real file identity, so any open takes a new id
NOT_HOME = "backup"


def check_destination(dest: str | os.PathLike[str]) -> Path:
    """A path a backup can be written to: absent, or an empty directory."""
    path = Path(dest)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidInputError(
            f"backup destination {path} exists and is not an empty directory; "
            "give a new path (a backup never overwrites anything)"
        )
    return path


def staging(dest: Path) -> Path:
    """A fresh directory beside ``dest`` to write into before the rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    return tmp


def publish(tmp: Path, dest: Path) -> None:
    """Move a finished backup into place (an empty ``dest`` directory is replaced)."""
    if dest.exists():
        dest.rmdir()  # empty: checked before the backup began
    tmp.rename(dest)


def _settings(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM settings")}


def _link_or_copy(source: Path, target: Path) -> None:
    target.mkdir()
    for item in source.iterdir():
        try:
            os.link(item, target / item.name)
        except OSError:  # another file system, or no hard links: copy
            shutil.copy2(item, target / item.name)


def write_backup(
    copy_log: Any, store: Path | None, tmp: Path, *, kind: str = "ragkit.LocalShard"
) -> dict[str, Any]:
    """Fill ``tmp`` with a backup: ``copy_log(target)`` copies the record log (SQLite's online
    backup), then the checkpoint it names is linked or copied from ``store``. Returns what
    ``BACKUP.json`` records."""
    log_path = tmp / LOG_FILE
    copy_log(log_path)
    with contextlib.closing(sqlite3.connect(log_path, isolation_level=None)) as conn:
        settings = _settings(conn)
        name = settings.get("index_dir")
        digests = json.loads(settings.get("index_digests") or "[]")
        kept = False
        if store is not None and name is not None:
            try:
                _link_or_copy(store / name, tmp / name)
                verify(tmp / name, digests)
                kept = True
            except (OSError, StoreError):
                # Replaced twice since the log was copied: the backup's indexes are rebuilt
                # from its log when it is first opened (slower, equally correct).
                shutil.rmtree(tmp / name, ignore_errors=True)
        if not kept:
            conn.execute("DELETE FROM settings WHERE key IN ('index_dir', 'index_digests')")
        conn.execute(
            "INSERT INTO settings(key, value) VALUES ('home', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (NOT_HOME,),
        )
        count = int(conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
    store_id = settings.get("store_id", "")
    (tmp / MARKER).write_text(json.dumps({"kind": kind, "store_id": store_id}))
    info = {
        "kind": "ragkit.backup",
        "store_id": store_id,
        "version": int(settings.get("version", "0")),
        "records": count,
        "checkpoint": name if kept else None,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (tmp / BACKUP_FILE).write_text(json.dumps(info, indent=2))
    return info


def integrity_problems(log_path: Path) -> list[str]:
    """What SQLite's ``PRAGMA integrity_check`` finds wrong with a record log (none: [])."""
    uri = f"{log_path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [f"{log_path}: {exc}"]
    return [] if rows == ["ok"] else [f"{log_path}: {r}" for r in rows]


def _new_identity(store: Path) -> str:
    """Give a restored LocalShard directory a fresh id, bound to its file (kept by the
    rename that publishes it), so the id reported is the one it serves under."""
    log_path = store / LOG_FILE
    new_id = uuid.uuid4().hex
    st = log_path.stat()
    with contextlib.closing(sqlite3.connect(log_path, isolation_level=None)) as conn:
        conn.executemany(
            "INSERT INTO settings(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [("store_id", new_id), ("home", f"{st.st_dev}:{st.st_ino}")],
        )
    (store / MARKER).write_text(json.dumps({"kind": "ragkit.LocalShard", "store_id": new_id}))
    return new_id


def restore(backup: str | os.PathLike[str], dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Copy a backup to ``dest`` (absent or an empty directory) as a store of its own: every
    record log passes SQLite's integrity check and every checkpoint its manifest, or nothing
    is written; each store in it gets a new identity. Returns the backup's description with
    the new ``store_id``."""
    source = Path(backup)
    described = source / BACKUP_FILE
    if not described.is_file():
        raise InvalidInputError(f"{source} is not a ragkit backup (it has no {BACKUP_FILE})")
    info: dict[str, Any] = json.loads(described.read_text())
    target = check_destination(dest)
    tmp = staging(target)
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        (tmp / BACKUP_FILE).unlink()
        logs = sorted(tmp.rglob(LOG_FILE))
        problems = [p for log_path in logs for p in integrity_problems(log_path)]
        for log_path in logs:
            uri = f"{log_path.resolve().as_uri()}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                settings = _settings(conn)
            name = settings.get("index_dir")
            if name is not None:
                try:
                    verify(log_path.parent / name, json.loads(settings["index_digests"]))
                except (OSError, StoreError, KeyError, ValueError) as exc:
                    problems.append(f"{log_path.parent}: {exc}")
        if problems or not logs:
            raise StoreError(
                f"{source} is damaged, nothing was restored: "
                + ("; ".join(problems[:5]) or "it holds no record log")
            )
        for log_path in logs:
            _new_identity(log_path.parent)
        layout = tmp / "store.json"
        if layout.exists():
            data = json.loads(layout.read_text())
            st = tmp.stat()
            data.update(store_id=uuid.uuid4().hex, home=f"{st.st_dev}:{st.st_ino}")
            layout.write_text(json.dumps(data, indent=2))
            new_id = str(data["store_id"])
        else:
            new_id = json.loads((tmp / MARKER).read_text())["store_id"]
        publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**info, "restored_as": new_id}
