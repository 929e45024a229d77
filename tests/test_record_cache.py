"""The LocalShard's row cache: hits read again come from memory, never stale, within budget."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from ragkit import HybridStore, Record
from ragkit.backends import LocalShard
from ragkit.backends.local._records import RowCache, StoredRow
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError


def _store(path: Path | None = None, **shard: Any) -> HybridStore:
    return HybridStore(backend=LocalShard(path, **shard), embedder=HashingEmbedder(dim=32))


def _cache(store: HybridStore) -> dict[str, int]:
    info = store.backend.info()["record_cache"]
    assert info is not None
    return dict(info)


def test_hits_read_again_come_from_the_cache_with_the_same_records() -> None:
    with _store() as store:
        store.upsert(
            [Record(f"d{i}", f"alpha text number {i}", {"n": i}) for i in range(20)]
            + [Record("t", "alpha for a tenant", {}, tenant="acme")]
        )
        first = store.search("alpha number", k=5)
        before = _cache(store)
        again = store.search("alpha number", k=5)
        after = _cache(store)
        assert [h.record for h in again] == [h.record for h in first]
        assert after["hits"] - before["hits"] == 5 and after["misses"] == before["misses"]
        again.hits[0].metadata["n"] = "changed by the caller"  # a copy: the cache keeps its own
        assert store.search("alpha number", k=5).hits[0].metadata == first.hits[0].metadata
        assert [h.id for h in store.search("alpha", k=5, tenant="acme")] == ["t"]


def test_a_replaced_or_deleted_record_never_comes_back_from_the_cache(tmp_path: Path) -> None:
    with _store(tmp_path / "kb") as store:
        store.upsert([Record("a", "zebra original", {"v": 1}), Record("b", "zebra other", {})])
        assert {h.id: h.text for h in store.search("zebra", k=2)}["a"] == "zebra original"
        store.upsert([Record("a", "zebra replaced", {"v": 2})])
        hits = {h.id: h for h in store.search("zebra", k=2)}
        assert hits["a"].text == "zebra replaced" and hits["a"].metadata == {"v": 2}
        store.delete(["a"])
        assert [h.id for h in store.search("zebra", k=2)] == ["b"]
        assert _cache(store)["rows"] == 1  # the removed rows left the cache with the write
    with _store(tmp_path / "kb") as reopened:  # a new process' view: read from SQLite
        assert [h.text for h in reopened.search("zebra", k=2)] == ["zebra other"]


def test_the_cache_stays_within_its_budget_and_evicts_the_least_recent() -> None:
    rows = [StoredRow(d, f"id{d}", None, "x" * 300, "{}", b"", 1) for d in range(6)]
    cache = RowCache(
        budget_bytes=3 * RowCache._cost(RowCache.pack(rows[0])) + 10
    )  # room for three rows
    for row in rows[:3]:
        cache.put(row)
    found: dict[int, StoredRow] = {}
    assert cache.take([0, 5], found) == [5] and found == {0: rows[0]}  # 0: now the most recent
    cache.put(rows[3])
    assert list(cache._rows) == [2, 0, 3]  # 1 was the least recently used
    cache.put(rows[4])
    assert list(cache._rows) == [0, 3, 4] and cache.size <= cache.budget
    cache.put(StoredRow(99, "big", None, "y" * 5_000, "{}", b"", 1))  # over the whole budget
    assert 99 not in cache._rows
    cache.drop([3, 12345])
    assert list(cache._rows) == [0, 4] and cache.size == 2 * RowCache._cost(RowCache.pack(rows[0]))
    assert cache.info()["hits"] == 1 and cache.info()["misses"] == 1


def test_the_budget_counts_what_the_cached_rows_really_take() -> None:
    rows = [
        StoredRow(d, f"doc-{d}", None, ("é" if d % 3 else "a") * (200 + d % 1800), "{}", b"", 1)
        for d in range(3000)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = RowCache(budget_bytes=2 * 2**20)
        for row in rows:
            cache.put(row)
        structures = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    kept = [StoredRow(*row) for row in cache._rows.values()]
    strings = sum(
        sys.getsizeof(r.text) + sys.getsizeof(r.metadata) + sys.getsizeof(r.id) for r in kept
    )
    real = structures + strings  # the cached tuples were made inside the traced span
    assert cache.size <= cache.budget
    assert abs(real - cache.size) <= 0.1 * cache.size


def test_a_store_without_the_cache_gives_the_same_hits() -> None:
    records = [Record(f"d{i}", f"common words and term{i % 7}", {"i": i}) for i in range(50)]
    with _store() as cached, _store(record_cache_mb=0) as uncached:
        cached.upsert(records)
        uncached.upsert(records)
        assert uncached.backend.info()["record_cache"] is None
        for query in ("common term3", "words term5", "term1"):
            for _ in range(2):
                a, b = cached.search(query, k=8), uncached.search(query, k=8)
                assert [(h.record, h.score) for h in a] == [(h.record, h.score) for h in b]


@pytest.mark.parametrize("bad", [-1, "32", True, None])
def test_a_bad_cache_size_is_refused_by_name(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="record_cache_mb"):
        LocalShard(record_cache_mb=bad)


def test_cached_rows_add_nothing_the_garbage_collector_walks() -> None:
    # Every full collection pauses every thread for as long as it walks the tracked objects;
    # a cache of tens of thousands of rows must not lengthen that walk (bench/soak.py).
    cache = RowCache(budget_bytes=2**20)
    for d in range(1000):
        cache.put(StoredRow(d, f"doc-{d}", "tenant" if d % 2 else None, "text", "{}", b"", 1))
    gc.collect()
    assert len(cache._rows) == 1000
    assert not any(gc.is_tracked(row) for row in cache._rows.values())
    found: dict[int, StoredRow] = {}
    assert (
        cache.take([3, 4], found) == [] and found[3].tenant == "tenant" and found[4].id == "doc-4"
    )
