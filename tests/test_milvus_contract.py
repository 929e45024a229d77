"""MilvusShard passes the Shard contract against milvus-lite (a local file), and against a real
Milvus server when ``RAGKIT_MILVUS_URI`` is set (issue 29, acceptance 1)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is part of make test")

from ragkit.backends import MilvusShard, Shard
from ragkit.testing.shard_contract import ShardContract

_names = itertools.count()


@pytest.fixture(scope="module")
def milvus_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One milvus-lite file for the module: each shard is a collection in it."""
    yield str(tmp_path_factory.mktemp("milvus") / "kb.db")


class TestMilvusLite(ShardContract):
    @pytest.fixture
    def make_shard(self, milvus_file: str) -> Callable[[], Shard]:
        return lambda: MilvusShard(milvus_file, collection=f"c{next(_names):04d}")


@pytest.mark.skipif(not os.environ.get("RAGKIT_MILVUS_URI"), reason="no Milvus server here")
class TestMilvusServer(ShardContract):
    @pytest.fixture
    def make_shard(self) -> Callable[[], Shard]:
        uri = os.environ["RAGKIT_MILVUS_URI"]
        token = os.environ.get("RAGKIT_MILVUS_TOKEN")
        run = os.getpid()
        return lambda: MilvusShard(uri, token=token, collection=f"ragkit_test_{run}_{next(_names)}")
