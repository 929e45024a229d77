"""Reliability: readers and writers at once, on threads and on asyncio. No call fails, no
read returns a torn record (text and metadata always from the same write), and the final
state is exactly what the writers left."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragkit import HybridStore
from ragkit.backends import LocalShard, ShardedStore
from ragkit.embeddings import HashingEmbedder

EMBEDDER = HashingEmbedder(dim=16)
WRITERS, ROUNDS = 3, 40

BACKENDS: dict[str, Callable[[Path], Any]] = {
    "memory": lambda tmp: LocalShard(),
    "disk": lambda tmp: LocalShard(tmp / "kb", checkpoint_every=200),
    "sharded": lambda tmp: ShardedStore(3, partitions=6, replicas=2, heal_interval_s=None),
}


def text(writer: int, key: int, version: int) -> str:
    return f"writer{writer} key{key} version{version} common words"


def consistent(records: Any, problems: list[str]) -> None:
    for r in records:
        if (
            f"version{r.metadata['v']} " not in r.text
            or r.id != f"w{r.metadata['w']}-{r.metadata['k']}"
        ):
            problems.append(f"torn record {r.id}: {r.text!r} {r.metadata}")


def write_rounds(store: HybridStore, writer: int, final: dict[str, int]) -> None:
    rng = random.Random(writer)
    for version in range(ROUNDS):
        keys = rng.sample(range(10), 4)
        store.add_texts(
            [text(writer, k, version) for k in keys],
            metadatas=[{"w": writer, "k": k, "v": version} for k in keys],
            ids=[f"w{writer}-{k}" for k in keys],
        )
        for k in keys:
            final[f"w{writer}-{k}"] = version
        if version % 7 == 6:
            gone = f"w{writer}-{keys[0]}"
            store.delete([gone])
            final.pop(gone, None)


def check_final(store: HybridStore, final: dict[str, int]) -> None:
    assert store.count() == len(final)
    got = {r.id: r.metadata["v"] for r in store.get(sorted(final))}
    assert got == final
    assert sorted(store.search("common words", k=1000, mode="lexical").ids) == sorted(final)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_threads_reading_and_writing_at_once(backend: str, tmp_path: Path) -> None:
    store = HybridStore(backend=BACKENDS[backend](tmp_path), embedder=EMBEDDER)
    finals: list[dict[str, int]] = [{} for _ in range(WRITERS)]
    problems: list[str] = []
    done = threading.Event()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not done.is_set():
            try:
                mode = rng.choice(["hybrid", "dense", "lexical"])
                consistent(
                    store.search(f"key{rng.randrange(10)} common", k=20, mode=mode), problems
                )
                consistent(
                    store.get([f"w{rng.randrange(WRITERS)}-{k}" for k in range(10)]), problems
                )
                store.count({"v": {"$gte": rng.randrange(ROUNDS)}})
            except Exception as exc:
                problems.append(f"{type(exc).__name__}: {exc}")

    writers = [
        threading.Thread(target=write_rounds, args=(store, w, finals[w])) for w in range(WRITERS)
    ]
    readers = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert problems == []
    check_final(store, {k: v for f in finals for k, v in f.items()})
    store.close()


@pytest.mark.parametrize("backend", list(BACKENDS))
async def test_asyncio_readers_and_writers_at_once(backend: str, tmp_path: Path) -> None:
    store = HybridStore(backend=BACKENDS[backend](tmp_path), embedder=EMBEDDER)
    final: dict[str, int] = {}
    problems: list[str] = []

    async def writer(w: int) -> None:
        for version in range(ROUNDS // 2):
            keys = [(version + j) % 10 for j in range(3)]
            await store.aadd_texts(
                [text(w, k, version) for k in keys],
                metadatas=[{"w": w, "k": k, "v": version} for k in keys],
                ids=[f"w{w}-{k}" for k in keys],
            )
            for k in keys:
                final[f"w{w}-{k}"] = version

    async def reader() -> None:
        for i in range(40):
            result = await store.asearch(f"key{i % 10} common", k=10)
            consistent(result, problems)
            consistent(await store.aget([f"w0-{k}" for k in range(10)]), problems)
            await store.acount()

    await asyncio.gather(*(writer(w) for w in range(WRITERS)), reader(), reader())
    assert problems == []
    check_final(store, final)
    store.close()
