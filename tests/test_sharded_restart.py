"""A restart after a crash never refuses a write that a quorum of live hosts can take
(reliability round two, item 3).

A child process writes to an on-disk sharded store made by ``ragkit shards init --hosting
local --replicas 2`` and prints each acknowledged batch; it is SIGKILLed at a random moment.
The next process opens the store and writes at once: before, that first write failed with
``QuorumError`` in 19 of 20 trials (replicas the crash left behind were out of the in-sync
set until the background healer caught them up a few seconds later)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ragkit import HybridStore
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder

CHILD = textwrap.dedent(
    """
    import json, sys
    from ragkit import HybridStore
    from ragkit.embeddings import HashingEmbedder

    path, start = sys.argv[1], int(sys.argv[2])
    with HybridStore(path, embedder=HashingEmbedder(dim=32)) as store:
        print(json.dumps({"ready": True}), flush=True)
        i = start
        while True:
            ids = [f"b{i}-{j}" for j in range(12)]
            store.add_texts([f"batch {i} passage {j}" for j in range(12)], ids=ids)
            print(json.dumps({"acked": ids}), flush=True)
            i += 1
    """
)


def _write_then_kill(store: Path, start: int, rng: random.Random) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store), str(start)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acked: list[str] = []
    wanted = rng.randint(1, 8)
    deadline = time.monotonic() + 120
    ready = False
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        ready = ready or bool(event.get("ready"))
        acked += event.get("acked", [])
        if len(acked) >= wanted * 12:
            break
    time.sleep(rng.uniform(0, 0.03))  # land inside the next batch, often mid-replication
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    for line in child.stdout.read().splitlines():
        try:
            acked += json.loads(line).get("acked", [])
        except json.JSONDecodeError:  # cut by the kill: never acknowledged
            break
    assert ready, "the writer did not get going"
    return acked


@pytest.mark.parametrize("replicas", [2, 3])
def test_the_first_write_after_a_crash_is_acknowledged(tmp_path: Path, replicas: int) -> None:
    _crash_and_reopen(tmp_path, replicas, 20 if replicas == 2 else 5)


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [2, 3])
def test_the_first_write_after_a_crash_is_acknowledged_100_trials(
    tmp_path: Path, replicas: int
) -> None:
    _crash_and_reopen(tmp_path, replicas, 100)


def _crash_and_reopen(tmp_path: Path, replicas: int, trials: int) -> None:
    store = tmp_path / "kb"
    assert (
        main(
            [
                "shards", "init", "--store", str(store), "--hosting", "local",
                "--hosts", "3", "--partitions", "6", "--replicas", str(replicas),
            ]
        )
        == 0
    )  # fmt: skip
    rng = random.Random(replicas)
    acked: list[str] = []
    for trial in range(trials):
        acked += _write_then_kill(store, 1000 * trial, rng)
        with HybridStore(store, embedder=HashingEmbedder(dim=32)) as kb:
            ids = [f"after{trial}-{j}" for j in range(12)]
            kb.add_texts([f"after crash {trial} passage {j}" for j in range(12)], ids=ids)
            acked += ids  # raised QuorumError before
            found = {r.id for r in kb.get(acked)}
            assert not set(acked) - found, f"trial {trial}: acknowledged writes lost"
            status = kb.backend.status()  # type: ignore[attr-defined]
            assert all(c.in_sync for c in status.copies), f"trial {trial}: {status.copies}"


def test_a_write_to_a_partition_short_of_its_quorum_catches_its_replicas_up_first() -> None:
    """Without the healer (``heal_interval_s=None``), a write to a partition whose lagging
    replica is reachable catches it up synchronously and is acknowledged by the quorum."""
    from ragkit.backends import ShardedStore

    with ShardedStore(3, partitions=2, replicas=2, heal_interval_s=None) as shards:
        kb = HybridStore(backend=shards, embedder=HashingEmbedder(dim=16))
        kb.add_texts([f"passage {i}" for i in range(40)], ids=[f"p{i}" for i in range(40)])
        for p, state in enumerate(shards.table.states):
            shards.table.mark(p, state.replicas[-1], False, full_copy=p == 1)
        assert shards.table.out_of_sync()
        kb.add_texts([f"more {i}" for i in range(40)], ids=[f"m{i}" for i in range(40)])
        assert not shards.table.out_of_sync()
        assert kb.count() == 80
