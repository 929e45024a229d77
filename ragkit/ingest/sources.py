"""Reading ingest sources: a JSONL file, a BEIR folder, or a folder of text files.

- a ``.jsonl`` file: one object per line with ``text`` (and optional ``id``, ``title``,
  ``metadata``);
- a BEIR folder (``corpus.jsonl`` or ``corpus.jsonl.gz``): title and text of each document;
- a folder: every ``.txt``, ``.text``, ``.md``, ``.markdown`` and ``.rst`` file below it
  (any letter case), chunked into passages.

A folder's files are named by a *source root*: the name the caller gives
(``source_name``), else the folder's absolute path. A file's source id is
``<root>/<path relative to the folder>``, so two folders holding files of the same relative
names never overwrite each other in one store. Hidden files and folders are not read.
Symbolic links are followed while their target lies inside the folder (a file reached by
two names is read once, under its real name); a link leading outside it is skipped unless
``follow_outside``.

Nothing is dropped silently and one bad file never stops the others: empty documents, files
that are not UTF-8, files of other kinds, names that are not UTF-8 or hold control
characters, files that vanish or cannot be read, and links leading outside the folder are
skipped and listed in the ``Skipped`` report the caller passes in.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit._validation import is_clean_name
from ragkit.beir import is_beir_folder, read_corpus
from ragkit.errors import InvalidInputError
from ragkit.ingest.chunkers import MIN_CHUNK_CHARS, chunk_text, markdown_title

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
_MARKDOWN = (".md", ".markdown")


@dataclass(slots=True)
class SourceDoc:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


#: the kinds of skipped files a ``Skipped`` lists, and why each was skipped
_REASONS = (
    ("not_utf8", "not UTF-8 text (convert it to UTF-8 to index it)"),
    ("bad_names", "its name is not UTF-8 or holds a control character (rename it)"),
    ("vanished", "it vanished before it could be read"),
    ("unreadable", "it could not be read"),
    ("outside", "a link leading outside the folder (--follow-outside reads it)"),
)


@dataclass(slots=True)
class Skipped:
    """What reading a source left out, and why."""

    empty: list[str] = field(default_factory=list)  # ids of documents with no text
    not_utf8: list[str] = field(default_factory=list)  # files that could not be decoded
    other_kinds: Counter[str] = field(default_factory=Counter)  # suffix -> files
    bad_names: list[str] = field(default_factory=list)  # not UTF-8, or control characters
    vanished: list[str] = field(default_factory=list)  # listed, then gone before reading
    unreadable: list[str] = field(default_factory=list)  # "path (reason)"
    outside: list[str] = field(default_factory=list)  # links leading outside the folder

    def files(self) -> int:
        """How many files were skipped for a reason other than their kind."""
        return sum(len(getattr(self, kind)) for kind, _ in _REASONS)

    def lines(self) -> list[str]:
        """One human-readable line per kind of skip (none when nothing was skipped)."""
        out = []
        if self.empty:
            shown = ", ".join(self.empty[:5]) + (", ..." if len(self.empty) > 5 else "")
            out.append(f"skipped {len(self.empty)} empty document(s): {shown}")
        for kind, why in _REASONS:
            out.extend(f"skipped {path}: {why}" for path in getattr(self, kind))
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


def source_root(folder: Path, source_name: str | None = None) -> str:
    """The name a folder's files are namespaced by: ``source_name``, else the folder's
    absolute path (``/``-separated, symbolic links resolved)."""
    if source_name is None:
        return folder.resolve().as_posix()
    if not isinstance(source_name, str) or not source_name.strip("/ "):
        raise InvalidInputError(
            f"source_name must be a non-empty name such as 'docs', got {source_name!r}"
        )
    if not is_clean_name(source_name):
        raise InvalidInputError(f"source_name {source_name!r} holds a control character")
    return source_name.rstrip("/")


def source_id(root: str, relative: str) -> str:
    """The source id of the file at ``relative`` (``/``-separated) below a source root."""
    return f"{root}/{relative}"


def _shown(relative: str) -> str:
    """A path as it can be printed: undecodable bytes and control characters escaped."""
    text = os.fsencode(relative).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def walk_files(
    folder: Path, skipped: Skipped, *, follow_outside: bool = False
) -> list[tuple[str, Path]]:
    """(path relative to ``folder``, path) of every file below it, in relative-path order
    (see the module docstring for hidden files, links and what is skipped)."""
    root = os.path.realpath(folder)
    # real folders first, then those reached through links, so a file reached by two names
    # keeps its real one; a folder is read once, which also ends link cycles
    pending: list[tuple[str, str, bool]] = [(str(folder), "", False)]
    through_links: list[tuple[str, str, bool]] = []
    seen: set[str] = set()
    best: dict[str, tuple[bool, str, Path]] = {}
    while pending or through_links:
        directory, prefix, via_link = pending.pop() if pending else through_links.pop()
        real_directory = os.path.realpath(directory)
        if real_directory in seen:
            continue
        seen.add(real_directory)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            skipped.vanished.append(_shown(prefix.rstrip("/") or "."))
            continue
        except OSError as exc:
            skipped.unreadable.append(f"{_shown(prefix.rstrip('/') or '.')} ({exc.strerror})")
            continue
        below: list[tuple[str, str, bool]] = []  # subfolders, visited in name order
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            if not is_clean_name(entry.name):
                skipped.bad_names.append(_shown(relative))
                continue
            try:
                link = entry.is_symlink()
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError as exc:
                skipped.unreadable.append(f"{relative} ({exc.strerror})")
                continue
            real = os.path.realpath(entry.path)
            if link and not _inside(real, root) and not follow_outside:
                skipped.outside.append(relative)
                continue
            if link and not (is_dir or is_file):
                skipped.unreadable.append(f"{relative} (a link to nothing)")
                continue
            if is_dir:
                if real not in seen:
                    below.append((entry.path, relative + "/", link or via_link))
            elif is_file:
                candidate = (link or via_link, relative, Path(entry.path))
                if real not in best or candidate[:2] < best[real][:2]:
                    best[real] = candidate
        for item in reversed(below):
            (through_links if item[2] else pending).append(item)
    return sorted((relative, path) for _, relative, path in best.values())


def text_files(
    folder: Path, skipped: Skipped, *, follow_outside: bool = False
) -> Iterator[tuple[str, str, str]]:
    """(path relative to ``folder``, text, lower-case suffix) of every text file below it,
    in path order; every file left out is recorded in ``skipped``."""
    for relative, path in walk_files(folder, skipped, follow_outside=follow_outside):
        suffix = path.suffix.lower()
        if suffix not in TEXT_SUFFIXES:
            skipped.other_kinds[suffix] += 1
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            skipped.vanished.append(relative)
            continue
        except UnicodeDecodeError:
            skipped.not_utf8.append(relative)
            continue
        except OSError as exc:
            skipped.unreadable.append(f"{relative} ({exc.strerror or exc})")
            continue
        yield relative, text, suffix


def is_markdown(suffix: str) -> bool:
    return suffix in _MARKDOWN


def _text_folder(
    folder: Path, max_chars: int, skipped: Skipped, root: str, follow_outside: bool
) -> Iterator[SourceDoc]:
    for relative, text, suffix in text_files(folder, skipped, follow_outside=follow_outside):
        chunks = chunk_text(text, max_chars)
        if not chunks:
            skipped.empty.append(relative)
            continue
        title = markdown_title(text) if suffix in _MARKDOWN else None
        source = source_id(root, relative)
        for index, chunk in enumerate(chunks):
            metadata: dict[str, Any] = {"source": source, "path": relative, "chunk": index}
            if title:
                metadata["title"] = title
            yield SourceDoc(f"{source}#{index}", chunk, metadata)


def read_source(
    source: Path,
    *,
    max_chars: int = 1000,
    skipped: Skipped | None = None,
    source_name: str | None = None,
    follow_outside: bool = False,
) -> Iterator[SourceDoc]:
    """Documents from ``source``, whatever its kind (see the module docstring); what is
    left out is recorded in ``skipped``. A folder's files are named by ``source_name``
    (default: the folder's absolute path)."""
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
    root = source_root(source, source_name)
    return _text_folder(source, max_chars, report, root, follow_outside)
