"""Reliability, case 10: dead rows are compacted. Overwritten and deleted records leave the
dense matrix, the HNSW graph and the postings on ``optimize()`` / ``ragkit optimize``, and by
themselves once dead rows outnumber live ones; answers never change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragkit import HybridStore
from ragkit.backends import LocalShard
from ragkit.backends.local import _checkpoints as shard_module
from ragkit.backends.local._checkpoint import installed_folder
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder

EMBEDDER = HashingEmbedder(dim=32)
QUERIES = ["topic3 passage", "topic5", "version 7"]


def churn(store: HybridStore, live: int, rounds: int) -> None:
    """``live`` records, each rewritten ``rounds`` times, plus a few deleted."""
    for version in range(rounds):
        store.add_texts(
            [f"passage {i} about topic{i % 9} version {version}" for i in range(live)],
            metadatas=[{"i": i, "version": version} for i in range(live)],
            ids=[f"d{i}" for i in range(live)],
        )
    store.delete([f"d{i}" for i in range(0, live, 10)])


def answers(store: HybridStore) -> dict[str, Any]:
    out: dict[str, Any] = {"count": store.count(), "filtered": store.ids({"i": {"$lt": 50}})}
    for q in QUERIES:
        for mode in ("dense", "lexical", "hybrid"):
            got = store.search(q, k=400, mode=mode)  # every record: no tie cut by HNSW
            out[f"{q}/{mode}"] = [(h.id, round(h.score, 6)) for h in got]
    return out


def test_optimize_drops_every_dead_row_and_changes_no_answer(tmp_path: Path) -> None:
    shard = LocalShard(tmp_path / "kb", exact_threshold=100)  # HNSW is compacted too
    with HybridStore(backend=shard, embedder=EMBEDDER) as store:
        churn(store, live=300, rounds=8)
        before = answers(store)
        assert shard.info()["rows"] == 2400
        assert store.optimize() == 2400 - 270
        assert shard.info()["rows"] == 270 and shard.info()["hnsw"]
        assert answers(store) == before
        assert store.optimize() == 0  # nothing left to drop
    matrix = np.load(checkpoint_dir(tmp_path / "kb") / "dense_matrix.npy")
    assert matrix.shape == (270, 32)  # the checkpoint holds live rows only
    with HybridStore(tmp_path / "kb", embedder=EMBEDDER) as store:
        assert answers(store) == before


def test_dead_rows_past_the_live_ones_are_compacted_by_themselves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shard_module, "AUTO_OPTIMIZE_DEAD_ROWS", 500)
    shard = LocalShard(tmp_path / "kb")
    with HybridStore(backend=shard, embedder=EMBEDDER) as store:
        churn(store, live=200, rounds=2)  # 200 dead of 400 rows: below the threshold
        assert shard.info()["rows"] == 400
        churn(store, live=200, rounds=2)  # the 4th round leaves 600 dead: compacted
        assert shard.info()["rows"] == 200
        before = answers(store)
    with HybridStore(tmp_path / "kb", embedder=EMBEDDER) as store:
        assert answers(store) == before


def test_ragkit_optimize_reports_what_it_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with HybridStore(tmp_path / "kb", embedder=EMBEDDER) as store:
        churn(store, live=50, rounds=4)
        before = answers(store)
    assert main(["optimize", "--store", str(tmp_path / "kb")]) == 0
    assert "dropped 155 dead index rows; 45 records" in " ".join(capsys.readouterr().err.split())
    with HybridStore(tmp_path / "kb", embedder=EMBEDDER) as store:
        assert answers(store) == before
        assert store.backend.info()["rows"] == 45


def test_a_sharded_store_optimizes_every_partition() -> None:
    from ragkit.backends.sharded import ShardedStore

    backend = ShardedStore(2, partitions=3, replicas=2, heal_interval_s=None)
    with HybridStore(backend=backend, embedder=EMBEDDER) as store:
        churn(store, live=90, rounds=3)
        before = answers(store)
        assert store.optimize() == 2 * (270 - 81)  # every replica of every partition
        assert answers(store) == before


def checkpoint_dir(store: Path) -> Path:
    """The installed checkpoint of a closed store (checkpoints are versioned directories)."""
    folder = installed_folder(store)
    assert folder is not None, f"{store} has no checkpoint"
    return folder
