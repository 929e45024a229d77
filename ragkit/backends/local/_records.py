"""The SQLite source of truth of a LocalShard: records, deletions and a sequence number.

Every write is one transaction. Each inserted record gets the next sequence number as its
``doc`` number, and each deletion is logged with its own sequence number, so the derived
indexes can be checkpointed "up to seq S" and brought up to date by replaying what follows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    doc INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deletions (seq INTEGER PRIMARY KEY, doc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_CHUNK = 500  # stays well below SQLite's bound-parameter limit


@dataclass(slots=True)
class StoredRow:
    doc: int
    id: str
    tenant: str | None
    text: str
    metadata: str
    vector: bytes


@dataclass(slots=True)
class NewRow:
    id: str
    tenant: str | None
    text: str
    metadata: str
    vector: bytes


class RecordLog:
    """Records in SQLite (WAL mode), with a global write sequence."""

    def __init__(self, path: Path | None, *, synchronous: str = "NORMAL") -> None:
        target = ":memory:" if path is None else str(path)
        self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        if path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process; FULL also survives power loss.
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.executescript(_SCHEMA)
        self.seq = int(self.setting("seq") or 0)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def setting(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def _existing(self, ids: Sequence[str]) -> list[tuple[int, str, str]]:
        found: list[tuple[int, str, str]] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.extend(
                self._conn.execute(
                    f"SELECT doc, id, text FROM records WHERE id IN ({marks})", chunk
                ).fetchall()
            )
        return found

    def write(
        self,
        upserts: Sequence[NewRow],
        delete_ids: Sequence[str] = (),
        settings: dict[str, str] | None = None,
    ) -> tuple[list[int], list[tuple[int, str, str]]]:
        """Apply deletions and upserts atomically.

        Returns the doc numbers given to the upserted rows (in order) and the
        ``(doc, id, text)`` of every row removed (replaced by an upsert, or deleted).
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                removed = self._existing([*delete_ids, *(row.id for row in upserts)])
                seq = self.seq
                tombstones = []
                for doc, _, _ in removed:
                    seq += 1
                    tombstones.append((seq, doc))
                if removed:
                    docs_gone = [(doc,) for doc, _, _ in removed]
                    conn.executemany("DELETE FROM records WHERE doc = ?", docs_gone)
                    conn.executemany("INSERT INTO deletions(seq, doc) VALUES (?, ?)", tombstones)
                new_docs = list(range(seq + 1, seq + 1 + len(upserts)))
                seq += len(upserts)
                conn.executemany(
                    "INSERT INTO records(doc, id, tenant, text, metadata, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (doc, r.id, r.tenant, r.text, r.metadata, r.vector)
                        for doc, r in zip(new_docs, upserts)
                    ],
                )
                for key, value in {**(settings or {}), "seq": str(seq)}.items():
                    conn.execute(
                        "INSERT INTO settings(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (key, value),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.seq = seq
            return new_docs, removed

    def get(self, ids: Sequence[str]) -> dict[str, StoredRow]:
        out: dict[str, StoredRow] = {}
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(
                    "SELECT doc, id, tenant, text, metadata, vector FROM records "
                    f"WHERE id IN ({marks})",
                    chunk,
                ):
                    out[row[1]] = StoredRow(*row)
        return out

    def rows_after(self, seq: int, batch: int = 5000) -> Iterator[list[StoredRow]]:
        """Live records with ``doc > seq`` in doc order, in batches."""
        last = seq
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT doc, id, tenant, text, metadata, vector FROM records "
                    "WHERE doc > ? ORDER BY doc LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            yield [StoredRow(*row) for row in rows]
            last = rows[-1][0]

    def deleted_docs_after(self, seq: int) -> list[int]:
        with self._lock:
            return [
                row[0]
                for row in self._conn.execute(
                    "SELECT doc FROM deletions WHERE seq > ? AND doc <= ? ORDER BY seq", (seq, seq)
                )
            ]

    def prune_deletions(self, upto_seq: int) -> None:
        """Forget tombstones that every checkpoint already covers."""
        with self._lock:
            self._conn.execute("DELETE FROM deletions WHERE seq <= ?", (upto_seq,))

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
