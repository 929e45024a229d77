"""Issue 6: caches. Results are never stale after a write, across processes sharing Redis;
a cache failure is a miss, never an error."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ragkit import HybridStore
from ragkit.cache import MemoryCache, RedisCache, SQLiteCache
from ragkit.embeddings import HashingEmbedder

TEXTS = [f"passage {i} about topic{i % 5}" for i in range(40)]


def test_query_embeddings_are_cached_by_default() -> None:
    with HybridStore(embedder=HashingEmbedder(dim=32)) as store:
        store.add_texts(TEXTS)
        store.search("topic3")
        store.search("topic3")
        assert store.caches.stats.hits["embedding"] == 1
        assert store.caches.stats.misses["embedding"] == 1


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_result_cache_hits_and_is_invalidated_by_writes(tmp_path: Path, backend: str) -> None:
    cache = MemoryCache() if backend == "memory" else SQLiteCache(tmp_path / "cache.sqlite3")
    with HybridStore(embedder=HashingEmbedder(dim=32), cache=cache, result_cache=True) as store:
        store.add_texts(TEXTS, ids=[f"p{i}" for i in range(40)])
        first = store.search("topic3", k=3)
        again = store.search("topic3", k=3)
        assert again.ids == first.ids and store.caches.stats.hits["result"] == 1
        assert [h.score for h in again] == pytest.approx([h.score for h in first])
        store.add_texts(["topic3 topic3 topic3"], ids=["new"])
        after = store.search("topic3", k=3)
        assert after.ids[0] == "new"  # the write invalidated the cached result
        assert store.search("topic3", k=4).ids != after.ids  # k is part of the key


def test_semantic_cache_reuses_a_similar_query() -> None:
    with HybridStore(
        embedder=HashingEmbedder(dim=64), result_cache=True, semantic_cache_threshold=0.95
    ) as store:
        store.add_texts(TEXTS)
        store.search("topic3 passage", k=3)
        store.search("passage topic3", k=3)  # same words, same hashing vector
        assert store.caches.stats.hits["semantic"] == 1
        store.search("topic1", k=3)
        assert store.caches.stats.hits["semantic"] == 1


def test_a_dead_redis_degrades_to_misses_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    dead = RedisCache("redis://127.0.0.1:1/0", socket_timeout_s=0.2)
    with (
        caplog.at_level(logging.WARNING),
        HybridStore(embedder=HashingEmbedder(dim=32), cache=dead, result_cache=True) as store,
    ):
        store.add_texts(TEXTS)
        assert len(store.search("topic2", k=3)) == 3
        assert len(store.search("topic2", k=3)) == 3
    assert "treating it as a miss" in caplog.text


WRITER = textwrap.dedent(
    """
    from ragkit import HybridStore
    from ragkit.cache import RedisCache
    store = HybridStore({path!r}, cache=RedisCache({url!r}), result_cache=True)
    store.add_texts(["zebra zebra zebra"], ids=["from-the-other-process"])
    store.close()
    """
)


def test_a_write_in_another_process_invalidates_results_cached_in_redis(
    redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "kb"
    with HybridStore(path, embedder=HashingEmbedder(dim=32)) as store:
        store.add_texts([*TEXTS, "a zebra crossing"], ids=[*(f"p{i}" for i in range(40)), "z"])

    def search() -> tuple[list[str], int]:
        with HybridStore(path, cache=RedisCache(redis_url), result_cache=True) as store:
            ids = store.search("zebra", k=2, mode="lexical").ids
            return ids, store.caches.stats.hits["result"]

    assert search() == (["z"], 0)
    assert search() == (["z"], 1)  # served from Redis by a fresh store
    subprocess.run([sys.executable, "-c", WRITER.format(path=str(path), url=redis_url)], check=True)
    ids, hits = search()
    assert hits == 0 and ids[0] == "from-the-other-process"


def test_cache_backends_round_trip(redis_url: str, tmp_path: Path) -> None:
    for cache in (
        MemoryCache(max_items=2),
        SQLiteCache(tmp_path / "c.sqlite3"),
        RedisCache(redis_url, prefix="roundtrip:"),
    ):
        vector = np.arange(4, dtype=np.float32)
        cache.set("k", vector.tobytes())
        assert np.array_equal(np.frombuffer(cache.get("k") or b"", dtype=np.float32), vector)
        assert cache.get("missing") is None
        cache.set("short", b"x", ttl_s=0.001)
        import time

        time.sleep(0.01)
        assert cache.get("short") is None
        cache.close()
    lru = MemoryCache(max_items=2)
    for key in ("a", "b", "c"):
        lru.set(key, b"1")
    assert lru.get("a") is None and lru.get("c") == b"1"


def test_passage_embeddings_are_reused_with_a_shared_cache(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "emb.sqlite3")
    with HybridStore(embedder=HashingEmbedder(dim=16), cache=cache) as first:
        first.add_texts(TEXTS[:10])
    with HybridStore(embedder=HashingEmbedder(dim=16), cache=cache) as second:
        second.add_texts([*TEXTS[:10], "a new passage"])
        assert second.caches.stats.hits["embedding"] == 10
        assert second.caches.stats.misses["embedding"] == 1
    with HybridStore(embedder=HashingEmbedder(dim=24), cache=cache) as other_model:
        other_model.add_texts(TEXTS[:10])  # another dimension: its own keys
        assert other_model.caches.stats.hits["embedding"] == 0
