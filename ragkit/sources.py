"""Reading ingest sources: a JSONL file, a BEIR folder, or a folder of .txt/.md files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.beir import is_beir_folder, read_corpus
from ragkit.chunking import chunk_text, markdown_title
from ragkit.errors import InvalidInputError

TEXT_SUFFIXES = (".txt", ".md", ".markdown")


@dataclass(slots=True)
class SourceDoc:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _jsonl(path: Path) -> Iterator[SourceDoc]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path}:{line_no}: not valid JSON ({exc})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise InvalidInputError(
                    f"{path}:{line_no}: expected an object with a 'text' string"
                )
            record_id = row.get("id", row.get("_id", f"{path.stem}:{line_no}"))
            metadata = dict(row.get("metadata") or {})
            text = row["text"]
            if row.get("title"):
                metadata.setdefault("title", row["title"])
                text = f"{row['title']}\n{text}"
            yield SourceDoc(str(record_id), text, metadata)


def _text_folder(folder: Path, max_chars: int) -> Iterator[SourceDoc]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    for path in files:
        relative = path.relative_to(folder).as_posix()
        text = path.read_text(encoding="utf-8")
        title = markdown_title(text) if path.suffix != ".txt" else None
        for index, chunk in enumerate(chunk_text(text, max_chars)):
            metadata: dict[str, Any] = {"source": relative, "chunk": index}
            if title:
                metadata["title"] = title
            yield SourceDoc(f"{relative}#{index}", chunk, metadata)


def read_source(source: Path, *, max_chars: int = 1000) -> Iterator[SourceDoc]:
    """Documents from ``source``, whatever its kind (see the module docstring)."""
    if source.is_file() and source.suffix == ".jsonl":
        return _jsonl(source)
    if is_beir_folder(source):
        return (
            SourceDoc(d.id, d.content, {"title": d.title} if d.title else {})
            for d in read_corpus(source)
        )
    if source.is_dir():
        return _text_folder(source, max_chars)
    raise InvalidInputError(
        f"cannot ingest {source}: expected a .jsonl file, a BEIR folder (corpus.jsonl) "
        "or a folder of .txt/.md files"
    )
