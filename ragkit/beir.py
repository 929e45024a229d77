"""Reading BEIR-layout datasets (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv)."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ragkit.errors import InvalidInputError


@dataclass(slots=True)
class BeirDoc:
    id: str
    title: str
    text: str

    @property
    def content(self) -> str:
        """Title and body, as BEIR baselines index them."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def corpus_path(folder: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / name).exists():
            return folder / name
    raise InvalidInputError(f"{folder} has no corpus.jsonl or corpus.jsonl.gz (BEIR layout)")


def is_beir_folder(folder: Path) -> bool:
    return folder.is_dir() and any(
        (folder / name).exists() for name in ("corpus.jsonl", "corpus.jsonl.gz")
    )


def read_corpus(folder: Path) -> Iterator[BeirDoc]:
    with _open_text(corpus_path(folder)) as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                yield BeirDoc(str(row["_id"]), row.get("title") or "", row.get("text") or "")


def read_queries(folder: Path) -> dict[str, str]:
    path = folder / "queries.jsonl"
    if not path.exists():
        raise InvalidInputError(f"{folder} has no queries.jsonl (BEIR layout)")
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                out[str(row["_id"])] = row["text"]
    return out


def read_qrels(folder: Path, split: str = "test") -> dict[str, dict[str, int]]:
    path = folder / "qrels" / f"{split}.tsv"
    if not path.exists():
        raise InvalidInputError(f"{folder} has no qrels/{split}.tsv (BEIR layout)")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels
