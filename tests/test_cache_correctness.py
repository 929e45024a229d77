"""Reliability, case 2: no stale or foreign cache hit. Results are keyed by the store's own
identity, the full request (vector included) and a generation kept with the data, and a
result is filed under the generation read before it was computed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragkit import HybridStore
from ragkit.backends import ShardedStore
from ragkit.cache import MemoryCache, RedisCache
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder

EMBEDDER = HashingEmbedder(dim=32)


def cached(path: Any, cache: Any, **kwargs: Any) -> HybridStore:
    return HybridStore(path, embedder=EMBEDDER, cache=cache, result_cache=True, **kwargs)


def test_the_same_relative_path_from_two_directories_shares_no_cache_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = MemoryCache()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        with HybridStore("kb", embedder=EMBEDDER) as store:
            store.add_texts([f"store {name} says hello"], ids=[f"only-{name}"])
    results = {}
    for name in ("a", "b"):
        monkeypatch.chdir(tmp_path / name)
        with cached("kb", shared) as store:
            results[name] = store.search("hello", k=5).ids
    assert results == {"a": ["only-a"], "b": ["only-b"]}


def test_two_in_memory_sharded_stores_with_default_names_share_no_entry(redis_url: str) -> None:
    cache = RedisCache(redis_url, prefix="ragkit-test-sharded:")
    stores = [
        HybridStore(
            backend=ShardedStore(2, partitions=2, heal_interval_s=None),
            embedder=EMBEDDER,
            cache=cache,
            result_cache=True,
        )
        for _ in range(2)
    ]
    for i, store in enumerate(stores):
        store.add_texts([f"sharded store {i} hello"], ids=[f"s{i}"])
    assert [s.search("hello", k=3).ids for s in stores] == [["s0"], ["s1"]]
    assert [s.search("hello", k=3).info["result_cache_hit"] for s in stores] == [True, True]
    for store in stores:
        store.close()


def test_a_write_by_a_process_without_the_cache_is_seen(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "kb"
    cache = RedisCache(redis_url, prefix="ragkit-test-ingest:")
    with cached(path, cache) as store:
        store.add_texts(["an old note about the budget"], ids=["old"])
        assert store.search("budget", k=5).ids == ["old"]
        assert store.search("budget", k=5).info["result_cache_hit"]
    docs = tmp_path / "new.jsonl"
    docs.write_text('{"id": "new", "text": "the budget budget budget memo"}\n')
    assert main(["ingest", "--store", str(path), str(docs)]) == 0  # no cache in that process
    with cached(path, cache) as store:
        result = store.search("budget", k=5)
        assert not result.info["result_cache_hit"] and set(result.ids) == {"old", "new"}


@pytest.mark.parametrize("semantic", [None, 0.5])
def test_a_result_computed_during_a_write_is_never_served_after_it(
    semantic: float | None,
) -> None:
    store = HybridStore(
        embedder=EMBEDDER,
        cache=MemoryCache(),
        result_cache=True,
        semantic_cache_threshold=semantic,
    )
    store.add_texts(["topic seed"], ids=["seed"])
    acked: list[str] = ["seed"]
    problems: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        for i in range(300):
            store.add_texts([f"topic number {i}"], ids=[f"w{i}"])
            acked.append(f"w{i}")  # acknowledged
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            expected = set(acked)  # everything acknowledged before this search began
            got = set(store.search("topic", k=1000, mode="lexical").ids)
            if expected - got:
                problems.append(f"missed {sorted(expected - got)[:3]}")

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    store.close()


def test_the_semantic_cache_keeps_requests_with_other_options_apart() -> None:
    store = HybridStore(
        embedder=EMBEDDER, cache=MemoryCache(), result_cache=True, semantic_cache_threshold=0.5
    )
    plain = HybridStore(embedder=EMBEDDER)
    texts = [f"alpha beta gamma variant {i}" for i in range(40)]
    for s in (store, plain):
        s.add_texts(texts, ids=[f"d{i}" for i in range(40)])
    for options in ({}, {"mmr": 0.3}, {"candidates": 5}, {"mmr": 0.9, "candidates": 12}):
        got = store.search("alpha beta gamma", k=8, **options)
        assert got.ids == plain.search("alpha beta gamma", k=8, **options).ids, options
    store.close()
    plain.close()


def test_search_by_vector_keys_on_the_vector_even_with_text() -> None:
    store = HybridStore(embedder=EMBEDDER, cache=MemoryCache(), result_cache=True)
    store.add_texts(["cats purr", "dogs bark"], ids=["cat", "dog"])
    cat, dog = EMBEDDER.embed_documents(["cats purr", "dogs bark"])
    first = store.search_by_vector(cat, query="animals", k=1, alpha=1.0)
    second = store.search_by_vector(dog, query="animals", k=1, alpha=1.0)
    assert (first.ids, second.ids) == (["cat"], ["dog"])
    assert not second.info["result_cache_hit"]
    assert store.search_by_vector(np.asarray(dog), query="animals", k=1, alpha=1.0).info[
        "result_cache_hit"
    ]
    store.close()


TWO_PROCESSES = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from ragkit import HybridStore
    from ragkit.cache import RedisCache
    from ragkit.embeddings import HashingEmbedder

    name, path, url = sys.argv[1], sys.argv[2], sys.argv[3]
    store = HybridStore(path, embedder=HashingEmbedder(dim=32), cache=RedisCache(url),
                        result_cache=True, semantic_cache_threshold=0.9)
    mine, problems = [], 0
    for i in range(150):
        store.add_texts([f"shared words entry {{i}} from {{name}}"], ids=[f"{{name}}-{{i}}"])
        mine.append(f"{{name}}-{{i}}")
        for _ in range(2):  # the second search may hit the cache
            got = store.search("shared words entry", k=1000, mode="lexical").ids
            foreign = [g for g in got if not g.startswith(name + "-")]
            missing = set(mine) - set(got)
            problems += bool(foreign) + bool(missing)
    store.close()
    print(problems)
    """
)


def test_two_processes_writing_concurrently_through_one_redis_see_no_stale_or_foreign_hit(
    tmp_path: Path, redis_url: str
) -> None:
    script = TWO_PROCESSES.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, name, str(tmp_path / name), redis_url],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for name in ("left", "right")
    ]
    outputs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == ["0", "0"]
