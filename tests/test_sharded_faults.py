"""ShardedStore under failure: partial answers, deadlines, quorum, breakers, hedging, and
online resharding (issue 4, acceptance 3 and 4, in-process; the Ray tests kill processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ragkit import HybridStore
from ragkit.backends import LocalShard, ShardedStore
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import QuorumError, ShardUnavailableError


class FaultyShard(LocalShard):
    """A real LocalShard whose calls can be made to fail or hang, like a dead or stuck peer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.down = False
        self.delay_s = 0.0

    def _fault(self) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.down:
            raise ConnectionError(f"{self.name} is down")

    def search_dense_batch(self, *args: Any, **kwargs: Any) -> Any:
        self._fault()
        return super().search_dense_batch(*args, **kwargs)

    def search_lexical(self, *args: Any, **kwargs: Any) -> Any:
        self._fault()
        return super().search_lexical(*args, **kwargs)

    def lexical_stats(self, *args: Any, **kwargs: Any) -> Any:
        self._fault()
        return super().lexical_stats(*args, **kwargs)

    def upsert(self, *args: Any, **kwargs: Any) -> Any:
        self._fault()
        return super().upsert(*args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self._fault()
        return super().get(*args, **kwargs)


TEXTS = [f"record {i} about topic{i % 7} and theme{i % 3}" for i in range(120)]
IDS = [f"r{i:03d}" for i in range(120)]


def make(n: int = 4, **kwargs: Any) -> tuple[HybridStore, list[FaultyShard]]:
    shards = [FaultyShard(name=f"s{i}") for i in range(n)]
    store = HybridStore(backend=ShardedStore(shards, **kwargs), embedder=HashingEmbedder(dim=64))
    store.add_texts(TEXTS, ids=IDS)
    return store, shards


@pytest.fixture
def single() -> Iterator[HybridStore]:
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    store.add_texts(TEXTS, ids=IDS)
    yield store
    store.close()


def test_a_dead_shard_without_replicas_gives_a_partial_answer_naming_it() -> None:
    store, shards = make(replicas=1, deadline_s=2.0, retries=1)
    shards[2].down = True
    started = time.monotonic()
    result = store.search("topic3 theme1", k=10)
    assert time.monotonic() - started < 2.0 + 5.0  # bounded by the deadline, never hangs
    assert result.partial and result.missing_shards == ["s2"]
    assert len(result) == 10
    store.close()


def test_a_hung_shard_is_cut_off_by_the_deadline() -> None:
    store, shards = make(replicas=1, deadline_s=0.5, retries=0)
    shards[1].delay_s = 30
    started = time.monotonic()
    result = store.search("topic3", k=5, mode="dense")
    assert time.monotonic() - started < 0.5 + 5.0
    assert result.partial and result.missing_shards == ["s1"]
    shards[1].delay_s = 0
    store.close()


def test_partial_fail_policy_raises_naming_the_shard() -> None:
    store, shards = make(replicas=1, deadline_s=2.0, retries=0, partial="fail")
    shards[0].down = True
    with pytest.raises(ShardUnavailableError, match="s0"):
        store.search("topic3", k=5)
    store.close()


def test_with_replicas_a_dead_shard_loses_no_record(single: HybridStore) -> None:
    store, shards = make(replicas=2, deadline_s=2.0, retries=0)
    shards[3].down = True
    for query in ("topic3 theme1", "record 17", "theme2"):
        dense = store.search(query, k=10, mode="dense")
        assert not dense.partial
        assert dense.ids == single.search(query, k=10, mode="dense").ids
        for mode in ("hybrid", "lexical"):
            # BM25 statistics come from the live shards only, so scores may shift slightly
            # while a replica is down; every record is still there.
            result = store.search(query, k=10, mode=mode)
            assert not result.partial and len(result) == 10
            overlap = set(result.ids) & set(single.search(query, k=10, mode=mode).ids)
            assert len(overlap) >= 8
    assert [r.id for r in store.get(IDS)] == IDS  # reads fail over to the other replica
    store.close()


def test_write_quorum_is_enforced() -> None:
    store, shards = make(replicas=2, write_quorum=2, deadline_s=2.0, retries=0)
    shards[0].down = True
    with pytest.raises(QuorumError, match="fewer than 2 replicas"):
        store.add_texts([f"new {i}" for i in range(20)], ids=[f"n{i}" for i in range(20)])
    store.close()
    relaxed, shards = make(replicas=2, write_quorum=1, deadline_s=2.0, retries=0)
    shards[0].down = True
    relaxed.add_texts([f"new {i}" for i in range(20)], ids=[f"n{i}" for i in range(20)])
    assert len(relaxed.get([f"n{i}" for i in range(20)])) == 20
    relaxed.close()


def test_circuit_breaker_skips_a_failing_shard() -> None:
    store, shards = make(replicas=2, deadline_s=2.0, retries=0, breaker_threshold=2)
    shards[1].down = True
    for _ in range(3):
        store.search("topic1", k=3, mode="dense")
    backend = store.backend
    assert isinstance(backend, ShardedStore)
    status = {row["shard"]: row for row in backend.status()}
    assert status["s1"]["breaker"] == "open"
    assert status["s1"]["errors"] >= 2
    store.close()


def test_hedging_stops_waiting_for_a_slow_replica(single: HybridStore) -> None:
    store, shards = make(replicas=2, deadline_s=10.0, hedge_after_s=0.05)
    shards[0].delay_s = 3.0
    started = time.monotonic()
    result = store.search("topic4 theme0", k=10, mode="dense")
    assert time.monotonic() - started < 2.0
    assert not result.partial
    assert result.ids == single.search("topic4 theme0", k=10, mode="dense").ids
    shards[0].delay_s = 0
    store.close()


def test_growing_3_to_4_shards_online_moves_a_quarter_and_loses_nothing() -> None:
    shards = [LocalShard(name=f"s{i}") for i in range(3)]
    router = ShardedStore(shards, replicas=1)
    store = HybridStore(backend=router, embedder=HashingEmbedder(dim=64))
    texts = [f"record {i} about topic{i % 11}" for i in range(1500)]
    ids = [f"r{i:04d}" for i in range(1500)]
    store.add_texts(texts, ids=ids)
    problems: list[str] = []
    stop = threading.Event()
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            result = store.search("topic5 record", k=50, mode="lexical")
            if len(set(result.ids)) != len(result.ids):
                problems.append(f"duplicates in {result.ids}")
            if len(result) != 50:
                problems.append(f"only {len(result)} hits")
            got = store.get(ids[::97])
            if len(got) != len(ids[::97]):
                problems.append(f"get lost records: {len(got)}")
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    report = router.add_shard(LocalShard(name="s3"))
    time.sleep(0.2)
    stop.set()
    thread.join()
    assert problems == []
    assert reads > 0
    assert report.records == 1500
    assert 0.15 <= report.moved_fraction <= 0.35
    assert store.count() == 1500
    assert sorted(store.backend.ids()) == ids
    per_shard = {row["shard"]: row["records"] for row in router.status()}
    assert sum(per_shard.values()) == 1500 and per_shard["s3"] == report.moved
    store.close()
