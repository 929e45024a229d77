from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("ragkit.testing")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragkit import HybridStore  # noqa: E402
from ragkit.embeddings import HashingEmbedder, LocalEmbedder  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    if not (SCIFACT / "corpus.jsonl.gz").exists():
        pytest.fail(f"SciFact is expected at {SCIFACT} (see DEVELOPERS.md)")
    return SCIFACT


@pytest.fixture(scope="session")
def scifact_store(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SciFact indexed once per session with the default embedder (about 90 s); tests open
    the directory in turn (a store directory is open in one place at a time)."""
    from ragkit.cli import main

    path = tmp_path_factory.mktemp("scifact") / "kb"
    assert main(["ingest", "--store", str(path), str(scifact_dir)]) == 0
    return path


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture
def hashing() -> HashingEmbedder:
    return HashingEmbedder(dim=64)


@pytest.fixture
def store(hashing: HashingEmbedder) -> Iterator[HybridStore]:
    with HybridStore(embedder=hashing) as s:
        yield s
