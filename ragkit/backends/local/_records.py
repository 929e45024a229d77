"""The SQLite source of truth of a LocalShard: records, deletions, tombstones, two counters.

Every write is one transaction. Two counters move with it:

- ``seq`` numbers rows for the derived indexes: each inserted record gets the next ``seq`` as
  its ``doc`` number and each removal is logged in ``deletions`` with its own ``seq``, so the
  indexes can be checkpointed "up to seq S" and brought up to date by replaying what follows.
- ``version`` counts writes (one per transaction) and is what replication speaks: every row
  keeps the version that wrote it and every deleted key leaves a tombstone with the version
  that deleted it, so "the changes after version V" is two indexed range scans.

Records are keyed by (tenant, id); the default tenant is stored as ''.

A store's identity (``store_id``, what caches key results by) is bound to the SQLite file it
lives in: the log records the file's device and inode (``home``) beside the id, and a log
opened for writing in another file (``cp -r``, a restored backup, a copy on another disk) takes
a new id before it serves, so two copies never share cached results. Every write also sets a
random ``state`` token in its transaction: ``state_key()`` (version and token) names one set of
records, so even a copy that keeps an id (a file replaced in place whose inode was reused) never
matches another store's key after its first write.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.errors import StoreError

FORMAT = 2
DEFAULT_TENANT = ""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    doc INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL,
    version INTEGER NOT NULL,
    UNIQUE (tenant, id)
);
CREATE INDEX IF NOT EXISTS records_version ON records(version);
CREATE TABLE IF NOT EXISTS deletions (seq INTEGER PRIMARY KEY, doc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS tombstones_version ON tombstones(version);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Round-1 stores (format 1) keyed records by id alone and had no versions.
_UPGRADE_FROM_1 = """
CREATE TABLE records_v2 (
    doc INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL,
    version INTEGER NOT NULL,
    UNIQUE (tenant, id)
);
INSERT INTO records_v2 (doc, tenant, id, text, metadata, vector, version)
    SELECT doc, COALESCE(tenant, ''), id, text, metadata, vector, 0 FROM records;
DROP TABLE records;
ALTER TABLE records_v2 RENAME TO records;
"""

_CHUNK = 500  # stays well below SQLite's bound-parameter limit
_COLUMNS = "doc, id, tenant, text, metadata, vector, version"


def to_db_tenant(tenant: str | None) -> str:
    return DEFAULT_TENANT if tenant is None else tenant


def from_db_tenant(tenant: str) -> str | None:
    return None if tenant == DEFAULT_TENANT else tenant


@dataclass(slots=True)
class StoredRow:
    doc: int
    id: str
    tenant: str | None
    text: str
    metadata: str
    vector: bytes
    version: int

    @classmethod
    def from_db(cls, row: tuple[int, str, str, str, str, bytes, int]) -> StoredRow:
        doc, rid, tenant, text, metadata, vector, version = row
        return cls(doc, rid, from_db_tenant(tenant), text, metadata, vector, version)


@dataclass(slots=True)
class NewRow:
    id: str
    tenant: str | None
    text: str
    metadata: str
    vector: bytes
    version: int


@dataclass(slots=True, frozen=True)
class Removed:
    """A row a write removed (replaced or deleted): what the derived indexes must forget."""

    doc: int
    tenant: str | None
    id: str
    text: str


#: A cached row: StoredRow's fields as a plain tuple (see ``RowCache``).
_CachedRow = tuple[int, str, "str | None", str, str, bytes, int]

#: Default byte budget of a RecordLog's row cache (see ``RowCache``).
DEFAULT_ROW_CACHE_BYTES = 32 * 2**20

#: What a cached row costs beyond its strings: the row object and its entry in the ordered
#: dict (about 210 bytes on CPython 3.11; ``tests/test_record_cache.py`` measures it).
_ROW_OVERHEAD = 220


class RowCache:
    """Rows read by doc number, without their vectors, least recently used first out once
    their text, metadata and ids pass a byte budget.

    A doc number is given once and its row never changes (an update inserts a new doc and
    removes the old one), so a cached row is never stale; a write drops the rows it removes
    so the budget holds live rows. Reading a search's hits from here instead of SQLite takes
    about 3 us instead of 40-80 (``bench/bench_speed.py --stages``); engines keep their hot
    stored fields in memory the same way (Vespa's summary cache, Qdrant's in-memory
    payloads).
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        # Plain tuples, not StoredRow objects: CPython's collector stops tracking a tuple of
        # plain values once it survives a collection, so tens of thousands of cached rows add
        # nothing to every full collection's walk (a pause of every thread, ``bench/soak.py``).
        self._rows: OrderedDict[int, _CachedRow] = OrderedDict()

    @staticmethod
    def _cost(row: _CachedRow) -> int:
        _, rid, _, text, metadata, _, _ = row
        return sys.getsizeof(text) + sys.getsizeof(metadata) + sys.getsizeof(rid) + _ROW_OVERHEAD

    def take(self, docs: Sequence[int], out: dict[int, StoredRow]) -> list[int]:
        """Put the cached rows of ``docs`` into ``out``; return the docs not cached."""
        rows, missing = self._rows, []
        for doc in docs:
            row = rows.get(doc)
            if row is None:
                missing.append(doc)
            else:
                rows.move_to_end(doc)
                out[doc] = StoredRow(*row)
        self.hits += len(docs) - len(missing)
        self.misses += len(missing)
        return missing

    @staticmethod
    def pack(row: StoredRow) -> _CachedRow:
        return (row.doc, row.id, row.tenant, row.text, row.metadata, row.vector, row.version)

    def put(self, row: StoredRow) -> None:
        cached = self.pack(row)
        cost = self._cost(cached)
        if cost > self.budget or row.doc in self._rows:
            return
        self._rows[row.doc] = cached
        self.size += cost
        while self.size > self.budget:
            _, old = self._rows.popitem(last=False)
            self.size -= self._cost(old)

    def drop(self, docs: Iterator[int] | Sequence[int]) -> None:
        for doc in docs:
            row = self._rows.pop(doc, None)
            if row is not None:
                self.size -= self._cost(row)

    def clear(self) -> None:
        self._rows.clear()
        self.size = 0

    def info(self) -> dict[str, int]:
        return {
            "rows": len(self._rows),
            "bytes": self.size,
            "budget_bytes": self.budget,
            "hits": self.hits,
            "misses": self.misses,
        }


class RecordLog:
    """Records in SQLite (WAL mode), with the index sequence and the replication version.

    ``cache_bytes``: the budget of the ``RowCache`` that serves ``get_docs`` without vectors
    (0 turns it off).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        synchronous: str = "NORMAL",
        read_only: bool = False,
        cache_bytes: int = DEFAULT_ROW_CACHE_BYTES,
    ) -> None:
        target = ":memory:" if path is None else str(path)
        self._path = path
        self._lock = threading.RLock()
        self.row_cache = RowCache(cache_bytes) if cache_bytes > 0 else None
        self.read_only = read_only
        try:
            if read_only:
                assert path is not None
                uri = f"{path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(
                    uri, uri=True, check_same_thread=False, isolation_level=None
                )
            else:
                self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
                if path is not None:
                    self._conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode survives a killed process; FULL also survives power loss.
                self._conn.execute(f"PRAGMA synchronous={synchronous}")
                self._upgrade()
                self._conn.executescript(_SCHEMA)
            self.seq = int(self.setting("seq") or 0)
            self.version = int(self.setting("version") or 0)
            #: the id this log had before it was found to be a copy (then ``store_id`` is new)
            self.copied_from: str | None = None
            self.store_id: str = self._identity(path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{target} is not a readable ragkit record log: {exc}") from None

    def _identity(self, path: Path | None) -> str:
        """The store id, new when the file is not the one the id was given in (a copy)."""
        home = None if path is None else _file_identity(path)
        with self._lock:
            if self.read_only:
                stored = self.setting("store_id") or uuid.uuid4().hex
                if home is not None and self.setting("home") not in (None, home):
                    # A copy nobody has opened for writing yet: an id of its own, derived from
                    # the file, so every reader of this copy agrees on it.
                    return uuid.uuid5(uuid.UUID(hex=_as_uuid_hex(stored)), home).hex
                return stored
            self._conn.execute("BEGIN IMMEDIATE")  # two openers of one copy agree on its id
            try:
                kept = self.setting("store_id")
                found = self.setting("home")
                if kept is None or (home is not None and found not in (None, home)):
                    self.copied_from = kept
                    kept = uuid.uuid4().hex
                    self.set_setting("store_id", kept)
                if home is not None and found != home:
                    self.set_setting("home", home)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return kept

    def state_key(self) -> str:
        """The committed version and the token of the write that made it, read together:
        equal for two logs only when they hold the same records."""
        with self._lock:
            rows = dict(
                self._conn.execute(
                    "SELECT key, value FROM settings WHERE key IN ('version', 'state')"
                ).fetchall()
            )
        return f"{rows.get('version', '0')}:{rows.get('state', '')}"

    def reload_counters(self) -> None:
        """Read ``seq`` and ``version`` again (a read-only log follows another writer)."""
        self.seq = int(self.setting("seq") or 0)
        self.version = int(self.setting("version") or 0)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one committed state, whatever another process writes meanwhile."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield
            finally:
                self._conn.execute("COMMIT")

    def _upgrade(self) -> None:
        columns = [row[1] for row in self._conn.execute("PRAGMA table_info(records)")]
        if columns and "version" not in columns:
            self._conn.executescript(f"BEGIN IMMEDIATE; {_UPGRADE_FROM_1} COMMIT;")

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

    def _existing(self, keys: Sequence[tuple[str | None, str]]) -> list[Removed]:
        by_tenant: dict[str, list[str]] = {}
        for tenant, rid in keys:
            by_tenant.setdefault(to_db_tenant(tenant), []).append(rid)
        found: list[Removed] = []
        for tenant, ids in by_tenant.items():
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                found.extend(
                    Removed(doc, from_db_tenant(tenant), rid, text)
                    for doc, rid, text in self._conn.execute(
                        f"SELECT doc, id, text FROM records WHERE tenant = ? AND id IN ({marks})",
                        (tenant, *chunk),
                    )
                )
        return found

    def existing(self, keys: Sequence[tuple[str | None, str]]) -> list[Removed]:
        with self._lock:
            return self._existing(keys)

    def write(
        self,
        upserts: Sequence[NewRow],
        deletes: Sequence[tuple[str | None, str, int]] = (),
        *,
        version: int,
        settings: dict[str, str] | None = None,
        wipe: bool = False,
    ) -> tuple[list[int], list[Removed]]:
        """Apply deletes (with their tombstone versions), then upserts, atomically, and set
        the version. ``wipe`` first removes every record (a replica's fresh copy).

        Returns the doc numbers given to the upserted rows (in order) and every row removed
        (replaced by an upsert, deleted, or wiped).
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if wipe:
                    removed = [
                        Removed(doc, from_db_tenant(t), rid, text)
                        for doc, t, rid, text in conn.execute(
                            "SELECT doc, tenant, id, text FROM records"
                        )
                    ]
                    conn.execute("DELETE FROM tombstones")
                else:
                    keys = [(t, i) for t, i, _ in deletes] + [(r.tenant, r.id) for r in upserts]
                    removed = self._existing(keys)
                seq = self.seq
                gone = []
                for item in removed:
                    seq += 1
                    gone.append((seq, item.doc))
                if self.row_cache is not None:
                    self.row_cache.drop(item.doc for item in removed)
                if gone:
                    conn.executemany("DELETE FROM records WHERE doc = ?", [(d,) for _, d in gone])
                    conn.executemany("INSERT INTO deletions(seq, doc) VALUES (?, ?)", gone)
                if deletes:
                    conn.executemany(
                        "INSERT OR REPLACE INTO tombstones(tenant, id, version) VALUES (?, ?, ?)",
                        [(to_db_tenant(t), i, v) for t, i, v in deletes],
                    )
                if upserts and not wipe:
                    conn.executemany(
                        "DELETE FROM tombstones WHERE tenant = ? AND id = ?",
                        [(to_db_tenant(r.tenant), r.id) for r in upserts],
                    )
                new_docs = list(range(seq + 1, seq + 1 + len(upserts)))
                seq += len(upserts)
                conn.executemany(
                    f"INSERT INTO records({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (doc, r.id, to_db_tenant(r.tenant), r.text, r.metadata, r.vector, r.version)
                        for doc, r in zip(new_docs, upserts)
                    ],
                )
                values = {
                    **(settings or {}),
                    "seq": str(seq),
                    "version": str(version),
                    "state": uuid.uuid4().hex,
                }
                conn.executemany(
                    "INSERT INTO settings(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    list(values.items()),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.seq = seq
            self.version = version
            return new_docs, removed

    def get(
        self, ids: Sequence[str], tenant: str | None, *, vectors: bool = True
    ) -> dict[str, StoredRow]:
        """Rows of ``tenant`` by id; ``vectors=False`` leaves the vector blobs unread (empty)."""
        out: dict[str, StoredRow] = {}
        db_tenant = to_db_tenant(tenant)
        columns = _COLUMNS if vectors else _COLUMNS.replace("vector", "x''")
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(
                    f"SELECT {columns} FROM records WHERE tenant = ? AND id IN ({marks})",
                    (db_tenant, *chunk),
                ):
                    out[row[1]] = StoredRow.from_db(row)
        return out

    def get_docs(self, docs: Sequence[int], *, vectors: bool = True) -> dict[int, StoredRow]:
        """Rows by doc number (the integer key: faster than by tenant and id); without
        vectors, from the row cache where it holds them."""
        out: dict[int, StoredRow] = {}
        columns = _COLUMNS if vectors else _COLUMNS.replace("vector", "x''")
        cache = None if vectors else self.row_cache
        with self._lock:
            if cache is not None:
                docs = cache.take(docs, out)
            for start in range(0, len(docs), _CHUNK):
                chunk = docs[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(
                    f"SELECT {columns} FROM records WHERE doc IN ({marks})", tuple(chunk)
                ):
                    stored = out[row[0]] = StoredRow.from_db(row)
                    if cache is not None:
                        cache.put(stored)
        return out

    def rows_after(self, seq: int, batch: int = 5000) -> Iterator[list[StoredRow]]:
        """Live records with ``doc > seq`` in doc order, in batches."""
        last = seq
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE doc > ? ORDER BY doc LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            yield [StoredRow.from_db(row) for row in rows]
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
        """Forget index deletions that every checkpoint already covers (not tombstones)."""
        with self._lock:
            self._conn.execute("DELETE FROM deletions WHERE seq <= ?", (upto_seq,))

    def changes(
        self, since: int, limit: int
    ) -> tuple[list[StoredRow], list[tuple[str | None, str, int]], int]:
        """Rows and tombstones written after ``since``, up to a version that keeps the batch
        near ``limit`` rows (every row of the last version included). Returns them and that
        version."""
        with self._lock:
            cut = self._conn.execute(
                "SELECT version FROM records WHERE version > ? ORDER BY version LIMIT 1 OFFSET ?",
                (since, max(0, limit - 1)),
            ).fetchone()
            upto = self.version if cut is None else int(cut[0])
            rows = [
                StoredRow.from_db(row)
                for row in self._conn.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE version > ? AND version <= ? "
                    "ORDER BY version, doc",
                    (since, upto),
                )
            ]
            tombstones = [
                (from_db_tenant(t), i, int(v))
                for t, i, v in self._conn.execute(
                    "SELECT tenant, id, version FROM tombstones WHERE version > ? AND version <= ?",
                    (since, upto),
                )
            ]
            return rows, tombstones, upto

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def read_version(self) -> int:
        """The version as committed (another process's writes included)."""
        return int(self.setting("version") or 0)

    def tenant_counts(self) -> dict[str | None, int]:
        with self._lock:
            rows = self._conn.execute("SELECT tenant, COUNT(*) FROM records GROUP BY tenant")
            return {from_db_tenant(t): int(n) for t, n in rows}

    def index_digests(self) -> list[str]:
        """Digests of the checkpoint manifests this log accepts (see ``_checkpoint``)."""
        return list(json.loads(self.setting("index_digests") or "[]"))

    def installed_checkpoint(self) -> tuple[str | None, list[str]]:
        """The installed checkpoint's directory name (``None``: a store from before
        checkpoints were versioned, whose checkpoint is ``index``) and the digests accepted,
        read together."""
        with self._lock:
            rows = dict(
                self._conn.execute(
                    "SELECT key, value FROM settings WHERE key IN ('index_dir', 'index_digests')"
                ).fetchall()
            )
        return rows.get("index_dir"), list(json.loads(rows.get("index_digests") or "[]"))

    def backup_to(self, target: Path) -> None:
        """Copy the log to ``target`` with SQLite's online backup, in one step: one read
        transaction, so the copy holds exactly the writes committed when it began. A file
        log is read through a connection of its own, so writers go on meanwhile."""
        dst = sqlite3.connect(target)
        try:
            if self._path is None:
                with self._lock:
                    self._conn.backup(dst)
            else:
                uri = f"{self._path.resolve().as_uri()}?mode=ro"
                with contextlib.closing(sqlite3.connect(uri, uri=True)) as src:
                    src.backup(dst)
        finally:
            dst.close()

    def install_checkpoint(self, name: str, digest: str) -> None:
        """Point the log at a sealed checkpoint directory, name and digest in one
        transaction: a reader sees the previous checkpoint or this one, never a mix."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO settings(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [("index_dir", name), ("index_digests", json.dumps([digest]))],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise


def _file_identity(path: Path) -> str:
    """The device and inode of the file: kept by a rename, new for any copy of it."""
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}"


def _as_uuid_hex(value: str) -> str:
    """A 32-digit hex id for ``uuid5`` (store ids are uuid4 hex; anything else is hashed)."""
    try:
        return uuid.UUID(hex=value).hex
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_OID, value).hex


class Closed:
    """Stands in for the record log and indexes of a closed shard: every use is a clear
    error (``StoreError``), never an ``AttributeError`` or a stale answer."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        raise StoreError(f"{self._name} is closed; open the store again to use it")
