"""Cache backends: bytes by key with a time to live (see ``ragkit.cache``)."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class CacheBackend(ABC):
    """Bytes by key, with a time to live."""

    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None: ...

    def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Release connections (nothing by default)."""


class MemoryCache(CacheBackend):
    """An in-process LRU with per-entry TTL."""

    def __init__(self, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            value, expires = item
            if expires is not None and expires < time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        with self._lock:
            expires = None if ttl_s is None else time.monotonic() + ttl_s
            self._items[key] = (value, expires)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


class SQLiteCache(CacheBackend):
    """A cache file (shared by processes on one machine); least recently used entries go
    first once it holds more than ``max_items``."""

    def __init__(self, path: str | Path, max_items: int = 200_000) -> None:
        self.max_items = max_items
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(
            "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value BLOB, expires REAL,"
            " used REAL);"
            "CREATE INDEX IF NOT EXISTS cache_used ON cache(used);"
        )
        self._lock = threading.Lock()
        self._writes = 0

    def get(self, key: str) -> bytes | None:
        now = time.time()
        with self._lock:
            row = self._conn.execute(
                "SELECT value, expires FROM cache WHERE key = ?", (key,)
            ).fetchone()
            if row is None or (row[1] is not None and row[1] < now):
                return None
            self._conn.execute("UPDATE cache SET used = ? WHERE key = ?", (now, key))
            return bytes(row[0])

    def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        now = time.time()
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO cache(key, value, expires, used) VALUES (?, ?, ?, ?)",
                (key, value, None if ttl_s is None else now + ttl_s, now),
            )
            self._writes += 1
            if self._writes % 1000 == 0:
                self._conn.execute(
                    "DELETE FROM cache WHERE key IN (SELECT key FROM cache ORDER BY used DESC"
                    " LIMIT -1 OFFSET ?)",
                    (self.max_items,),
                )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class RedisCache(CacheBackend):
    """A Redis server (needs the redis extra): shared by every process that uses it."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "ragkit:",
        client: Any = None,
        socket_timeout_s: float = 0.5,
    ) -> None:
        if client is None:
            import redis

            client = redis.Redis.from_url(
                url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
            )
        self._redis = client
        self.prefix = prefix

    def get(self, key: str) -> bytes | None:
        value = self._redis.get(self.prefix + key)
        return None if value is None else bytes(value)

    def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        px = None if ttl_s is None else max(1, int(ttl_s * 1000))
        self._redis.set(self.prefix + key, value, px=px)

    def close(self) -> None:
        self._redis.close()


class SafeCache:
    """Wraps a backend so that its failures become misses (with a warning), never errors."""

    def __init__(self, backend: CacheBackend) -> None:
        self.backend = backend
        self.errors = 0
        self._last_warning = 0.0

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._last_warning > 10.0:
            self._last_warning = now
            log.warning(
                "ragkit cache %s failed (%s: %s); treating it as a miss",
                what,
                type(exc).__name__,
                exc,
            )

    def get(self, key: str) -> bytes | None:
        try:
            return self.backend.get(key)
        except Exception as exc:
            self._failed("get", exc)
            return None

    def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        try:
            self.backend.set(key, value, ttl_s)
        except Exception as exc:
            self._failed("set", exc)


def digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
