"""The ragkit command line: ingest (three source kinds), search, eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragkit import HybridStore
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder


def hashing_store(path: Path) -> Path:
    """Create an empty store bound to the hashing embedder; the CLI reopens it with that."""
    HybridStore(path, embedder=HashingEmbedder(dim=64)).close()
    return path


def write_beir(folder: Path) -> Path:
    folder.mkdir()
    docs = [
        {"_id": f"d{i}", "title": f"Title {i}", "text": f"body about topic{i} and zeta{i}"}
        for i in range(30)
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    queries = [{"_id": f"q{i}", "text": f"zeta{i} topic{i}"} for i in range(10)]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (folder / "qrels").mkdir()
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(10)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_ingest_jsonl_then_search_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_text(
        '{"id": "x1", "text": "ragkit fuses BM25 and vectors", "metadata": {"lang": "en"}}\n'
        '{"id": "x2", "title": "Zweite", "text": "ein deutscher Text",'
        ' "metadata": {"lang": "de"}}\n'
    )
    store = hashing_store(tmp_path / "kb")
    assert main(["ingest", "--store", str(store), str(source)]) == 0
    capsys.readouterr()
    assert main(["search", "--store", str(store), "BM25 vectors", "--json", "-k", "5"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert hits[0]["id"] == "x1"
    assert hits[0]["lexical_rank"] == 1 and hits[0]["dense_rank"] is not None
    assert (
        main(["search", "--store", str(store), "Text", "--filter", '{"lang": "de"}', "--json"]) == 0
    )
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["id"] for h in hits] == ["x2"] and hits[0]["metadata"]["title"] == "Zweite"


def test_ingest_a_folder_chunks_files_with_source_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    long_body = "\n\n".join(
        f"Paragraph {i} talks about item{i} at some length." * 3 for i in range(20)
    )
    (folder / "guide.md").write_text(f"# The Guide\n\n{long_body}")
    (folder / "sub" / "short.txt").write_text("A short plain text note about walruses.")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    store = hashing_store(tmp_path / "kb")
    command = ["ingest", "--store", str(store), str(folder), "--chunk-chars", "400"]
    assert main([*command, "--source-name", "notes"]) == 0
    with HybridStore(store) as kb:
        chunks = kb.search("item7", k=3, mode="lexical")
        assert chunks[0].metadata["source"] == "notes/guide.md"
        assert chunks[0].metadata["path"] == "guide.md"
        assert chunks[0].metadata["title"] == "The Guide"
        assert all(len(h.text) <= 400 for h in chunks)
        walrus = kb.search("walruses", k=1, mode="lexical")[0]
        assert walrus.id == "notes/sub/short.txt#0" and walrus.metadata["chunk"] == 0
        assert kb.count() > 5


def test_eval_prints_one_json_object_per_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_beir(tmp_path / "beir")
    store = hashing_store(tmp_path / "kb")
    assert main(["eval", "--data", str(data), "--store", str(store), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["mode"] for r in rows] == ["hybrid", "dense", "lexical"]
    assert set(rows[0]) == {"mode", "ndcg@10", "recall@100", "mrr@10"}
    lexical = rows[2]
    assert lexical["ndcg@10"] == pytest.approx(1.0) and lexical["mrr@10"] == pytest.approx(1.0)
    with HybridStore(store) as kb:  # eval indexed the corpus into the empty store
        assert kb.count() == 30


def test_eval_of_one_mode_prints_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_beir(tmp_path / "beir")
    store = hashing_store(tmp_path / "kb")
    assert main(["eval", "--data", str(data), "--store", str(store), "--mode", "lexical"]) == 0
    out = capsys.readouterr().out
    assert "nDCG@10" in out and "lexical" in out and "1.0000" in out


def test_errors_are_reported_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = hashing_store(tmp_path / "kb")
    assert main(["search", "--store", str(store), "x", "--filter", '{"a": {"$bad": 1}}']) == 2
    assert "$bad" in capsys.readouterr().err
    assert main(["search", "--store", str(tmp_path / "missing"), "x"]) == 2
    assert main(["ingest", "--store", str(store), str(tmp_path / "nothing.csv")]) == 2
    assert "nothing.csv does not exist" in capsys.readouterr().err


def test_a_new_store_defaults_to_the_local_embedder(tmp_path: Path) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_text(
        '{"id": "a", "text": "The feline slept on the windowsill."}\n'
        '{"id": "b", "text": "Interest rates rose again this quarter."}\n'
    )
    assert main(["ingest", "--store", str(tmp_path / "kb"), str(source)]) == 0
    with HybridStore(tmp_path / "kb") as kb:
        assert kb.embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2"
        assert kb.search("a cat napping", k=1, mode="dense").ids == ["a"]
        assert kb.text_fields == ("title",)  # (a new store indexes titles as a field)


def test_text_fields_of_ingest_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--text-fields`` sets a store's fields; without it an existing store keeps its own
    (a new one indexes ``title``); the BEIR titles then weigh twice."""
    data = write_beir(tmp_path / "beir")
    store = hashing_store(tmp_path / "kb")
    assert main(["ingest", "--store", str(store), str(data)]) == 0
    with HybridStore(store) as kb:
        assert kb.text_fields == ()
    assert (
        main(["ingest", "--store", str(store), str(data), "--text-fields", "title, section"]) == 0
    )
    with HybridStore(store) as kb:
        assert kb.text_fields == ("title", "section")
        assert kb.search("Title 3", mode="lexical").ids[0] == "d3"
        weighted = kb.search("Title 3", mode="lexical", field_weights={"text": 1, "title": 2})
        assert [h.score for h in kb.search("Title 3", mode="lexical")] == [
            h.score for h in weighted
        ]
    assert main(["ingest", "--store", str(store), str(data)]) == 0  # (kept)
    with HybridStore(store) as kb:
        assert kb.text_fields == ("title", "section")
    assert main(["eval", "--data", str(data), "--store", str(store), "--text-fields", ""]) == 0
    with HybridStore(store) as kb:
        assert kb.text_fields == ()
    capsys.readouterr()


def test_stats_reports_records_and_shard_health(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = hashing_store(tmp_path / "kb")
    with HybridStore(store) as kb:
        kb.add_texts(["one", "two", "three"])
        kb.search("two")
        stats = kb.stats()
        assert stats["records"] == 3 and stats["searches"] == 1
        assert stats["latency_ms"]["p50"] > 0
    assert main(["stats", "--store", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 3
    sharded = tmp_path / "sharded"
    init = ["shards", "init", "--store", str(sharded), "--hosts", "2", "--partitions", "4"]
    assert main(init) == 0
    HybridStore(sharded, embedder=HashingEmbedder(dim=8)).close()
    capsys.readouterr()
    assert main(["stats", "--store", str(sharded)]) == 0
    out = capsys.readouterr().out
    assert "h000" in out and "ok" in out
