"""QdrantShard passes the Shard contract in qdrant-client's local mode (in memory and on
disk), and against a real Qdrant server when ``RAGKIT_QDRANT_URL`` is set (issue 29,
acceptance 1)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("qdrant_client", reason="the qdrant extra is part of make test")

from ragkit.backends import QdrantShard, Shard
from ragkit.testing.shard_contract import ShardContract

_names = itertools.count()


class TestQdrantInMemory(ShardContract):
    @pytest.fixture
    def make_shard(self) -> Callable[[], Shard]:
        return lambda: QdrantShard(":memory:", collection=f"c{next(_names)}")


class TestQdrantOnDisk(ShardContract):
    @pytest.fixture
    def make_shard(self, tmp_path: Path) -> Callable[[], Shard]:
        return lambda: QdrantShard(path=str(tmp_path / f"q{next(_names)}"))


@pytest.mark.skipif(not os.environ.get("RAGKIT_QDRANT_URL"), reason="no Qdrant server here")
class TestQdrantServer(ShardContract):
    @pytest.fixture
    def make_shard(self) -> Callable[[], Shard]:
        url, key = os.environ["RAGKIT_QDRANT_URL"], os.environ.get("RAGKIT_QDRANT_API_KEY")
        run = os.getpid()
        return lambda: QdrantShard(
            url=url, api_key=key, collection=f"ragkit-test-{run}-{next(_names)}"
        )
