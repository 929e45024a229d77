"""Hosts as real Ray actors killed with SIGKILL: no failed or short search, no lost
acknowledged write, Ray restarts the actor, its replicas catch up (scale-out part 1,
acceptance 4 and 5 with real processes)."""

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
from ragkit.backends.sharded.ray import RayHost  # noqa: E402
from ragkit.embeddings import HashingEmbedder  # noqa: E402
from ragkit.errors import ShardUnavailableError  # noqa: E402

EMBEDDER = HashingEmbedder(dim=64)


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


def wait_for_restart(host: RayHost, old_pid: int) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            pid = host.pid()
            if pid != old_pid:
                return pid
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError("Ray did not restart the actor")


def test_sigkill_of_a_host_fails_no_search_and_its_replicas_catch_up(
    ray_cluster: None, tmp_path: Path
) -> None:
    hosts = [RayHost(f"h{i}", tmp_path / f"h{i}") for i in range(4)]
    router = ShardedStore(
        hosts, partitions=8, replicas=2, write_quorum=1, deadline_s=10, heal_interval_s=0.5
    )
    store = HybridStore(backend=router, embedder=EMBEDDER)
    acked: list[str] = [f"r{i}" for i in range(400)]
    store.add_texts([text(i) for i in range(400)], ids=acked)
    deleted: list[str] = []
    stop = threading.Event()
    problems: list[str] = []
    queries = 0
    writes_after_kill = 0
    killed = threading.Event()

    def reader() -> None:
        nonlocal queries
        rng = random.Random(1)
        while not stop.is_set():
            q = f"topic{rng.randrange(13)} theme{rng.randrange(5)}"
            gone = set(deleted)  # a delete racing this search may or may not be seen
            try:
                result = store.search(q, k=10, mode=rng.choice(["hybrid", "dense", "lexical"]))
            except Exception as exc:  # any failure is a finding
                problems.append(f"query failed: {type(exc).__name__}: {exc}")
                continue
            if len(result) < 10 or result.partial:
                problems.append(f"{q}: {len(result)} hits, partial={result.partial}")
            if set(result.ids) & gone:
                problems.append(f"{q}: a deleted record came back")
            queries += 1

    def writer() -> None:
        nonlocal writes_after_kill
        i = 400
        while not stop.is_set():
            ids = [f"r{j}" for j in range(i, i + 10)]
            try:
                store.add_texts([text(j) for j in range(i, i + 10)], ids=ids)
                if i % 50 == 0:  # and some deletes
                    store.delete(ids[:2])
                    deleted.extend(ids[:2])
            except Exception as exc:
                problems.append(f"write failed: {type(exc).__name__}: {exc}")
                continue
            acked.extend(i for i in ids if i not in deleted)
            if killed.is_set():
                writes_after_kill += 1
            i += 10

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    victim = hosts[1]
    old_pid = victim.pid()
    os.kill(old_pid, signal.SIGKILL)
    killed.set()
    new_pid = wait_for_restart(victim, old_pid)
    deadline = time.monotonic() + 30  # writes go on; the restarted replicas catch up
    while router.table.out_of_sync() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    assert problems == [], "\n".join(problems)
    assert new_pid != old_pid and queries > 20 and writes_after_kill > 0
    router.heal()
    assert router.table.out_of_sync() == []
    status = router.status()
    assert status.healthy and all(c.lag == 0 for c in status.copies)
    # every acknowledged record readable, none deleted, and every replica of a partition equal
    assert sorted(r.id for r in store.get(acked)) == sorted(acked)
    assert store.get(deleted) == []
    for p in range(8):
        records = {c.records for c in status.copies if c.partition == p}
        assert len(records) == 1, f"partition {p} replicas differ: {records}"
    assert store.count() == len(acked)
    store.close()


@pytest.mark.parametrize("policy", ["allow", "fail"])
def test_a_killed_host_without_replicas_is_reported_within_the_deadline(
    ray_cluster: None, tmp_path: Path, policy: str
) -> None:
    hosts = [RayHost(f"h{i}", tmp_path / f"h{i}", max_restarts=0) for i in range(3)]
    router = ShardedStore(
        hosts, partitions=3, replicas=1, deadline_s=3.0, partial=policy, heal_interval_s=None
    )  # type: ignore[arg-type]
    store = HybridStore(backend=router, embedder=EMBEDDER)
    store.add_texts([text(i) for i in range(90)], ids=[f"r{i}" for i in range(90)])
    lost = [f"partition-{c.partition}" for c in router.status().copies if c.host == "h2"]
    os.kill(hosts[2].pid(), signal.SIGKILL)
    started = time.monotonic()
    if policy == "allow":
        result = store.search("topic3 theme1", k=10, mode="dense")
        assert result.partial and result.missing_shards == lost
        assert len(result) == 10
    else:
        with pytest.raises(ShardUnavailableError, match="partition"):
            store.search("topic3 theme1", k=10, mode="dense")
    assert time.monotonic() - started < 3.0 + 2.0
    store.close()


def test_a_steady_state_search_sends_one_message_per_host(
    ray_cluster: None, tmp_path: Path
) -> None:
    hosts = [RayHost(f"h{i}", tmp_path / f"h{i}") for i in range(4)]
    router = ShardedStore(hosts, partitions=4, replicas=1, heal_interval_s=None)
    store = HybridStore(backend=router, embedder=EMBEDDER)
    store.add_texts([text(i) for i in range(200)], ids=[f"r{i}" for i in range(200)])
    store.search("topic3 theme1", k=10)  # statistics of these terms, once
    before = [h.messages for h in hosts]
    for _ in range(5):
        assert len(store.search("topic3 theme1", k=10)) == 10
    assert [h.messages - b for h, b in zip(hosts, before)] == [5, 5, 5, 5]
    calls = {h.name: h.call("status")["calls"] for h in hosts}
    assert all(c.get("search", 0) == 6 for c in calls.values())
    store.close()


def test_calls_abandoned_in_flight_never_hold_up_a_healthy_host(
    ray_cluster: None, tmp_path: Path
) -> None:
    """Hedged and timed-out calls are abandoned by the hundreds under load; each must leave
    the host answering the next call at once (a cancelled Ray actor call leaves a gap in the
    caller's sequence numbers, and the actor waits for it before running anything later)."""
    host = RayHost("h0", tmp_path / "h0", max_inflight=4)
    host.call("open", [0], timeout=60)
    try:
        for round_ in range(20):
            calls = [host.submit("count", [0], None, None) for _ in range(50)]
            for future in calls[::2]:
                host.abandon(future)
            started = time.monotonic()
            assert host.call("count", [0], None, None, timeout=20) == {0: 0}
            waited = time.monotonic() - started
            assert waited < 5, f"round {round_}: the host answered after {waited:.1f}s"
    finally:
        host.close()
