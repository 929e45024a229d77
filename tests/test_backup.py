"""Backups taken while writes go on (reliability round two, item 7).

``HybridStore.backup`` / ``ragkit backup`` copy each record log with SQLite's online backup
plus the checkpoint it names; ``ragkit restore`` checks a backup and makes it a store of its
own. The main test takes 20 backups at random moments while a child process writes (and
deletes whole batches), then SIGKILLs it: every backup restores, opens without rebuilding,
holds every write acknowledged before the backup started, and holds each batch whole or not
at all."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ragkit import HybridStore
from ragkit.backup import restore
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError, StoreError

BATCH = 10

WRITER = textwrap.dedent(
    """
    import json, sys
    from ragkit import HybridStore
    from ragkit.backends import LocalShard
    from ragkit.embeddings import HashingEmbedder

    path, size = sys.argv[1], int(sys.argv[2])
    shard = LocalShard(path, checkpoint_every=120)  # checkpoints land mid-backup too
    store = HybridStore(backend=shard, embedder=HashingEmbedder(dim=32))
    print(json.dumps({"ready": True}), flush=True)
    i = 0
    while True:
        ids = [f"b{i}-{j}" for j in range(size)]
        store.add_texts([f"batch {i} passage {j} words" for j in range(size)], ids=ids,
                        metadatas=[{"batch": i} for _ in ids])
        print(json.dumps({"put": i}), flush=True)
        if i % 4 == 3:
            gone = i - 2
            store.delete([f"b{gone}-{j}" for j in range(size)])
            print(json.dumps({"gone": gone}), flush=True)
        i += 1
    """
)


class _Events:
    """The child's acknowledgements, read by a thread as they come."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.items: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(child,), daemon=True)
        self.thread.start()

    def _read(self, child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                break
            with self.lock:
                self.items.append(event)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.items)


def _acknowledged(events: list[dict[str, Any]]) -> tuple[set[int], set[int]]:
    """Batches that must be in a backup begun after ``events`` (acknowledged, and not among
    those the writer deletes later, one in four), and those that must not (their delete was
    acknowledged)."""
    put = {e["put"] for e in events if "put" in e}
    gone = {e["gone"] for e in events if "gone" in e}
    return {b for b in put if b % 4 != 1}, gone


def _batches(store: HybridStore) -> dict[int, int]:
    counts: dict[int, int] = {}
    for rid in store.ids():
        batch = int(rid[1:].split("-")[0])
        counts[batch] = counts.get(batch, 0) + 1
    return counts


def test_twenty_backups_under_a_writer_are_each_consistent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _backups_under_a_writer(tmp_path, caplog, 20)


@pytest.mark.slow
def test_a_hundred_backups_under_a_writer_are_each_consistent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _backups_under_a_writer(tmp_path, caplog, 100)


def _backups_under_a_writer(tmp_path: Path, caplog: pytest.LogCaptureFixture, backups: int) -> None:
    path = tmp_path / "kb"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(BATCH)], stdout=subprocess.PIPE, text=True
    )
    events = _Events(child)
    rng = random.Random(11)
    taken: list[tuple[Path, list[dict[str, Any]]]] = []
    try:
        deadline = time.monotonic() + 60
        while len(events.snapshot()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events.snapshot(), "the writer did not get going"
        for n in range(backups):
            time.sleep(rng.uniform(0, 0.2))
            before = events.snapshot()  # acknowledged before this backup started
            with HybridStore(path, embedder=HashingEmbedder(dim=32), read_only=True) as source:
                source.backup(tmp_path / f"backup{n}")
            taken.append((tmp_path / f"backup{n}", before))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    caplog.set_level(logging.WARNING, logger="ragkit")
    ids = set()
    for n, (backup, before) in enumerate(taken):
        restored = tmp_path / f"restored{n}"
        info = restore(backup, restored)  # integrity check and checkpoint manifest first
        with HybridStore(restored, embedder=HashingEmbedder(dim=32)) as kb:
            ids.add(kb.backend.store_id)
            assert kb.backend.store_id == info["restored_as"]
            counts = _batches(kb)
            assert kb.count() == info["records"]
        present, gone = _acknowledged(before)
        assert not present - set(counts), f"backup {n}: acknowledged batches missing"
        assert not gone & set(counts), f"backup {n}: an acknowledged delete came back"
        torn = {b: c for b, c in counts.items() if c != BATCH}
        assert not torn, f"backup {n}: batches in part: {torn}"
    rebuilds = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert not rebuilds
    assert len(ids) == backups  # every restored copy has an identity of its own
    with HybridStore(path, embedder=HashingEmbedder(dim=32), read_only=True) as original:
        assert original.backend.store_id not in ids


def test_a_restored_backup_is_its_own_store_twice(tmp_path: Path) -> None:
    with HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=16)) as kb:
        kb.add_texts(["alpha", "beta"], ids=["a", "b"])
        kb.backup(tmp_path / "bk")
        original = kb.backend.store_id
    first = restore(tmp_path / "bk", tmp_path / "r1")
    second = restore(tmp_path / "bk", tmp_path / "r2")
    assert len({original, first["restored_as"], second["restored_as"]}) == 3
    for name in ("r1", "r2"):
        with HybridStore(tmp_path / name, embedder=HashingEmbedder(dim=16)) as kb:
            assert sorted(kb.ids()) == ["a", "b"]
            kb.add_texts(["gamma"], ids=["c"])  # a store like any other


def test_an_in_memory_store_backs_up_too(tmp_path: Path) -> None:
    with HybridStore(embedder=HashingEmbedder(dim=16)) as kb:
        kb.add_texts(["alpha", "beta"], ids=["a", "b"])
        kb.backup(tmp_path / "bk")
    restore(tmp_path / "bk", tmp_path / "kb")
    with HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=16)) as kb:
        assert kb.search("alpha", k=1).hits[0].record.id == "a"


def test_backup_never_overwrites_and_restore_refuses_a_damaged_backup(tmp_path: Path) -> None:
    with HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=16)) as kb:
        kb.add_texts(["alpha", "beta"], ids=["a", "b"])
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("keep me")
        with pytest.raises(InvalidInputError, match="not an empty directory"):
            kb.backup(tmp_path / "full")
        assert (tmp_path / "full" / "x").read_text() == "keep me"
        kb.backend.checkpoint()  # type: ignore[attr-defined]
        kb.backup(tmp_path / "bk")
    with pytest.raises(InvalidInputError, match="not a ragkit backup"):
        restore(tmp_path / "kb", tmp_path / "nope")
    checkpoint = next((tmp_path / "bk").glob("checkpoint-*"))
    (checkpoint / "lexical_rows.npy").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="damaged, nothing was restored"):
        restore(tmp_path / "bk", tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_the_cli_backs_up_a_store_an_application_holds_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=16)) as kb:
        kb.add_texts(["alpha", "beta"], ids=["a", "b"])
        assert main(["backup", "--store", str(tmp_path / "kb"), str(tmp_path / "bk")]) == 0
        kb.add_texts(["gamma"], ids=["c"])  # the writer goes on
    assert "ragkit restore" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "bk"), str(tmp_path / "r")]) == 0
    assert "new store id" in capsys.readouterr().err
    with HybridStore(tmp_path / "r", embedder=HashingEmbedder(dim=16)) as kb:
        assert sorted(kb.ids()) == ["a", "b"]
    with sqlite3.connect(tmp_path / "r" / "records.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_on_disk_sharded_store_backs_up_partition_by_partition_under_writes(
    tmp_path: Path,
) -> None:
    store = tmp_path / "kb"
    args = ["--hosts", "3", "--partitions", "4", "--replicas", "2"]
    assert main(["shards", "init", "--store", str(store), *args]) == 0
    acked: list[int] = []
    stop = threading.Event()
    with HybridStore(store, embedder=HashingEmbedder(dim=16)) as kb:

        def writer() -> None:
            i = 0
            while not stop.is_set():
                kb.add_texts([f"batch {i}"], ids=[f"b{i}"])
                acked.append(i)
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        taken = []
        try:
            for n in range(4):
                time.sleep(0.1)
                before = list(acked)
                kb.backup(tmp_path / f"bk{n}")
                taken.append(before)
        finally:
            stop.set()
            thread.join()
        original = kb.backend.store_id
    for n, before in enumerate(taken):
        info = restore(tmp_path / f"bk{n}", tmp_path / f"r{n}")
        with HybridStore(tmp_path / f"r{n}", embedder=HashingEmbedder(dim=16)) as copy:
            assert copy.backend.store_id == info["restored_as"] != original
            have = set(copy.ids())
            assert {f"b{i}" for i in before} <= have
            assert copy.count() == info["records"]
            status = copy.backend.status()  # type: ignore[attr-defined]
            assert all(c.in_sync for c in status.copies)
