"""Readers never meet a half-written checkpoint (reliability round two, item 5).

A child process runs ``optimize()`` and ``checkpoint()`` back to back on a store while this
process opens it read-only at random moments. Before, 12 of 20 such opens loaded a checkpoint
mid-swap ("CRC-32 mismatch", "index 300 is out of bounds", a missing ``dense.json``) and
rebuilt their indexes from SQLite; now each loads the previous complete checkpoint or the
new one, and never rebuilds."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ragkit import HybridStore
from ragkit.embeddings import HashingEmbedder

RECORDS = 3000

CHILD = textwrap.dedent(
    """
    import sys
    from ragkit import HybridStore
    from ragkit.embeddings import HashingEmbedder

    with HybridStore(sys.argv[1], embedder=HashingEmbedder(dim=32)) as store:
        print("ready", flush=True)
        i = 0
        while True:
            store.backend.optimize()
            store.backend.checkpoint()
            i += 1
            print(i, flush=True)
    """
)


def test_a_reader_opening_during_optimize_never_rebuilds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _open_during_optimize(tmp_path, caplog, 20)


@pytest.mark.slow
def test_a_reader_opening_during_optimize_never_rebuilds_200_trials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _open_during_optimize(tmp_path, caplog, 200)


def _open_during_optimize(tmp_path: Path, caplog: pytest.LogCaptureFixture, trials: int) -> None:
    path = tmp_path / "kb"
    with HybridStore(path, embedder=HashingEmbedder(dim=32)) as kb:
        kb.add_texts(
            [f"passage {i} about topic{i % 37} and theme{i % 11}" for i in range(RECORDS)],
            ids=[f"p{i}" for i in range(RECORDS)],
        )
        expected = [h.record.id for h in kb.search("topic5 theme3", k=5).hits]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    rng = random.Random(7)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert child.stdout.readline().strip() == "1"  # optimize runs back to back now
        caplog.set_level(logging.WARNING, logger="ragkit")
        for trial in range(trials):
            time.sleep(rng.uniform(0, 0.15))
            with HybridStore(path, embedder=HashingEmbedder(dim=32), read_only=True) as reader:
                assert reader.count() == RECORDS, f"trial {trial}"
                got = [h.record.id for h in reader.search("topic5 theme3", k=5).hits]
                assert got == expected, f"trial {trial}"
            rebuilds = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
            assert not rebuilds, f"trial {trial}: {rebuilds}"
        installs = int(child.stdout.readline().strip())
        assert installs >= 2  # the writer did keep installing checkpoints meanwhile
    finally:
        child.kill()
        child.wait(timeout=30)
    with HybridStore(path, embedder=HashingEmbedder(dim=32)) as kb:  # and the store is whole
        assert kb.count() == RECORDS
        checkpoints = sorted(p.name for p in path.iterdir() if p.name.startswith("checkpoint-"))
        assert 1 <= len(checkpoints) <= 3  # the installed one, the previous, maybe a torn one
