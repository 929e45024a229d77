"""Fetching a public BEIR dataset by name: from a real HTTP server on 127.0.0.1, cached, and a
clear error when the network is not there."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragkit.beir import fetch_dataset, read_corpus, read_qrels
from ragkit.errors import InvalidInputError, RagkitError


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """Serves scifact.zip (a tiny dataset in BEIR's layout) from a real HTTP server."""
    files = tmp_path / "served"
    files.mkdir()
    with zipfile.ZipFile(files / "scifact.zip", "w") as archive:
        archive.writestr(
            "scifact/corpus.jsonl",
            "\n".join(
                json.dumps({"_id": f"d{i}", "title": "", "text": f"doc {i}"}) for i in range(3)
            ),
        )
        archive.writestr("scifact/queries.jsonl", json.dumps({"_id": "q1", "text": "doc 1"}))
        archive.writestr("scifact/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with zipfile.ZipFile(files / "nfcorpus.zip", "w") as archive:
        archive.writestr("nfcorpus/readme.txt", "not a BEIR folder")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(files))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_dataset_is_downloaded_once_then_read_from_the_cache(tmp_path: Path, server: str) -> None:
    cache = tmp_path / "cache"
    folder = fetch_dataset("scifact", cache=cache, base_url=server)
    assert folder == cache / "beir" / "scifact"
    assert [d.id for d in read_corpus(folder)] == ["d0", "d1", "d2"]
    assert read_qrels(folder) == {"q1": {"d1": 1}}
    again = fetch_dataset("scifact", cache=cache, base_url="http://127.0.0.1:9")  # no network
    assert again == folder
    assert not list((cache / "beir").glob("*.part"))


def test_offline_unknown_and_malformed_datasets_are_clear_errors(
    tmp_path: Path, server: str
) -> None:
    with pytest.raises(RagkitError, match=r"offline.*--data"):
        fetch_dataset("scifact", cache=tmp_path, base_url="http://127.0.0.1:9")
    assert not (tmp_path / "beir" / "scifact").exists()
    with pytest.raises(InvalidInputError, match="unknown BEIR dataset 'scifakt'"):
        fetch_dataset("scifakt", cache=tmp_path)
    with pytest.raises(RagkitError, match="does not hold a BEIR folder"):
        fetch_dataset("nfcorpus", cache=tmp_path, base_url=server)


def test_ragkit_eval_takes_a_dataset_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragkit.cli.main import main

    monkeypatch.setenv("RAGKIT_CACHE", str(tmp_path))
    assert main(["eval", "--dataset", "scifakt"]) == 2
    assert "unknown BEIR dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--dataset", "scifact", "--data", str(tmp_path)])  # one or the other
