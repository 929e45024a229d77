"""LocalShard passes the shared Shard and replica contracts in memory, on disk, and on its HNSW
path."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from ragkit.backends import LocalShard, Shard
from ragkit.testing.shard_contract import ReplicaContract


class TestLocalShardInMemory(ReplicaContract):
    @pytest.fixture
    def make_shard(self) -> Callable[[], Shard]:
        return LocalShard


class TestLocalShardOnDisk(ReplicaContract):
    @pytest.fixture
    def make_shard(self, tmp_path: Path) -> Callable[[], Shard]:
        numbers = itertools.count()
        return lambda: LocalShard(tmp_path / f"shard-{next(numbers)}")


class TestLocalShardHnswPath(ReplicaContract):
    """exact_threshold=2 forces the HNSW graph (and its filtered search) on the tiny corpus."""

    @pytest.fixture
    def make_shard(self, tmp_path: Path) -> Callable[[], Shard]:
        numbers = itertools.count()
        return lambda: LocalShard(
            tmp_path / f"shard-{next(numbers)}", exact_threshold=2, ef_search=64
        )
