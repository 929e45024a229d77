"""Issue 29, acceptance 3: ``ragkit migrate`` round-trips a 1,000-record tenanted store
local -> Milvus (milvus-lite) -> Qdrant (local mode) -> local with identical records and
identical search results (ids and order) for 50 queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is part of make test")
pytest.importorskip("qdrant_client", reason="the qdrant extra is part of make test")

from ragkit import HybridStore
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder

TOPICS = ["solar", "wind", "grid", "battery", "hydro", "nuclear", "coal", "storage", "market"]
QUERIES = [f"{TOPICS[i % 9]} {TOPICS[(i * 4 + 1) % 9]} plant {i % 13}" for i in range(50)]


def make_source(path: Path) -> list[tuple[str | None, str]]:
    keys: list[tuple[str | None, str]] = []
    with HybridStore(path, embedder=HashingEmbedder(dim=32)) as store:
        for tenant, n in ((None, 700), ("acme", 300)):
            ids = [f"{tenant or 'main'}-{i:04d}" for i in range(n)]
            texts = [
                f"{TOPICS[i % 9]} plant {i % 13} report on {TOPICS[(i * 7) % 9]} and "
                f"{TOPICS[(i * 5) % 9]} number {i}"
                for i in range(n)
            ]
            metadatas = [{"i": i, "year": 2000 + i % 25, "tags": TOPICS[: i % 4]} for i in range(n)]
            store.add_texts(texts, metadatas=metadatas, ids=ids, tenant=tenant)
            keys += [(tenant, i) for i in ids]
    return keys


def snapshot(path: Path, keys: list[tuple[str | None, str]]) -> list[tuple]:
    out = []
    with HybridStore(path) as store:
        for tenant in ("acme", None):
            ids = [i for t, i in keys if t == tenant]
            for r in store.get(ids, tenant=tenant, include_vectors=True):
                out.append((r.id, r.text, r.metadata, r.tenant, np.round(r.vector, 6).tolist()))
    return out


def answers(path: Path) -> list[list[tuple[str, float]]]:
    with HybridStore(path) as store:
        return [
            [(h.id, round(h.score, 5)) for h in store.search(q, k=10, tenant=t).hits]
            for q in QUERIES
            for t in (None, "acme")
        ]


def test_local_milvus_qdrant_local_round_trip(tmp_path: Path) -> None:
    keys = make_source(tmp_path / "src")
    milvus = f"milvus+file://{tmp_path / 'kb.db'}#copy"
    qdrant = f"qdrant+file://{tmp_path / 'qdrant'}#copy"
    for source, target in (
        (tmp_path / "src", milvus),
        (milvus, qdrant),
        (qdrant, tmp_path / "back"),
    ):
        assert main(["migrate", "--from", str(source), "--to", str(target)]) == 0
    assert snapshot(tmp_path / "back", keys) == snapshot(tmp_path / "src", keys)
    assert len(keys) == 1000
    want, got = answers(tmp_path / "src"), answers(tmp_path / "back")
    assert [[i for i, _ in hits] for hits in got] == [[i for i, _ in hits] for hits in want]
    assert got == want
    with HybridStore(tmp_path / "back") as store:  # the embedder setting travelled too
        assert store.embedder.model_id == "ragkit/hashing-32"


def test_engine_uris_are_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    HybridStore(tmp_path / "src", embedder=HashingEmbedder(dim=8)).close()
    for bad in ("milvus+file://kb.db", "qdrant+http:///", "milvus+ftp://h/c"):
        assert main(["migrate", "--from", str(tmp_path / "src"), "--to", bad]) == 2
        assert "COLLECTION" in capsys.readouterr().err
