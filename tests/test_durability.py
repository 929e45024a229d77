"""Acceptance 4: SIGKILL during a long ingest loses no acknowledged write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from ragkit import HybridStore

INGEST = textwrap.dedent(
    """
    import sys
    from ragkit import HybridStore
    from ragkit.embeddings import HashingEmbedder
    from ragkit.backends import LocalShard
    # Small checkpoint interval and HNSW threshold: the kill can land mid-checkpoint too.
    shard = LocalShard({path!r}, checkpoint_every=700, exact_threshold=300)
    store = HybridStore(backend=shard, embedder=HashingEmbedder(dim=256))
    batch = 0
    while True:
        ids = [f"b{{batch}}-{{i}}" for i in range(50)]
        texts = [
            f"record uniq{{batch}}x{{i}} alt{{batch}}y{{i}} third{{batch}}z{{i}}" for i in range(50)
        ]
        store.add_texts(texts, ids=ids, metadatas=[{{"batch": batch}}] * 50)
        print(batch, flush=True)  # printed only after add_texts returned: acknowledged
        batch += 1
    """
)


def test_sigkill_mid_ingest_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    child = subprocess.Popen(
        [sys.executable, "-c", INGEST.format(path=str(path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked: list[int] = []
    deadline = time.monotonic() + 120
    while len(acked) < 60 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 20, "the writer did not get going"

    with HybridStore(path) as store:  # opens without any manual repair
        expected = [f"b{b}-{i}" for b in acked for i in range(50)]
        assert len(store.get(expected)) == len(expected)
        assert store.count() >= len(expected)
        assert store.count({"batch": acked[-1]}) == 50
        records = store.get(expected[::37], include_vectors=True)
        for record in records:
            token = record.text.split()[1]
            assert store.search(token, k=1, mode="lexical").ids == [record.id]
            assert record.vector is not None
            top = store.search_by_vector(np.asarray(record.vector), k=1)[0]
            assert top.id == record.id and top.dense_score is not None
            assert top.dense_score > 0.999
        store.add_texts(["after the crash"], ids=["after"])
        assert store.get(["after"])[0].text == "after the crash"
