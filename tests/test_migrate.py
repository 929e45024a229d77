"""Issue 5, acceptance 5: ragkit migrate LocalShard -> Chroma -> LocalShard keeps every
record, and resumes after being killed half-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("chromadb", reason="the chroma extra is part of make test")

from ragkit import HybridStore
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder


def make_source(path: Path, n: int) -> list[str]:
    with HybridStore(path, embedder=HashingEmbedder(dim=32)) as store:
        ids = store.add_texts(
            [f"passage {i} about topic{i % 9}" for i in range(n)],
            metadatas=[{"i": i, "tags": ["a", "b"][: i % 3], "nested": {"x": i}} for i in range(n)],
            ids=[f"p{i:05d}" for i in range(n)],
        )
        store.add_texts(["tenant text"], ids=["t1"], tenant="acme")
    return [*ids, "t1"]


def snapshot(path: Path | str, ids: list[str]) -> list[tuple]:
    with HybridStore(path) as store:
        records = store.get(ids, include_vectors=True)
        return [
            (r.id, r.text, r.metadata, r.tenant, np.round(r.vector, 6).tolist()) for r in records
        ]


def test_local_to_chroma_and_back_preserves_every_record(tmp_path: Path) -> None:
    ids = make_source(tmp_path / "src", 1200)
    chroma = f"chroma:{tmp_path / 'chroma'}#copy"
    assert main(["migrate", "--from", str(tmp_path / "src"), "--to", chroma]) == 0
    assert main(["migrate", "--from", chroma, "--to", str(tmp_path / "back")]) == 0
    assert snapshot(tmp_path / "back", ids) == snapshot(tmp_path / "src", ids)
    with HybridStore(tmp_path / "back") as store:  # the embedder setting travelled too
        assert store.embedder.model_id == "ragkit/hashing-32"
        assert store.count(tenant="acme") == 1
        assert store.search("topic4", k=3, mode="lexical").ids


def test_migrate_resumes_after_being_killed(tmp_path: Path) -> None:
    ids = make_source(tmp_path / "src", 3000)
    target = f"chroma:{tmp_path / 'chroma'}#resumed"
    args = ["migrate", "--from", str(tmp_path / "src"), "--to", target, "--batch-size", "200"]
    child = subprocess.Popen(
        [sys.executable, "-m", "ragkit.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    copied = 0
    while copied < 1000:
        line = child.stdout.readline()
        assert line, "migration ended before it could be interrupted"
        copied = int(line.split()[1].split("/")[0])
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    result = subprocess.run(
        [sys.executable, "-m", "ragkit.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    first = int(result.stdout.splitlines()[0].split()[1].split("/")[0])
    assert first > 1000  # resumed, not started over
    assert "resumed at" in result.stderr
    chroma_snapshot = []
    from ragkit.migrate import open_uri

    shard = open_uri(target)
    chroma_snapshot = [(r.id, r.text, r.metadata) for r in shard.get(ids)]
    shard.close()
    with HybridStore(tmp_path / "src") as store:
        assert chroma_snapshot == [(r.id, r.text, r.metadata) for r in store.get(ids)]


def test_unknown_store_uris_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_source(tmp_path / "src", 3)
    assert main(["migrate", "--from", str(tmp_path / "src"), "--to", "redis://x/y"]) == 2
    assert "unknown store URI" in capsys.readouterr().err
    assert main(["migrate", "--from", str(tmp_path / "src"), "--to", "weaviate+http:///"]) == 2
    assert "weaviate+http://HOST:PORT/COLLECTION" in capsys.readouterr().err


def test_uri_credentials_are_sent_but_never_printed_or_stored(
    tmp_path: Path, chroma_server: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Reliability, case 3: ``chroma+http://user:pass@...`` authenticates (Basic auth header),
    and the password appears in no output and in no file or setting migrate writes."""
    host, port = chroma_server
    ids = make_source(tmp_path / "src", 30)
    remote = f"chroma+http://alice:s3cret-pw@{host}:{port}/credentials"
    assert main(["migrate", "--from", str(tmp_path / "src"), "--to", remote]) == 0
    assert main(["migrate", "--from", remote, "--to", str(tmp_path / "back")]) == 0
    printed = capsys.readouterr()
    assert "s3cret-pw" not in printed.out + printed.err
    assert "chroma+http://***@" in printed.err  # the URI is shown, redacted
    assert snapshot(tmp_path / "back", ids) == snapshot(tmp_path / "src", ids)
    for file in (tmp_path / "back").rglob("*"):
        if file.is_file():
            assert b"s3cret-pw" not in file.read_bytes(), file
    import chromadb

    settings = chromadb.HttpClient(host=host, port=port).get_collection("credentials-ragkit")
    stored = settings.get(include=["metadatas"])["metadatas"]  # what migrate wrote there
    assert any(key.startswith("user.migrate:") for meta in stored for key in meta)
    assert "s3cret-pw" not in repr(stored)
