"""Reading ingest sources: a JSONL file, a BEIR folder, or a folder of text files.

- a ``.jsonl`` file: one object per line with ``text`` (and optional ``id``, ``title``,
  ``metadata``);
- a BEIR folder (``corpus.jsonl`` or ``corpus.jsonl.gz``): title and text of each document;
- a folder: every ``.txt``, ``.text``, ``.md``, ``.markdown`` and ``.rst`` file below it
  (any letter case), chunked into passages.

Nothing is dropped silently: empty documents, files that are not UTF-8 and files of other
kinds are skipped and listed in the ``Skipped`` report the caller passes in.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.beir import is_beir_folder, read_corpus
from ragkit.chunking import MIN_CHUNK_CHARS, chunk_text, markdown_title
from ragkit.errors import InvalidInputError

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
_MARKDOWN = (".md", ".markdown")


@dataclass(slots=True)
class SourceDoc:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Skipped:
    """What reading a source left out, and why."""

    empty: list[str] = field(default_factory=list)  # ids of documents with no text
    not_utf8: list[str] = field(default_factory=list)  # files that could not be decoded
    other_kinds: Counter[str] = field(default_factory=Counter)  # suffix -> files

    def lines(self) -> list[str]:
        """One human-readable line per kind of skip (none when nothing was skipped)."""
        out = []
        if self.empty:
            shown = ", ".join(self.empty[:5]) + (", ..." if len(self.empty) > 5 else "")
            out.append(f"skipped {len(self.empty)} empty document(s): {shown}")
        for path in self.not_utf8:
            out.append(f"skipped {path}: not UTF-8 text (convert it to UTF-8 to index it)")
        if self.other_kinds:
            kinds = ", ".join(f"{n} {s or 'without suffix'}" for s, n in self.other_kinds.items())
            out.append(
                f"skipped files that are not text ({kinds}); indexed kinds: "
                + " ".join(TEXT_SUFFIXES)
            )
        return out


def _jsonl(path: Path, skipped: Skipped) -> Iterator[SourceDoc]:
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInputError(f"{path}:{line_no}: not UTF-8 text") from None
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
            record_id = str(row.get("id", row.get("_id", f"{path.stem}:{line_no}")))
            metadata = dict(row.get("metadata") or {})
            text = row["text"]
            if not text.strip():
                skipped.empty.append(record_id)
                continue
            if row.get("title"):
                metadata.setdefault("title", row["title"])
                text = f"{row['title']}\n{text}"
            yield SourceDoc(record_id, text, metadata)


def _beir(folder: Path, skipped: Skipped) -> Iterator[SourceDoc]:
    for doc in read_corpus(folder):
        if not doc.content.strip():
            skipped.empty.append(doc.id)
            continue
        yield SourceDoc(doc.id, doc.content, {"title": doc.title} if doc.title else {})


def text_files(folder: Path, skipped: Skipped) -> Iterator[tuple[str, str, str]]:
    """(path relative to ``folder``, text, lower-case suffix) of every text file below it,
    in path order; other files and files that are not UTF-8 are recorded in ``skipped``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in files:
        suffix = path.suffix.lower()
        if suffix not in TEXT_SUFFIXES:
            skipped.other_kinds[suffix] += 1
            continue
        relative = path.relative_to(folder).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            skipped.not_utf8.append(relative)
            continue
        yield relative, text, suffix


def is_markdown(suffix: str) -> bool:
    return suffix in _MARKDOWN


def _text_folder(folder: Path, max_chars: int, skipped: Skipped) -> Iterator[SourceDoc]:
    for relative, text, suffix in text_files(folder, skipped):
        chunks = chunk_text(text, max_chars)
        if not chunks:
            skipped.empty.append(relative)
            continue
        title = markdown_title(text) if suffix in _MARKDOWN else None
        for index, chunk in enumerate(chunks):
            metadata: dict[str, Any] = {"source": relative, "chunk": index}
            if title:
                metadata["title"] = title
            yield SourceDoc(f"{relative}#{index}", chunk, metadata)


def read_source(
    source: Path, *, max_chars: int = 1000, skipped: Skipped | None = None
) -> Iterator[SourceDoc]:
    """Documents from ``source``, whatever its kind (see the module docstring); what is
    left out is recorded in ``skipped``."""
    report = skipped if skipped is not None else Skipped()
    if max_chars < MIN_CHUNK_CHARS:
        raise InvalidInputError(
            f"chunks must be at least {MIN_CHUNK_CHARS} characters, got {max_chars}"
        )
    if not source.exists():
        raise InvalidInputError(f"{source} does not exist")
    if source.is_file():
        if source.suffix.lower() != ".jsonl":
            raise InvalidInputError(
                f"cannot ingest the file {source}: a file must be .jsonl (one JSON object with "
                "'text' per line); for text files, pass the folder that holds them"
            )
        return _jsonl(source, report)
    if is_beir_folder(source):
        return _beir(source, report)
    return _text_folder(source, max_chars, report)
