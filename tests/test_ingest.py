"""The ingestion pipeline: chunkers with stable ids, loaders, back-pressure, retries,
dead letters, and re-ingesting an edited folder."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from numpy.typing import NDArray

from ragkit import HybridStore
from ragkit.embeddings import HashingEmbedder
from ragkit.embeddings.base import Embedder
from ragkit.errors import InvalidInputError
from ragkit.ingest import (
    CharChunker,
    IngestPipeline,
    MarkdownChunker,
    SourceDocument,
    TokenChunker,
    WholeChunker,
    as_source,
    from_langchain,
    from_llamaindex,
    load_folder,
)
from ragkit.ingest.chunkers import markdown_sections, text_hash


class CountingEmbedder(Embedder):
    """Hashing vectors; remembers every text it embedded and how many calls it served."""

    model_id = "hashing-64"

    def __init__(self) -> None:
        self.inner = HashingEmbedder(dim=64)
        self.model_id = self.inner.model_id
        self.texts: list[str] = []
        self.calls = 0
        self.lock = threading.Lock()

    @property
    def dim(self) -> int:
        return 64

    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        with self.lock:
            self.calls += 1
            self.texts.extend(texts)
        return self.inner.embed_documents(texts)

    def spec(self) -> dict[str, Any]:
        return self.inner.spec()


def _rate_limited() -> openai.RateLimitError:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/embeddings")
    return openai.RateLimitError(
        "Rate limit reached", response=httpx.Response(429, request=request), body=None
    )


class RateLimitedEmbedder(CountingEmbedder):
    """Raises the OpenAI SDK's RateLimitError for a share of calls (seeded), like a busy
    embedding service; slow enough that the queues before it fill up."""

    def __init__(self, share: float, seed: int = 7, delay_s: float = 0.002) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.share = share
        self.delay_s = delay_s
        self.refused = 0

    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        threading.Event().wait(self.delay_s)
        with self.lock:
            refuse = self.rng.random() < self.share
            self.refused += refuse
        if refuse:
            raise _rate_limited()
        return super().embed_documents(texts)


# ---- chunkers ------------------------------------------------------------------------------


def test_chunk_ids_are_stable_and_carry_source_position_and_hash() -> None:
    doc = SourceDocument("guide.md", "First paragraph here.\n\n" + "Second one, longer. " * 20)
    first = CharChunker(size=200, overlap=40).split(doc)
    again = CharChunker(size=200, overlap=40).split(doc)
    assert [c.id for c in first] == [f"guide.md#{i}" for i in range(len(first))]
    assert [(c.id, c.text) for c in first] == [(c.id, c.text) for c in again]
    assert all(len(c.text) <= 200 for c in first) and len(first) > 2
    for chunk in first:
        meta = chunk.record_metadata()
        assert meta["source"] == "guide.md" and meta["chunk"] == chunk.position
        assert meta["content_hash"] == text_hash(chunk.text)
    # each chunk after the first starts with the end of the one before (the overlap)
    for before, after in itertools.pairwise(first):
        assert after.text.split()[0] in before.text.split()[-8:]


def test_token_chunker_windows_overlap_by_the_given_tokens() -> None:
    text = " ".join(f"t{i}" for i in range(100))
    windows = TokenChunker(size=30, overlap=10).passages(text)
    assert [w.split()[0] for w in windows] == ["t0", "t20", "t40", "t60", "t80"]
    assert all(len(w.split()) <= 30 for w in windows)
    assert windows[-1].split()[-1] == "t99"
    assert windows[1].split()[:10] == windows[0].split()[-10:]


def test_markdown_chunker_splits_by_headings_but_not_inside_code_fences() -> None:
    text = (
        "Intro line.\n\n# Install\n\nRun it.\n\n## Linux\n\nUse apt.\n\n```sh\n# a comment\n"
        "apt install x\n```\n\n# Use\n\nCall it.\n"
    )
    sections = list(markdown_sections(text))
    assert [path for path, _ in sections] == [[], ["Install"], ["Install", "Linux"], ["Use"]]
    assert "# a comment" in sections[2][1]
    chunks = MarkdownChunker().split(SourceDocument("a.md", text))
    assert [c.metadata.get("section") for c in chunks] == [
        None,
        "Install",
        "Install > Linux",
        "Use",
    ]
    long = "# Big\n\n" + "A sentence of the big section. " * 100
    pieces = MarkdownChunker(size=300).split(SourceDocument("b.md", long))
    assert len(pieces) > 5 and all(len(p.text) <= 300 for p in pieces)
    assert {p.metadata["section"] for p in pieces} == {"Big"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CharChunker(size=10), "chunk size"),
        (lambda: CharChunker(size=200, overlap=150), "overlap"),
        (lambda: TokenChunker(size=4), "chunk size"),
        (lambda: TokenChunker(size=32, overlap=-1), "overlap"),
        (lambda: CharChunker(size=True), "chunk size"),  # type: ignore[arg-type]
    ],
)
def test_bad_chunk_sizes_are_clear_errors(make: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make()


# ---- loaders -------------------------------------------------------------------------------


def test_langchain_and_llamaindex_documents_become_sources() -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import Document as LIDocument
    from llama_index.core.schema import TextNode

    lc = from_langchain(Document(page_content="hello", metadata={"source": "a.txt", "p": 1}))
    assert (lc.id, lc.text, lc.metadata["p"]) == ("a.txt", "hello", 1)
    assert from_langchain(Document(id="x1", page_content="hi")).id == "x1"
    li = from_llamaindex(LIDocument(text="world", doc_id="d-1", metadata={"k": "v"}))
    assert (li.id, li.text, li.metadata) == ("d-1", "world", {"k": "v"})
    node = as_source(TextNode(text="node text", id_="n-1"))
    assert (node.id, node.text) == ("n-1", "node text")
    assert as_source("just text").id == as_source("just text").id  # content-derived, stable
    with pytest.raises(InvalidInputError, match="LangChain Document"):
        as_source(42)


def test_a_llamaindex_reader_feeds_the_pipeline(tmp_path: Path) -> None:
    from llama_index.core import SimpleDirectoryReader

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("Readers from LlamaIndex load files.")
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    docs = SimpleDirectoryReader(str(tmp_path / "docs")).load_data()
    report = IngestPipeline(store, chunker=WholeChunker()).ingest(docs)
    assert report.upserted == 1 and store.count() == 1
    assert store.search("LlamaIndex readers", k=1)[0].text.startswith("Readers")


def test_load_folder_reports_what_it_skips(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\ntext")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    (tmp_path / "c.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    from ragkit.ingest.sources import Skipped

    skipped = Skipped()
    docs = list(load_folder(tmp_path, skipped=skipped))
    assert [(d.id, d.metadata) for d in docs] == [
        (f"{tmp_path.resolve().as_posix()}/a.md", {"path": "a.md", "title": "Title"})
    ]
    assert skipped.not_utf8 == ["c.txt"] and skipped.other_kinds[".bin"] == 1
    with pytest.raises(InvalidInputError, match="not a folder"):
        list(load_folder(tmp_path / "missing"))


# ---- re-ingesting an edited folder (acceptance 3) -------------------------------------------


def _write_folder(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


SECTIONS = {
    "install.md": "# Install\n\nRun pip install ragkit.\n\n## Linux\n\nNothing else needed.\n\n"
    "## Windows\n\nUse WSL.\n",
    "search.md": "# Search\n\nHybrid search fuses BM25 and vectors.\n\n# Filters\n\n"
    "Filters are JSON.\n\n# Tenants\n\nEach tenant is a namespace.\n",
    "faq.md": "# FAQ\n\nIs it fast? Yes.\n\n# More\n\nAsk on the tracker.\n",
}


def test_reingesting_an_edited_markdown_folder_embeds_only_new_text(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_folder(folder, SECTIONS)
    embedder = CountingEmbedder()
    store = HybridStore(tmp_path / "kb", embedder=embedder)
    pipeline = IngestPipeline(store, batch_size=4)
    first = pipeline.sync_folder(folder, source_name=".")
    assert first.sources == 3 and first.upserted == first.chunks == store.count() == 8
    assert len(embedder.texts) == 8
    before = {r.id: r for r in store.get(store.ids(), include_vectors=True)}

    # edit one section, insert a new first section (moving the others), drop a file, add one
    (folder / "search.md").write_text(
        "# Overview\n\nA new first section.\n\n# Search\n\nHybrid search fuses BM25 and "
        "vectors.\n\n# Filters\n\nFilters are JSON objects with operators.\n\n# Tenants\n\n"
        "Each tenant is a namespace.\n"
    )
    (folder / "faq.md").unlink()
    (folder / "new.md").write_text("# New\n\nA brand new page.\n")
    embedder.texts.clear()
    second = pipeline.sync_folder(folder, source_name=".")

    # only the new and the changed text was embedded, nothing unchanged
    assert sorted(embedder.texts) == sorted(
        [
            "# Overview\n\nA new first section.",
            "# Filters\n\nFilters are JSON objects with operators.",
            "# New\n\nA brand new page.",
        ]
    )
    ids = set(store.ids())
    assert not any(i.startswith("./faq.md#") for i in ids)  # vanished file: chunks removed
    assert {"./search.md#0", "./search.md#3", "./new.md#0"} <= ids and "./search.md#4" not in ids
    after = {r.id: r for r in store.get(sorted(ids), include_vectors=True)}
    assert after["./search.md#1"].text == before["./search.md#0"].text  # moved, vector reused
    np.testing.assert_array_equal(after["./search.md#1"].vector, before["./search.md#0"].vector)
    for rid in ("./install.md#0", "./install.md#1", "./install.md#2"):  # untouched file
        assert after[rid] == before[rid]
    assert second.unchanged == 3 and second.deleted == 2  # faq.md had two chunks
    assert store.count() == 3 + 4 + 1

    embedder.texts.clear()
    third = pipeline.sync_folder(folder, source_name=".")  # nothing changed: nothing written
    assert embedder.texts == [] and third.upserted == 0 and third.unchanged == 8
    assert store.search("brand new page", k=1)[0].id == "./new.md#0"


def test_a_sync_never_prunes_records_it_did_not_write(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _write_folder(folder, {"a.md": "# A\n\nalpha"})
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    store.add_texts(["written by the application"], ids=["app-1"])
    pipeline = IngestPipeline(store)
    pipeline.sync_folder(folder)
    (folder / "a.md").unlink()
    report = pipeline.sync_folder(folder)
    assert report.deleted == 1 and store.ids() == ["app-1"]


# ---- back-pressure, retries, dead letters (acceptance 2) ------------------------------------


def test_rate_limits_slow_the_pipeline_but_lose_nothing_and_queues_stay_bounded() -> None:
    embedder = RateLimitedEmbedder(share=0.3)
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    pipeline = IngestPipeline(
        store,
        embedder=embedder,
        chunker=WholeChunker(),
        batch_size=8,
        concurrency=2,
        queue_size=3,
        max_attempts=30,
        backoff=(0.001, 0.01),
    )
    docs = [
        SourceDocument(f"d{i}", f"document number {i} about topic {i % 17}") for i in range(600)
    ]
    report = pipeline.ingest(docs)
    assert embedder.refused > 10 and report.retries == embedder.refused
    assert report.dead_letters == []
    assert store.count() == 600 and report.upserted == 600 == report.embedded
    assert set(store.ids()) == {f"d{i}" for i in range(600)}
    # bounded: no queue ever held more than its bound, and the embed queue reached it (the
    # plan stage waited on the slow embedder instead of buffering every batch)
    for name, bound in report.queue_bounds.items():
        assert report.queue_peaks[name] <= bound, (name, report.queue_peaks)
    assert report.queue_peaks["embed"] == report.queue_bounds["embed"]


class PoisonEmbedder(CountingEmbedder):
    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if any("POISON" in t for t in texts):
            raise ValueError("the service refuses this text")
        return super().embed_documents(texts)


def test_inputs_that_keep_failing_become_dead_letters(tmp_path: Path) -> None:
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    letters = tmp_path / "dead.jsonl"
    pipeline = IngestPipeline(
        store,
        embedder=PoisonEmbedder(),
        chunker=WholeChunker(),
        batch_size=1,
        dead_letter_path=letters,
    )
    docs = [SourceDocument("ok-1", "fine"), SourceDocument("bad", "POISON"), "also fine"]
    bad_meta = SourceDocument("huge", "text", {"n": 2**80})  # the store rejects it
    report = pipeline.ingest([*docs, bad_meta])
    assert sorted(d.source for d in report.dead_letters) == ["bad", "huge"]
    assert {d.stage for d in report.dead_letters} == {"embed", "write"}
    assert store.count() == 2
    lines = [json.loads(line) for line in letters.read_text().splitlines()]
    assert sorted(line["source"] for line in lines) == ["bad", "huge"]
    assert "refuses" in next(line["error"] for line in lines if line["source"] == "bad")


def test_the_async_twin_takes_an_async_iterable_and_the_blocking_one_works_in_a_loop() -> None:
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    pipeline = IngestPipeline(store, chunker=WholeChunker())

    async def produce() -> AsyncIterator[SourceDocument]:
        for i in range(20):
            await asyncio.sleep(0)
            yield SourceDocument(f"a{i}", f"async document {i}")

    async def main() -> int:
        report = await pipeline.aingest(produce())
        # the blocking twin inside a running loop (a notebook cell) runs on its own loop
        blocking = pipeline.ingest([SourceDocument("b1", "blocking call in a loop")])
        return report.upserted + blocking.upserted

    assert asyncio.run(main()) == 21 and store.count() == 21
    assert pipeline.delete_sources(["a1", "a2"]) == 2 and store.count() == 19


@pytest.mark.parametrize("option", ["batch_size", "concurrency", "queue_size", "max_attempts"])
def test_pipeline_options_are_validated(option: str) -> None:
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    with pytest.raises(InvalidInputError, match=option):
        IngestPipeline(store, **{option: 0})


# ---- the CLI -----------------------------------------------------------------------------


def test_ragkit_sync_reports_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragkit.cli.main import main

    folder = tmp_path / "docs"
    _write_folder(folder, SECTIONS)
    (folder / "image.png").write_bytes(b"\x89PNG")
    HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64)).close()
    assert main(["sync", str(folder), "--store", str(tmp_path / "kb")]) == 0
    first = capsys.readouterr().err
    assert "3 sources, 8 chunks: 8 written (8 embedded" in first
    assert "skipped files that are not text (1 .png)" in first
    (folder / "faq.md").unlink()
    assert main(["sync", str(folder), "--store", str(tmp_path / "kb")]) == 0
    second = capsys.readouterr().err
    assert "0 written" in second and "6 unchanged, 2 deleted" in second
    assert main(["sync", str(tmp_path / "nope"), "--store", str(tmp_path / "kb")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    with HybridStore(tmp_path / "kb") as store:
        assert store.count() == 6
