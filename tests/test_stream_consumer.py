"""The Redis Streams consumer against a real redis-server: exactly-once in effect across
consumers, crashes, redeliveries and claims."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragkit import HybridStore
from ragkit.embeddings import HashingEmbedder
from ragkit.ingest import MarkdownChunker, StreamConsumer, publish_delete, publish_upsert


def _store(path: Path) -> HybridStore:
    return HybridStore(path, embedder=HashingEmbedder(dim=64), shared=True)


def test_one_consumer_applies_upserts_deletes_and_vectors(
    tmp_path: Path, client: Any, stream: str
) -> None:
    store = _store(tmp_path / "kb")
    vector = np.zeros(64, np.float32)
    vector[3] = 1.0
    publish_upsert(client, stream, "a", "alpha text", metadata={"lang": "en"})
    publish_upsert(client, stream, "b", "beta text", vector=vector)
    publish_upsert(client, stream, "c", "gamma text", tenant="globex")
    publish_delete(client, stream, "a")
    publish_upsert(client, stream, "a", "alpha again")
    client.xadd(stream, {"op": "frobnicate", "id": "z"})  # a bad event: dead letter
    client.xadd(stream, {"op": "upsert", "id": "y", "text": "t", "metadata": "[1]"})
    consumer = StreamConsumer(store, client, stream, consumer="one", block_ms=50)
    report = consumer.run(until_idle_s=0.3)
    assert report.dead == 2 and client.xlen(f"{stream}:dead") == 2
    assert consumer.lag() == {"pending": 0, "lag": 0}
    got = {r.id: r for r in store.get(["a", "b"], include_vectors=True)}
    assert got["a"].text == "alpha again" and got["a"].metadata == {}
    np.testing.assert_allclose(got["b"].vector, vector)  # the event's vector, not embedded
    assert [r.text for r in store.get(["c"], tenant="globex")] == ["gamma text"]
    assert store.get(["c"]) == []
    store.close()


def test_a_redelivered_old_upsert_never_resurrects_a_later_delete(
    tmp_path: Path, client: Any, stream: str
) -> None:
    store = _store(tmp_path / "kb")
    publish_upsert(client, stream, "x", "first version")
    slow = StreamConsumer(store, client, stream, consumer="slow", claim_idle_ms=50)
    taken = slow._read()  # delivered to "slow", which then dies without acknowledging
    assert len(taken) == 1
    publish_delete(client, stream, "x")
    fast = StreamConsumer(store, client, stream, consumer="fast", block_ms=50, claim_idle_ms=50)
    fast.run(until_idle_s=0.2)  # applies the delete
    time.sleep(0.1)
    fast._next_claim = 0.0
    report = fast.run(until_idle_s=0.3)  # claims the dead consumer's old upsert: stale
    assert report.claimed == 1 and report.stale >= 1
    assert store.get(["x"]) == [] and fast.lag() == {"pending": 0, "lag": 0}
    store.close()


def test_a_chunking_consumer_replaces_a_sources_chunks(
    tmp_path: Path, client: Any, stream: str
) -> None:
    store = _store(tmp_path / "kb")
    publish_upsert(client, stream, "page", "# A\n\none\n\n# B\n\ntwo\n\n# C\n\nthree")
    publish_upsert(client, stream, "other", "# Z\n\nzed")
    consumer = StreamConsumer(
        store, client, stream, chunker=MarkdownChunker(), block_ms=50, batch_size=1
    )
    consumer.run(until_idle_s=0.2)
    assert sorted(store.ids()) == ["other#0", "page#0", "page#1", "page#2"]
    publish_upsert(client, stream, "page", "# A\n\none, edited")
    publish_delete(client, stream, "other")
    consumer.run(until_idle_s=0.2)
    assert sorted(store.ids()) == ["page#0"]
    assert store.get(["page#0"])[0].text == "# A\n\none, edited"
    store.close()


# ---- acceptance 1: two consumer processes, one SIGKILLed twice ------------------------------

EVENTS = 10_000
IDS = 2_500


def _consumer_process(
    redis_url: str, stream: str, store: Path, name: str, log: Path
) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ragkit.cli",
            "consume",
            "--stream",
            stream,
            "--store",
            str(store),
            "--redis",
            redis_url,
            "--consumer",
            name,
            "--batch-size",
            "50",
            "--block-ms",
            "100",
            "--claim-idle-ms",
            "1000",
            "--lease-ms",
            "3000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_running(log: Path, name: str, deadline: float) -> None:
    """Wait for a consumer process to print that it is consuming (its SIGTERM handler is in)."""
    while f" as {name} (group" not in log.read_text():
        assert time.monotonic() < deadline, f"consumer {name} never started"
        time.sleep(0.05)


def _acked(client: Any, stream: str) -> int:
    for group in client.xinfo_groups(stream):
        if group["name"] in (b"ragkit", "ragkit"):
            return int(group["entries-read"] or 0) - int(group["pending"])
    return 0


def test_ten_thousand_events_two_consumers_one_killed_twice_end_exact(
    tmp_path: Path, redis_url: str, client: Any, stream: str
) -> None:
    path = tmp_path / "kb"
    HybridStore(path, embedder=HashingEmbedder(dim=64)).close()
    rng = random.Random(11)
    expected: dict[str, str] = {}
    events: list[tuple[str, str, str]] = []
    for n in range(EVENTS):
        rid = f"doc-{rng.randrange(IDS)}"
        if rng.random() < 0.15:
            events.append(("delete", rid, ""))
            expected.pop(rid, None)
        else:
            text = f"{rid} revision {n} words{n % 97}"
            events.append(("upsert", rid, text))
            expected[rid] = text

    def produce() -> None:  # events keep arriving while consumers work and die
        pipe = client.pipeline(transaction=False)
        for i, (op, rid, text) in enumerate(events):
            if op == "delete":
                pipe.xadd(stream, {"op": "delete", "id": rid})
            else:
                pipe.xadd(stream, {"op": "upsert", "id": rid, "text": text})
            if i % 250 == 249:
                pipe.execute()
                time.sleep(0.02)
        pipe.execute()

    client.xgroup_create(stream, "ragkit", id="0", mkstream=True)
    producer = threading.Thread(target=produce)
    producer.start()
    log = tmp_path / "consumers.log"
    steady = _consumer_process(redis_url, stream, path, "steady", log)
    victim = _consumer_process(redis_url, stream, path, "victim", log)
    kills = left_pending = 0
    deadline = time.monotonic() + 300
    try:
        # The first restart keeps the name (it re-reads its own pending events); the second
        # takes a new one (the steady consumer claims the dead one's events when idle).
        for threshold, restart_as in ((EVENTS // 4, "victim"), (EVENTS // 2, "victim-2")):
            while _acked(client, stream) < threshold:
                assert time.monotonic() < deadline, "consumers made no progress"
                time.sleep(0.02)
            name = "victim"  # the process alive under that name now
            while not client.xpending_range(stream, "ragkit", "-", "+", 1, consumername=name):
                assert time.monotonic() < deadline, "the victim never held a batch"
                time.sleep(0.001)
            victim.send_signal(signal.SIGKILL)  # mid-batch: holding leases and pending events
            victim.wait(30)
            kills += 1
            left_pending += len(
                client.xpending_range(stream, "ragkit", "-", "+", 10_000, consumername=name)
            )
            victim = _consumer_process(redis_url, stream, path, restart_as, log)
        producer.join()
        for name in ("steady", "victim-2"):  # both running before the drain ends them
            _wait_running(log, name, deadline)
        while True:
            info = next(
                g for g in client.xinfo_groups(stream) if g["name"] in (b"ragkit", "ragkit")
            )
            if int(info["pending"]) == 0 and int(info["lag"] or 0) == 0:
                break
            assert time.monotonic() < deadline, f"not drained: {info}"
            time.sleep(0.1)
    finally:
        for proc in (steady, victim):
            proc.send_signal(signal.SIGTERM)
        for proc in (steady, victim):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert kills == 2 and left_pending > 0  # the kills left unacknowledged events behind
    assert steady.returncode == 0 and victim.returncode == 0, log.read_text()
    store = HybridStore(path)
    held = {r.id: r.text for r in store.get(store.ids())}
    assert store.count() == len(held) == len(expected)  # no duplicates
    assert held == expected  # none missing, deletes applied, last write of each id wins
    probe = sorted(expected)[:20]
    for rid in probe:
        assert rid in [h.id for h in store.search(expected[rid], k=5, mode="lexical")]
    store.close()
