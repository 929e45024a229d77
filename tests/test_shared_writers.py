"""Several processes writing one store directory (``shared=True``)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest

from ragkit import HybridStore
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError, StoreError

ROUNDS = 150


def _writer(path: str, name: str, other: str, seen: mp.Queue, start: Any) -> None:  # type: ignore[type-arg]
    store = HybridStore(path, embedder=HashingEmbedder(dim=64), shared=True)
    start.wait(60)  # both processes open before either writes
    found = 0
    for i in range(ROUNDS):
        store.add_texts(
            [f"only{name}{i} text", f"both{i % 40} written by {name}"],
            ids=[f"{name}-{i}", f"both-{i % 40}"],
        )
        if i % 5 == 4:
            store.delete([f"{name}-{i - 2}"])
        # the other process's writes are searchable here without reopening
        hits = store.search(f"only{other}{i // 2}", k=1, mode="lexical")
        found += bool(hits) and hits[0].id == f"{other}-{i // 2}"
    seen.put((name, found, store.count()))
    store.close()


def _expected(name: str) -> set[str]:
    deleted = {f"{name}-{i - 2}" for i in range(ROUNDS) if i % 5 == 4}
    return {f"{name}-{i}" for i in range(ROUNDS)} - deleted


def test_two_processes_write_one_directory_and_see_each_others_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "kb")
    HybridStore(path, embedder=HashingEmbedder(dim=64)).close()
    ctx = mp.get_context("spawn")
    seen = ctx.Queue()
    start = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_writer, args=(path, a, b, seen, start))
        for a, b in (("A", "B"), ("B", "A"))
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    reports = {name: (found, count) for name, found, count in (seen.get() for _ in procs)}
    # each process found some of the other's records while both were writing
    assert all(found > 0 for found, _ in reports.values()), reports

    store = HybridStore(path)  # reopened from the checkpoints both wrote
    want = _expected("A") | _expected("B") | {f"both-{i}" for i in range(40)}
    assert set(store.ids()) == want
    assert store.count() == len(want)
    for rid in ("A-0", "B-149", "both-7"):
        assert store.search(rid.replace("-", "") if rid[0] != "b" else "both7", k=1)
    last = store.get([f"both-{i}" for i in range(40)])
    assert len(last) == 40 and all("written by" in r.text for r in last)
    store.close()


def test_shared_and_exclusive_opens_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    first = HybridStore(path, embedder=HashingEmbedder(dim=64), shared=True)
    first.add_texts(["alpha"], ids=["a"])
    ctx = mp.get_context("spawn")
    probe = ctx.Process(target=_open_exclusive, args=(str(path),))
    probe.start()
    probe.join(60)
    assert probe.exitcode == 3  # the exclusive open was refused with a StoreError
    first.close()


def _open_exclusive(path: str) -> None:
    try:
        HybridStore(path)
    except StoreError as exc:
        raise SystemExit(3 if "shared=True" in str(exc) else 4) from None


def test_shared_needs_a_writable_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="shared=True"):
        HybridStore(embedder=HashingEmbedder(dim=64), shared=True)
    HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64)).close()
    with pytest.raises(InvalidInputError, match="shared=True"):
        HybridStore(tmp_path / "kb", read_only=True, shared=True)


def test_a_shared_store_catches_up_after_another_process_compacts(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    store = HybridStore(path, embedder=HashingEmbedder(dim=64), shared=True)
    store.add_texts([f"doc {i} word{i}" for i in range(50)], ids=[f"d{i}" for i in range(50)])
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_replace_and_optimize, args=(str(path),))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0
    assert store.count() == 25
    hits = store.search("word3", k=1, mode="lexical")
    assert hits[0].id == "d3" and hits[0].text == "changed word3"
    assert all(h.id != "d40" for h in store.search("word40", k=5, mode="lexical"))
    store.close()


def _replace_and_optimize(path: str) -> None:
    store = HybridStore(path, shared=True)
    store.add_texts([f"changed word{i}" for i in range(25)], ids=[f"d{i}" for i in range(25)])
    store.delete([f"d{i}" for i in range(25, 50)])
    store.backend.optimize()  # type: ignore[attr-defined]
    store.close()
