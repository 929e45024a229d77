"""Reopening a store restores everything; indexes are rebuilt or replayed from SQLite."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ragkit import HybridStore
from ragkit.backends import LocalShard
from ragkit.backends.local._checkpoint import installed_folder
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import EmbedderMismatchError, StoreError
from ragkit.testing.shard_contract import search_lexical

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
]


def corpus(n: int) -> list[str]:
    return [
        f"{WORDS[i % 12]} {WORDS[(i * 7) % 12]} item{i} {WORDS[(i * 5) % 12]}" for i in range(n)
    ]


QUERIES = ["alpha beta", "gamma item7", "theta iota kappa", "item42 mu"]


def answers(store: HybridStore) -> list[list[str]]:
    return [
        store.search(q, k=5, mode=m).ids for q in QUERIES for m in ("hybrid", "dense", "lexical")
    ]


@pytest.mark.parametrize("exact_threshold", [10_000, 5])
def test_reopen_restores_records_results_and_embedder(tmp_path: Path, exact_threshold: int) -> None:
    path = tmp_path / "kb"
    backend = LocalShard(path, exact_threshold=exact_threshold)
    with HybridStore(backend=backend, embedder=HashingEmbedder(dim=24)) as store:
        store.add_texts(
            corpus(60), ids=[f"r{i}" for i in range(60)], metadatas=[{"i": i} for i in range(60)]
        )
        store.delete(ids=["r3", "r4"])
        before = answers(store)
    with HybridStore(backend=LocalShard(path, exact_threshold=exact_threshold)) as store:
        assert store.embedder.model_id == "ragkit/hashing-24"
        assert store.count() == 58
        assert answers(store) == before
        assert store.count({"i": {"$lt": 10}}) == 8


def test_opening_with_another_embedder_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    with HybridStore(path, embedder=HashingEmbedder(dim=24)) as store:
        store.add_texts(["hello"])
    with pytest.raises(EmbedderMismatchError, match="hashing-24"):
        HybridStore(path, embedder=HashingEmbedder(dim=32))
    with HybridStore(path) as store:  # the failed open released the directory
        assert store.count() == 1


def test_a_directory_is_opened_by_one_store_at_a_time(tmp_path: Path) -> None:
    """Within a process, opening it again closes the earlier handle (a notebook cell run
    twice); another process gets a StoreError (tests/test_scores.py, held_open)."""
    first = HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=8))
    with HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=8)) as second:
        second.add_texts(["x"])
        with pytest.raises(StoreError, match="closed"):
            first.add_texts(["y"])


def test_a_damaged_checkpoint_is_rebuilt_from_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    with HybridStore(path, embedder=HashingEmbedder(dim=24)) as store:
        store.add_texts(corpus(40), ids=[f"r{i}" for i in range(40)])
        before = answers(store)
    (checkpoint_dir(path) / "lexical_rows.npy").write_bytes(b"garbage")
    with HybridStore(path) as store:
        assert answers(store) == before
    shutil.rmtree(checkpoint_dir(path))
    with HybridStore(path) as store:
        assert answers(store) == before


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys
    from ragkit import HybridStore
    from ragkit.embeddings import HashingEmbedder
    sys.path.insert(0, {tests!r})
    from test_persistence import corpus
    store = HybridStore({path!r}, embedder=HashingEmbedder(dim=24))
    texts = corpus(120)
    store.add_texts(texts[60:], ids=[f"r{{i}}" for i in range(60, 120)])
    store.delete(ids=["r0", "r1", "r61"])
    store.add_texts(["replaced text omega"], ids=["r2"])
    os._exit(0)  # no close(): the indexes on disk still cover only the first session
    """
)


def test_writes_after_the_last_checkpoint_are_replayed(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    with HybridStore(path, embedder=HashingEmbedder(dim=24)) as store:
        store.add_texts(corpus(60), ids=[f"r{i}" for i in range(60)])
    script = CRASHING_WRITER.format(path=str(path), tests=str(Path(__file__).parent))
    subprocess.run([sys.executable, "-c", script], check=True)
    with HybridStore(path) as store:
        assert store.count() == 117
        assert store.get(["r0", "r1", "r61"]) == []
        assert store.search("omega", k=1, mode="lexical").ids == ["r2"]
        assert store.search("item99", k=1, mode="lexical").ids == ["r99"]
        stats = store.backend.lexical_stats(["item"])
        assert stats.doc_count == 117
    with HybridStore(path, embedder=HashingEmbedder(dim=24)) as fresh_copy_check:
        rebuilt = LocalShard()
        rebuilt.upsert(fresh_copy_check.get([f"r{i}" for i in range(120)], include_vectors=True))
        for q in QUERIES:
            replayed = search_lexical(fresh_copy_check.backend, q, 10)
            assert [c.id for c in replayed] == [c.id for c in search_lexical(rebuilt, q, 10)]


def checkpoint_dir(store: Path) -> Path:
    """The installed checkpoint of a closed store (checkpoints are versioned directories)."""
    folder = installed_folder(store)
    assert folder is not None, f"{store} has no checkpoint"
    return folder
