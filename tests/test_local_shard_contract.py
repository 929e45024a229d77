"""LocalShard passes the shared Shard contract in memory, on disk, and on its HNSW path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ragkit.backends import LocalShard, Shard
from ragkit.backends.contract import ShardContract


class TestLocalShardInMemory(ShardContract):
    @pytest.fixture
    def make_shard(self) -> Callable[[], Shard]:
        return LocalShard


class TestLocalShardOnDisk(ShardContract):
    @pytest.fixture
    def make_shard(self, tmp_path: Path) -> Callable[[], Shard]:
        return lambda: LocalShard(tmp_path / "shard")


class TestLocalShardHnswPath(ShardContract):
    """exact_threshold=2 forces the HNSW graph (and its filtered search) on the tiny corpus."""

    @pytest.fixture
    def make_shard(self, tmp_path: Path) -> Callable[[], Shard]:
        return lambda: LocalShard(tmp_path / "shard", exact_threshold=2, ef_search=64)
