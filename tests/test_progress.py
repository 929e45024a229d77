"""A long ingest is never silent: off a terminal, a progress line at least every 10 s."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from rich.console import Console

from ragkit import HybridStore
from ragkit.cli._progress import IngestProgress
from ragkit.cli.commands import ingest_docs
from ragkit.embeddings import HashingEmbedder
from ragkit.ingest.sources import SourceDoc


class SlowEmbedder(HashingEmbedder):
    """Takes at least 40 ms a text, whatever the CPU: the ingest below lasts over 10 s."""

    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        time.sleep(0.04 * len(texts))
        return super().embed_documents(texts)


LINE = re.compile(
    r"^indexing: (\d+)/300 chunks, [\d.]+ chunks/s, (ETA \S+, )?\S+ elapsed$", re.MULTILINE
)


def test_a_non_terminal_ingest_longer_than_10_s_prints_progress_lines() -> None:
    output = io.StringIO()
    console = Console(file=output, width=200)  # a file: not a terminal
    assert not console.is_terminal
    docs = [SourceDoc(f"d{i}", f"passage number {i} about progress") for i in range(300)]
    started = time.monotonic()
    with HybridStore(embedder=SlowEmbedder(dim=16)) as store:
        done = ingest_docs(
            store, iter(docs), total=300, batch_size=20, tenant=None, console=console
        )
        elapsed = time.monotonic() - started
        assert done == 300 and store.count() == 300
    assert elapsed > 10
    lines = LINE.findall(output.getvalue())
    assert len(lines) >= int(elapsed // 10) >= 1, output.getvalue()
    counts = [int(done) for done, _ in lines]
    assert counts == sorted(counts) and counts[-1] < 300  # printed while it ran
    assert all(eta for _, eta in lines)  # a total is known: each line has an ETA


def test_progress_lines_count_files_when_a_sync_reports_them() -> None:
    output = io.StringIO()
    with IngestProgress(Console(file=output), "syncing", every_s=0.05) as progress:
        progress.update(40, total=100, files=3, files_total=10)
        time.sleep(0.3)
    assert "syncing: 40/100 chunks, 3/10 files," in output.getvalue()
