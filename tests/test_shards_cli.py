"""A sharded store in one directory, driven from the CLI: init, ingest, search, status, add."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragkit import HybridStore
from ragkit.backends import ShardedStore
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder


def test_sharded_store_directory_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "kb"
    assert main(["shards", "init", "--store", str(store), "--shards", "3", "--replicas", "2"]) == 0
    with HybridStore(store, embedder=HashingEmbedder(dim=32)) as kb:
        assert isinstance(kb.backend, ShardedStore)
        kb.add_texts(
            [f"passage {i} on topic{i % 5}" for i in range(300)], ids=[f"p{i}" for i in range(300)]
        )
    capsys.readouterr()
    assert main(["shards", "status", "--store", str(store), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["shard"] for r in rows] == ["shard-000", "shard-001", "shard-002"]
    assert sum(r["records"] for r in rows) == 600
    assert all(r["health"] == "ok" and r["replica_lag"] == 0 for r in rows)

    assert main(["shards", "add", "--store", str(store)]) == 0
    assert main(["search", "--store", str(store), "topic3", "--json", "-k", "5"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 5 and len({h["id"] for h in hits}) == 5
    assert main(["shards", "status", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "shard-003" in out and "replica lag" in out
    with HybridStore(store) as kb:
        assert kb.count() == 300


def test_status_of_a_plain_store_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=8)).close()
    assert main(["shards", "status", "--store", str(tmp_path / "kb")]) == 2
    assert "not a sharded store" in capsys.readouterr().err
