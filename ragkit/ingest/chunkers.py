"""Chunkers: a source document in, passages with stable ids out.

Every chunk carries the id of its source, its position in it, and a hash of its text. The
chunk id is ``"<source>#<position>"``: the same source chunked the same way gives the same
ids, so re-ingesting is an upsert, not a duplicate, and an id that is no longer produced
marks a chunk to delete. The text hash lets a pipeline reuse the vector of a chunk whose text
did not change, even when an edit earlier in the source moved it to another position.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol

from ragkit.errors import InvalidInputError

#: the shortest chunk ``chunk_text`` makes (shorter ones cut most sentences apart)
MIN_CHUNK_CHARS = 50

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    """Paragraphs, split further into sentences (and hard-cut) where longer than max_chars."""
    for paragraph in _PARAGRAPH.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            yield paragraph
            continue
        for sentence in _SENTENCE.split(paragraph):
            yield from _hard_cut(sentence, max_chars)


def _hard_cut(sentence: str, max_chars: int) -> Iterator[str]:
    """Pieces of at most ``max_chars``, cut at the last space before the limit if any."""
    while len(sentence) > max_chars:
        cut = sentence.rfind(" ", max_chars // 2, max_chars + 1)
        cut = max_chars if cut <= 0 else cut
        yield sentence[:cut].strip()
        sentence = sentence[cut:].strip()
    if sentence:
        yield sentence


def chunk_text(text: str, max_chars: int = 1000) -> list[str]:
    """Pack paragraphs (or sentences of long paragraphs) into chunks of at most ``max_chars``.

    Boundaries fall between paragraphs or sentences where possible, so a chunk rarely cuts a
    sentence in half; a single sentence longer than ``max_chars`` is cut at a space (hard
    only within a word longer than half of ``max_chars``).
    """
    if max_chars < MIN_CHUNK_CHARS:
        raise InvalidInputError(f"max_chars must be at least {MIN_CHUNK_CHARS}, got {max_chars}")
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, max_chars):
        joined = f"{current}\n\n{piece}" if current else piece
        if len(joined) <= max_chars:
            current = joined
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def markdown_title(text: str) -> str | None:
    """The first Markdown heading of ``text``, if any."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip() or None
    return None


#: metadata keys every chunk carries
SOURCE_KEY, POSITION_KEY, HASH_KEY = "source", "chunk", "content_hash"


def text_hash(text: str) -> str:
    """A short, stable digest of a chunk's text (what decides whether to embed it again)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@dataclass(slots=True)
class SourceDocument:
    """One document to ingest: a stable id (a path, a URL, a database key), its text and
    metadata. Every chunk of it is replaced when it is ingested again."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Chunk:
    """A passage of a source, ready to embed and store."""

    id: str
    text: str
    source: str
    position: int
    metadata: dict[str, Any]
    content_hash: str

    def record_metadata(self) -> dict[str, Any]:
        """The metadata stored with the chunk: the source's, plus source, position, hash."""
        return {
            **self.metadata,
            SOURCE_KEY: self.source,
            POSITION_KEY: self.position,
            HASH_KEY: self.content_hash,
        }


class Chunker(Protocol):
    """Splits a source document into chunks with stable ids."""

    def split(self, doc: SourceDocument) -> list[Chunk]: ...


def make_chunks(
    doc: SourceDocument, texts: list[str], extra: list[dict[str, Any]] | None = None
) -> list[Chunk]:
    """Chunks of ``doc`` from its passages in order (ids ``<source>#<position>``)."""
    return [
        Chunk(
            f"{doc.id}#{position}",
            text,
            doc.id,
            position,
            {**doc.metadata, **(extra[position] if extra else {})},
            text_hash(text),
        )
        for position, text in enumerate(texts)
    ]


def _check_sizes(size: int, overlap: int, minimum: int, unit: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < minimum:
        raise InvalidInputError(f"chunk size must be an integer >= {minimum} {unit}, got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size // 2:
        raise InvalidInputError(
            f"overlap must be an integer from 0 to less than half the size ({size // 2} "
            f"{unit}), got {overlap!r}"
        )


def _tail(text: str, chars: int) -> str:
    """The last ``chars`` characters of ``text``, starting at a word boundary."""
    if chars <= 0 or len(text) <= chars:
        return text if chars > 0 else ""
    cut = text[-chars:]
    space = cut.find(" ")
    return (cut[space + 1 :] if 0 <= space < len(cut) - 1 else cut).strip()


class WholeChunker:
    """One chunk per source, with the source's own id (no ``#0``): for inputs that are
    already passages, such as stream events or pre-split documents."""

    def split(self, doc: SourceDocument) -> list[Chunk]:
        if not doc.text.strip():
            return []
        return [Chunk(doc.id, doc.text, doc.id, 0, dict(doc.metadata), text_hash(doc.text))]


class CharChunker:
    """Passages of at most ``size`` characters (paragraph, then sentence boundaries where
    possible), each starting with the last ``overlap`` characters of the one before."""

    def __init__(self, size: int = 1000, overlap: int = 100) -> None:
        _check_sizes(size, overlap, 2 * MIN_CHUNK_CHARS, "characters")
        self.size, self.overlap = size, overlap

    def passages(self, text: str) -> list[str]:
        packed = chunk_text(text, self.size - self.overlap)
        if not self.overlap:
            return packed
        return [packed[0]] + [
            f"{_tail(before, self.overlap)} {current}" for before, current in pairwise(packed)
        ]

    def split(self, doc: SourceDocument) -> list[Chunk]:
        return make_chunks(doc, self.passages(doc.text))


Tokenizer = Callable[[str], list[tuple[int, int]]]
_WORD = re.compile(r"\S+")


def whitespace_tokens(text: str) -> list[tuple[int, int]]:
    """Character spans of whitespace-separated tokens."""
    return [m.span() for m in _WORD.finditer(text)]


class TokenChunker:
    """Windows of ``size`` tokens, consecutive windows sharing ``overlap`` tokens.

    Tokens are whitespace-separated words unless ``tokenizer`` gives other spans (for
    example offsets from a Hugging Face tokenizer, to match an embedding model's limit).
    Chunk text is the original text between the first and last token of the window.
    """

    def __init__(self, size: int = 256, overlap: int = 32, tokenizer: Tokenizer | None = None):
        _check_sizes(size, overlap, 8, "tokens")
        self.size, self.overlap = size, overlap
        self.tokenizer = tokenizer or whitespace_tokens

    def passages(self, text: str) -> list[str]:
        spans = self.tokenizer(text)
        out: list[str] = []
        step = self.size - self.overlap
        for start in range(0, len(spans), step):
            window = spans[start : start + self.size]
            out.append(text[window[0][0] : window[-1][1]])
            if start + self.size >= len(spans):
                break
        return out

    def split(self, doc: SourceDocument) -> list[Chunk]:
        return make_chunks(doc, self.passages(doc.text))


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_sections(text: str) -> Iterator[tuple[list[str], str]]:
    """(heading path, section text) for each heading section of a Markdown text; a heading
    inside a fenced code block is not one. Text before the first heading has an empty path."""
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    heading_path: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        if "\n".join(lines).strip():
            yield heading_path, "\n".join(lines).strip()
        level = len(match.group(1))
        path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, match.group(2))]
        heading_path = [title for _, title in path]
        lines = [line]
    if "\n".join(lines).strip():
        yield heading_path, "\n".join(lines).strip()


class MarkdownChunker:
    """One chunk per heading section (its heading path in ``section``, e.g. ``"Install >
    Linux"``); a section longer than ``size`` characters is split further as
    ``CharChunker(size, overlap)`` would. Headings inside code fences are text."""

    def __init__(self, size: int = 1500, overlap: int = 0) -> None:
        self._long = CharChunker(size, overlap)
        self.size = size

    def split(self, doc: SourceDocument) -> list[Chunk]:
        texts: list[str] = []
        extra: list[dict[str, Any]] = []
        for headings, section in markdown_sections(doc.text):
            pieces = [section] if len(section) <= self.size else self._long.passages(section)
            for piece in pieces:
                texts.append(piece)
                extra.append({"section": " > ".join(headings)} if headings else {})
        return make_chunks(doc, texts, extra)
