"""Splitting long documents into passages for indexing."""

from __future__ import annotations

import re
from collections.abc import Iterator

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
