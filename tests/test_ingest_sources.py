"""Where documents come from: source identity (nothing overwrites anything by accident) and
bad files (one bad file is one skipped file), through the pipeline, `ragkit sync` and
`ragkit ingest`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragkit import HybridStore
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError
from ragkit.ingest import IngestPipeline, WholeChunker, as_source, load_folder
from ragkit.ingest.sources import Skipped, text_files


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=64)
        self.texts: list[str] = []

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        self.texts.extend(texts)
        return super().embed_documents(texts)


def _folder(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


# ---- source identity --------------------------------------------------------------------


def test_two_folders_with_the_same_relative_names_synced_into_one_store_keep_both(
    tmp_path: Path,
) -> None:
    library = _folder(tmp_path / "library", {"index.rst.txt": "The library reference."})
    tutorial = _folder(tmp_path / "tutorial", {"index.rst.txt": "The tutorial starts here."})
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    pipeline = IngestPipeline(store)
    pipeline.sync_folder(library)
    second = pipeline.sync_folder(tutorial)
    assert second.deleted == 0
    texts = sorted(r.text for r in store.get(store.ids()))
    assert texts == ["The library reference.", "The tutorial starts here."]
    # each sync still prunes its own files only
    (library / "index.rst.txt").unlink()
    assert pipeline.sync_folder(library).deleted == 1
    assert [r.text for r in store.get(store.ids())] == ["The tutorial starts here."]


def test_a_named_source_root_names_the_records(tmp_path: Path) -> None:
    a = _folder(tmp_path / "team-a", {"README.md": "# A\n\nTeam A's readme."})
    b = _folder(tmp_path / "team-b", {"README.md": "# B\n\nTeam B's readme."})
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    pipeline = IngestPipeline(store)
    pipeline.sync_folder(a, source_name="team-a")
    pipeline.sync_folder(b, source_name="team-b")
    records = {r.id: r for r in store.get(store.ids())}
    assert set(records) == {"team-a/README.md#0", "team-b/README.md#0"}
    assert records["team-a/README.md#0"].metadata["path"] == "README.md"
    with pytest.raises(InvalidInputError, match="source_name"):
        pipeline.sync_folder(a, source_name="  ")


def test_ragkit_ingest_of_two_folders_with_the_same_names_keeps_both(tmp_path: Path) -> None:
    from ragkit.cli.main import main

    one = _folder(tmp_path / "one", {"notes.txt": "First folder's notes about apples."})
    two = _folder(tmp_path / "two", {"notes.txt": "Second folder's notes about pears."})
    HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64)).close()
    assert main(["ingest", str(one), "--store", str(tmp_path / "kb")]) == 0
    assert main(["ingest", str(two), "--store", str(tmp_path / "kb")]) == 0
    with HybridStore(tmp_path / "kb") as store:
        assert store.count() == 2
        sources = sorted(r.metadata["source"] for r in store.get(store.ids()))
        assert sources == [(one / "notes.txt").as_posix(), (two / "notes.txt").as_posix()]


def test_a_pdf_like_loaders_three_pages_stay_three_records() -> None:
    from langchain_core.documents import Document

    pages = [
        Document(page_content=f"Page {n} of the report.", metadata={"source": "r.pdf", "page": n})
        for n in range(3)
    ]
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    report = IngestPipeline(store, chunker=WholeChunker()).ingest(pages)
    assert report.upserted == 3 and store.count() == 3
    again = IngestPipeline(store, chunker=WholeChunker()).ingest(pages)
    assert again.unchanged == 3 and store.count() == 3
    assert as_source(Document(page_content="x", metadata={"source": "s"})).id == "s"


def test_rerunning_a_llamaindex_reader_without_stable_ids_does_not_duplicate(
    tmp_path: Path,
) -> None:
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.schema import TextNode

    _folder(tmp_path / "docs", {"a.txt": "Readers load files.", "b.txt": "Another file."})
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    for _ in range(3):
        docs = SimpleDirectoryReader(str(tmp_path / "docs")).load_data()
        IngestPipeline(store, chunker=WholeChunker()).ingest(docs)
    assert store.count() == 2
    # split nodes of one file share its file_path: they stay apart (by content)
    nodes = [TextNode(text=t, metadata={"file_path": "x.txt"}) for t in ("one", "two")]
    assert len({as_source(n).id for n in nodes}) == 2


def test_a_renamed_file_reuses_its_vectors(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "docs", {"old-name.md": "# Title\n\nSome text to embed once."})
    embedder = CountingEmbedder()
    store = HybridStore(embedder=embedder)
    pipeline = IngestPipeline(store)
    pipeline.sync_folder(folder)
    assert len(embedder.texts) == 1
    (folder / "old-name.md").rename(folder / "new-name.md")
    embedder.texts.clear()
    report = pipeline.sync_folder(folder)
    assert embedder.texts == [] and report.reused == 1 and report.deleted == 1
    assert [r.metadata["path"] for r in store.get(store.ids())] == ["new-name.md"]


# ---- bad files ----------------------------------------------------------------------------


def test_bad_names_vanished_files_and_links_outside_are_skipped_and_the_rest_is_written(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path / "docs", {"a.md": "# A\n\nalpha", "sub/b.txt": "beta"})
    outside = _folder(tmp_path / "secret", {"key.txt": "do not index me"})
    bad = os.fsencode(folder) + b"/caf\xe9.txt"  # a Latin-1 name: not UTF-8
    with open(bad, "wb") as handle:
        handle.write(b"text under an undecodable name")
    (folder / "new\nline.txt").write_text("a control character in the name")
    (folder / "leak.txt").symlink_to(outside / "key.txt")
    (folder / "leakdir").symlink_to(outside)
    (folder / "vanishing.txt").write_text("gone before it is read")

    skipped = Skipped()
    reading = text_files(folder, skipped)
    first = next(reading)  # the listing is made; now a listed file vanishes
    (folder / "vanishing.txt").unlink()
    read = [first, *reading]
    assert [relative for relative, _, _ in read] == ["a.md", "sub/b.txt"]
    assert skipped.bad_names == ["caf\\xe9.txt", "new\\x0aline.txt"]
    assert skipped.vanished == ["vanishing.txt"]
    assert sorted(skipped.outside) == ["leak.txt", "leakdir"]
    assert skipped.files() == 5
    lines = "\n".join(skipped.lines())
    assert "caf\\xe9.txt" in lines and "--follow-outside" in lines

    # through the pipeline: the good files are written, the report lists the rest
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    report = IngestPipeline(store).sync_folder(folder)
    assert store.count() == 2 and report.skipped.files() == 4
    assert "do not index me" not in [r.text for r in store.get(store.ids())]
    # asked for, links outside are read (both links reach one file: it is read once)
    followed = IngestPipeline(store).sync_folder(folder, follow_outside=True)
    assert followed.skipped.outside == [] and store.count() == 3
    assert "do not index me" in [r.text for r in store.get(store.ids())]


def test_links_inside_the_folder_are_followed_once_and_cycles_end(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "docs", {"real/page.md": "# Page\n\ntext"})
    (folder / "alias").symlink_to(folder / "real")  # the same folder under a second name
    (folder / "real" / "loop").symlink_to(folder)  # a cycle
    (folder / "page-link.md").symlink_to(folder / "real" / "page.md")
    docs = list(load_folder(folder, source_name="docs"))
    assert [d.id for d in docs] == ["docs/real/page.md"]  # once, under its real name


def test_a_symlinked_folder_is_read(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "docs", {"a.md": "# A\n\nalpha", "b.txt": "beta"})
    (tmp_path / "link").symlink_to(folder)
    docs = list(load_folder(tmp_path / "link", source_name="docs"))
    assert [d.id for d in docs] == ["docs/a.md", "docs/b.txt"]


def test_ragkit_sync_reports_skipped_files_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragkit.cli.main import main

    folder = _folder(tmp_path / "docs", {"a.md": "# A\n\nalpha"})
    with open(os.fsencode(folder) + b"/\xff.txt", "wb") as handle:
        handle.write(b"x")
    (folder / "out.txt").symlink_to(_folder(tmp_path / "o", {"x.txt": "outside"}) / "x.txt")
    HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64)).close()
    assert main(["sync", str(folder), "--store", str(tmp_path / "kb")]) == 0
    err = capsys.readouterr().err
    assert "skipped \\xff.txt" in err and "skipped out.txt" in err
    assert "1 written" in err and "2 files skipped" in err


# ---- where a store may be made ------------------------------------------------------------


def test_ingest_and_sync_make_a_store_only_in_a_new_or_empty_folder_or_with_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragkit.cli.main import main

    docs = _folder(tmp_path / "docs", {"a.md": "# A\n\nalpha"})
    busy = _folder(tmp_path / "busy", {"thesis.tex": "my thesis"})
    (tmp_path / "link-to-busy").symlink_to(busy)
    for command in ("ingest", "sync"):
        for target in (busy, tmp_path / "link-to-busy"):
            assert main([command, str(docs), "--store", str(target)]) == 2
            assert "--create" in capsys.readouterr().err
        assert sorted(p.name for p in busy.iterdir()) == ["thesis.tex"]  # untouched
    (tmp_path / "empty").mkdir()
    assert main(["sync", str(docs), "--store", str(tmp_path / "empty")]) == 0
    assert main(["ingest", str(docs), "--store", str(tmp_path / "new")]) == 0
    assert main(["ingest", str(docs), "--store", str(tmp_path / "new")]) == 0  # a store now
    assert main(["ingest", str(docs), "--store", str(busy), "--create"]) == 0
    with HybridStore(busy) as store:
        assert store.count() == 1
