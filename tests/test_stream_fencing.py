"""Fencing: a stream consumer paused past its lease cannot resurrect a delete. Real Redis, a
real store directory shared by two processes, a real SIGSTOP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from ragkit import HybridStore, Record
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import StaleWriteError
from ragkit.ingest import StreamConsumer, publish_delete, publish_upsert

# Consumer A: stops itself (SIGSTOP) once it holds the lease and has checked it, just before
# writing: the moment a GC pause or a slow disk would hit.
PAUSING = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    from ragkit import HybridStore
    from ragkit.embeddings import HashingEmbedder
    from ragkit.ingest import StreamConsumer

    store_dir, url, stream, flag = sys.argv[1:]

    class Pausing(StreamConsumer):
        def _write(self, events, prepared):
            Path(flag).write_text("about to write")
            os.kill(os.getpid(), signal.SIGSTOP)
            return super()._write(events, prepared)

    store = HybridStore(store_dir, embedder=HashingEmbedder(dim=64), shared=True)
    consumer = Pausing(store, url, stream, consumer="slow", lease_ms=300, block_ms=50)
    report = consumer.run(max_events=1)
    print(json.dumps({"applied": report.applied, "stale": report.stale}))
    store.close()
    """
)


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "T"


def test_a_consumer_paused_past_its_lease_cannot_resurrect_a_delete(
    tmp_path: Path, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    stream = f"events-{uuid.uuid4().hex[:8]}"
    HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64)).close()
    old = publish_upsert(client, stream, "x", "the old version")
    script = tmp_path / "pausing.py"
    script.write_text(PAUSING)
    flag = tmp_path / "flag"
    slow = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "kb"), redis_url, stream, str(flag)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (flag.exists() and _stopped(slow.pid)):
            assert time.monotonic() < deadline and slow.poll() is None, "A never paused"
            time.sleep(0.02)
        time.sleep(0.4)  # A's lease (300 ms) runs out while it is stopped
        new = publish_delete(client, stream, "x")
        store = HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64), shared=True)
        fast = StreamConsumer(store, client, stream, consumer="fast", block_ms=50)
        fast.run(until_idle_s=0.3)  # applies the newer delete (A's entry stays A's)
        assert fast.report.applied == 1 and store.get(["x"]) == []
        os.kill(slow.pid, signal.SIGCONT)  # A wakes up and writes its old upsert
        out, _ = slow.communicate(timeout=60)
    finally:
        if slow.poll() is None:
            os.kill(slow.pid, signal.SIGCONT)
            slow.kill()
    assert slow.returncode == 0
    assert json.loads(out.strip().splitlines()[-1]) == {"applied": 0, "stale": 1}
    assert store.get(["x"]) == []  # the delete stands
    marker = client.hget(f"{stream}:applied", json.dumps([None, "x"]))
    assert marker.decode() == new != old  # the marker never moved back
    store.close()


def test_fenced_writes_refuse_an_older_position_and_write_nothing(tmp_path: Path) -> None:
    with HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64)) as store:
        store.write_fenced([Record("a", "first")], fence={"s/a": "5-0"})
        store.write_fenced(deletes=["a"], fence={"s/a": "7-0"})  # a delete records 7-0
        with pytest.raises(StaleWriteError) as refused:
            store.write_fenced(
                [Record("a", "late"), Record("b", "with it")],
                fence={"s/a": "6-0", "s/b": "6-0"},
            )
        assert refused.value.keys == ["s/a"]
        assert store.count() == 0  # all or nothing: b was not written either
        store.write_fenced([Record("b", "alone")], fence={"s/b": "6-0"})
        assert [r.text for r in store.get(["a", "b"])] == ["alone"]
        # a position never seen before is accepted, the same one again is not
        with pytest.raises(StaleWriteError):
            store.write_fenced([Record("b", "again")], fence={"s/b": "6-0"})


def test_a_store_without_fenced_writes_says_so_and_the_consumer_keeps_its_lease(
    hashing: Any, redis_url: str
) -> None:
    from ragkit.backends.sharded.router import ShardedStore
    from ragkit.errors import StoreError

    backend = ShardedStore(2, partitions=2, replicas=1, heal_interval_s=None)
    with HybridStore(embedder=hashing, backend=backend) as store:
        with pytest.raises(StoreError, match="does not take fenced writes"):
            store.write_fenced([Record("a", "text")], fence={"k": "1-0"})
        assert store.count() == 0
        client = redis.Redis.from_url(redis_url)
        stream = f"events-{uuid.uuid4().hex[:8]}"
        publish_upsert(client, stream, "a", "applied under the lease alone")
        consumer = StreamConsumer(store, client, stream, block_ms=50)
        assert not consumer.fenced
        consumer.run(until_idle_s=0.3)
        assert [r.text for r in store.get(["a"])] == ["applied under the lease alone"]
