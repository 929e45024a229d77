"""ChromaShard passes the Shard contract embedded (PersistentClient) and over HTTP against a
real ``chroma run`` server on 127.0.0.1 (issue 5, acceptance 1)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

chromadb = pytest.importorskip("chromadb", reason="the chroma extra is part of make test")

from ragkit.backends import ChromaShard, Shard  # noqa: E402
from ragkit.testing.shard_contract import ReplicaContract  # noqa: E402

_names = itertools.count()


class TestChromaShardEmbedded(ReplicaContract):
    @pytest.fixture
    def make_shard(self, tmp_path: Path) -> Callable[[], Shard]:
        client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))

        def make() -> Shard:
            name = f"c{next(_names):04d}"
            return ChromaShard(client, name, sidecar_path=tmp_path / f"side-{name}")

        return make


class TestChromaShardServer(ReplicaContract):
    @pytest.fixture
    def make_shard(self, chroma_server: Any, tmp_path: Path) -> Callable[[], Shard]:
        host, port = chroma_server
        client = chromadb.HttpClient(host=host, port=port)

        def make() -> Shard:
            name = f"s{next(_names):04d}"
            return ChromaShard(client, name, sidecar_path=tmp_path / f"side-{name}")

        return make


def test_writes_are_split_at_the_clients_max_batch_size(tmp_path: Path) -> None:
    from ragkit.testing.shard_contract import make_records

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    shard = ChromaShard(client, "batches")
    shard._batch = 3  # as if the server accepted 3 records per request
    calls: list[int] = []
    upsert = shard._col.upsert
    shard._col.upsert = lambda **kw: (calls.append(len(kw["ids"])), upsert(**kw))[1]  # type: ignore[method-assign]
    shard.upsert(make_records())
    assert calls == [3, 3, 2]
    assert shard.count() == 8 and len(shard.get([r.id for r in make_records()])) == 8
    shard.close()
