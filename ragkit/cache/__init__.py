"""Caches: query embeddings, search results and (opt-in) semantically similar queries.

Backends: ``MemoryCache`` (in-process LRU), ``SQLiteCache`` (a file), ``RedisCache`` (a real
server, shared across processes). Values are bytes (float32 vectors or JSON): no pickle.

Results are keyed by the store's identity, the full request *and the store generation*, which
the store keeps with its data (a LocalShard's SQLite version) and every write moves, whoever
made it: a search after a write never sees a stale result, from any process. A failing
backend degrades to misses with a warning.
"""

from ragkit.cache.backends import (
    CacheBackend,
    MemoryCache,
    RedisCache,
    SafeCache,
    SQLiteCache,
    digest,
)

__all__ = ["CacheBackend", "MemoryCache", "RedisCache", "SQLiteCache", "SafeCache", "digest"]
