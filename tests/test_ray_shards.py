"""Issue 4, acceptance 2: shards as real Ray actors survive SIGKILL with no failed query."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every Ray listener on loopback
ray = pytest.importorskip("ray", reason="the ray extra is part of make test")

from ragkit import HybridStore  # noqa: E402
from ragkit.backends import ShardedStore  # noqa: E402
from ragkit.backends.sharded.ray import RayShard  # noqa: E402
from ragkit.embeddings import HashingEmbedder  # noqa: E402
from ragkit.errors import ShardUnavailableError  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(
        num_cpus=2,
        object_store_memory=150 * 1024 * 1024,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()


def text(i: int) -> str:
    return f"record {i} about topic{i % 13} and theme{i % 5} with marker{i}"


def test_sigkill_of_a_shard_actor_fails_no_query_and_loses_no_write(
    ray_cluster: None, tmp_path: Path
) -> None:
    shards = [RayShard(tmp_path / f"s{i}", name=f"s{i}", call_timeout_s=20) for i in range(4)]
    router = ShardedStore(
        shards,
        replicas=2,
        write_quorum=2,
        deadline_s=30,
        retries=30,
        hedge_after_s=0.3,
        breaker_threshold=1000,
    )
    store = HybridStore(backend=router, embedder=HashingEmbedder(dim=64))
    acked: list[str] = [f"r{i}" for i in range(400)]
    store.add_texts([text(i) for i in range(400)], ids=acked)

    stop = threading.Event()
    problems: list[str] = []
    queries = 0
    writes_after_kill = 0
    killed_at: list[float] = []

    def reader() -> None:
        nonlocal queries
        rng = random.Random(1)
        while not stop.is_set():
            q = f"topic{rng.randrange(13)} theme{rng.randrange(5)}"
            try:
                result = store.search(q, k=10, mode=rng.choice(["hybrid", "dense", "lexical"]))
            except Exception as exc:  # any failure is a finding
                problems.append(f"query failed: {type(exc).__name__}: {exc}")
                continue
            if len(result) < 10 or result.partial:
                problems.append(f"{q}: {len(result)} hits, partial={result.partial}")
            queries += 1

    def writer() -> None:
        nonlocal writes_after_kill
        i = 400
        while not stop.is_set():
            ids = [f"r{j}" for j in range(i, i + 10)]
            try:
                store.add_texts([text(j) for j in range(i, i + 10)], ids=ids)
            except Exception as exc:
                problems.append(f"write failed: {type(exc).__name__}: {exc}")
                continue
            acked.extend(ids)  # acknowledged: add_texts returned
            if killed_at:
                writes_after_kill += 1
            i += 10

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    victim = shards[1]
    old_pid = victim.pid()
    os.kill(old_pid, signal.SIGKILL)
    killed_at.append(time.monotonic())
    deadline = time.monotonic() + 60
    new_pid = None
    while time.monotonic() < deadline:
        try:
            new_pid = victim.pid()
            break
        except Exception:
            time.sleep(0.2)
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    assert problems == []
    assert new_pid is not None and new_pid != old_pid  # Ray restarted the actor
    assert queries > 20 and writes_after_kill > 0
    # Consistency: every acknowledged record is on exactly `replicas` shards.
    holders = dict.fromkeys(acked, 0)
    for shard in shards:
        for record in shard.get(acked):
            holders[record.id] += 1
    assert {rid: n for rid, n in holders.items() if n != 2} == {}
    assert sum(r["records"] for r in router.status()) == 2 * len(acked)
    store.close()


@pytest.mark.parametrize("policy", ["allow", "fail"])
def test_a_killed_shard_without_replicas_is_reported_within_the_deadline(
    ray_cluster: None, tmp_path: Path, policy: str
) -> None:
    shards = [
        RayShard(tmp_path / f"s{i}", name=f"s{i}", max_restarts=0, call_timeout_s=5)
        for i in range(3)
    ]
    router = ShardedStore(shards, replicas=1, deadline_s=3.0, retries=1, partial=policy)  # type: ignore[arg-type]
    store = HybridStore(backend=router, embedder=HashingEmbedder(dim=64))
    store.add_texts([text(i) for i in range(90)], ids=[f"r{i}" for i in range(90)])
    os.kill(shards[2].pid(), signal.SIGKILL)
    started = time.monotonic()
    if policy == "allow":
        result = store.search("topic3 theme1", k=10, mode="dense")
        assert result.partial and result.missing_shards == ["s2"]
        assert len(result) == 10
    else:
        with pytest.raises(ShardUnavailableError, match="s2"):
            store.search("topic3 theme1", k=10, mode="dense")
    assert time.monotonic() - started < 3.0 + 5.0
    store.close()
