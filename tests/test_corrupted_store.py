"""Reliability, case 5: a damaged store directory is never served silently. Every index file
truncated, bit-flipped, deleted or validly edited is detected and the indexes are rebuilt
from SQLite (answers identical to the intact store); a missing, emptied, corrupt or foreign
record log is a clear StoreError, never an empty store, and leaves the directory as it was."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragkit import HybridStore
from ragkit.backends import LocalShard
from ragkit.backends.local._checkpoint import installed_folder
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import StoreError

EMBEDDER = HashingEmbedder(dim=64)
QUERIES = ["alpha report", "budget memo", "gamma"]


def build(path: Path) -> None:
    """Two tenants with overlapping ids; exact_threshold=10 puts HNSW on disk too. Each text
    has a word of its own, so no two vectors tie (HNSW picks arbitrarily among ties)."""
    shard = LocalShard(path, exact_threshold=10)
    with HybridStore(backend=shard, embedder=EMBEDDER) as store:
        for tenant in ("acme", "globex"):
            store.add_texts(
                [f"{tenant} alpha report {i} budget memo gamma{i % 5} w{i}" for i in range(60)],
                metadatas=[{"n": i} for i in range(60)],
                ids=[f"doc-{i}" for i in range(60)],
                tenant=tenant,
            )
        store.delete([f"doc-{i}" for i in range(0, 60, 7)], tenant="globex")


def answers(path: Path) -> dict[str, Any]:
    with HybridStore(backend=LocalShard(path, exact_threshold=10), embedder=EMBEDDER) as store:
        out: dict[str, Any] = {}
        for tenant in ("acme", "globex"):
            out[f"{tenant}/count"] = store.count(tenant=tenant)
            for q in QUERIES:
                for mode in ("dense", "lexical", "hybrid"):
                    # k covers every record: HNSW breaks ties at a cut-off arbitrarily
                    got = store.search(q, k=60, mode=mode, tenant=tenant)
                    out[f"{tenant}/{q}/{mode}"] = [(h.id, h.record.tenant) for h in got]
            out[f"{tenant}/filtered"] = store.ids({"n": {"$lt": 10}}, tenant=tenant)
        return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("pristine") / "kb"
    build(path)
    return path, answers(path)


def copy_of(pristine: Path, tmp_path: Path) -> Path:
    path = tmp_path / "kb"
    shutil.copytree(pristine, path)
    (path / "LOCK").unlink(missing_ok=True)
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))


def delete(path: Path) -> None:
    path.unlink()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": truncate,
    "flipped": flip,
    "deleted": delete,
}
INDEX_FILES = [
    "rows_docs.npy",
    "rows_alive.npy",
    "rows_tenant.npy",
    "rows_ids.json",
    "tenants.json",
    "dense_matrix.npy",
    "dense.json",
    "dense.hnsw",
    "lexical_term_ids.npy",
    "lexical_offsets.npy",
    "lexical_rows.npy",
    "lexical_tfs.npy",
    "lexical_positions.npy",
    "lexical_doc_len.npy",
    "lexical_vocab.json",
    "manifest.json",
]


def test_the_checkpoint_holds_every_file_the_suite_damages(
    pristine: tuple[Path, dict[str, Any]],
) -> None:
    present = {p.name for p in checkpoint_dir(pristine[0]).iterdir()}
    assert present == set(INDEX_FILES)


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("name", INDEX_FILES)
def test_a_damaged_index_file_is_rebuilt_from_sqlite(
    pristine: tuple[Path, dict[str, Any]], tmp_path: Path, name: str, damage: str
) -> None:
    path = copy_of(pristine[0], tmp_path)
    DAMAGE[damage](checkpoint_dir(path) / name)
    assert answers(path) == pristine[1]


def edit_npy(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    np.save(path, change(np.load(path, allow_pickle=False)), allow_pickle=False)
    saved = path.with_name(path.name + ".npy")  # np.save appends .npy to a name without it
    if saved.exists():
        saved.replace(path)


VALID_EDITS: dict[str, Callable[[Path], None]] = {
    # A valid npy whose tenant codes are swapped: acme's rows would be served as globex's.
    "swapped tenant codes": lambda p: edit_npy(
        checkpoint_dir(p) / "rows_tenant.npy", lambda a: 1 - a
    ),
    "swapped tenant names": lambda p: (checkpoint_dir(p) / "tenants.json").write_text(
        json.dumps(list(reversed(json.loads((checkpoint_dir(p) / "tenants.json").read_text()))))
    ),
    "lowered manifest seq": lambda p: (checkpoint_dir(p) / "manifest.json").write_text(
        json.dumps({**json.loads((checkpoint_dir(p) / "manifest.json").read_text()), "seq": 3})
    ),
    "revived deleted rows": lambda p: edit_npy(checkpoint_dir(p) / "rows_alive.npy", np.ones_like),
}


@pytest.mark.parametrize("edit", list(VALID_EDITS))
def test_an_edited_index_that_still_parses_is_not_served(
    pristine: tuple[Path, dict[str, Any]], tmp_path: Path, edit: str
) -> None:
    path = copy_of(pristine[0], tmp_path)
    VALID_EDITS[edit](path)
    got = answers(path)
    assert got == pristine[1]
    for key, hits in got.items():  # and no tenant ever sees another tenant's record
        tenant = key.split("/")[0]
        if isinstance(hits, list) and hits and isinstance(hits[0], tuple):
            assert {t for _, t in hits} == {tenant}


@pytest.mark.parametrize(
    "damage",
    ["deleted", "emptied", "garbage", "another store's"],
)
def test_a_damaged_record_log_is_an_error_never_an_empty_store(
    pristine: tuple[Path, dict[str, Any]], tmp_path: Path, damage: str
) -> None:
    path = copy_of(pristine[0], tmp_path)
    checkpoint = checkpoint_dir(path)
    log = path / "records.sqlite3"
    for leftover in path.glob("records.sqlite3-*"):
        leftover.unlink()
    if damage == "deleted":
        log.unlink()
    elif damage == "emptied":
        log.write_bytes(b"")
    elif damage == "garbage":
        log.write_bytes(b"\x00garbage" * 4096)
    else:
        other = tmp_path / "other"
        build(other)
        shutil.copy(other / "records.sqlite3", log)
    index_before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    with pytest.raises(StoreError):
        HybridStore(path, embedder=EMBEDDER)
    # The failed open changed nothing: no index was overwritten by an empty checkpoint.
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == index_before


def test_a_deleted_store_marker_is_recreated_and_the_store_still_answers(
    pristine: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path = copy_of(pristine[0], tmp_path)
    (path / "STORE").unlink()
    assert answers(path) == pristine[1]
    assert (path / "STORE").exists()


def checkpoint_dir(store: Path) -> Path:
    """The installed checkpoint of a closed store (checkpoints are versioned directories)."""
    folder = installed_folder(store)
    assert folder is not None, f"{store} has no checkpoint"
    return folder
