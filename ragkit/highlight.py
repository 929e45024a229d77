"""Highlights: where a hit's text matches the query, and a short passage to show.

The spans are found with the lexical leg's own analyzer, so a span is highlighted exactly
when the token under it was a reason the hit matched: "Running" is marked for the query
"runs" (both stem to "run"), "the" never is (a stop word is not indexed).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from ragkit.analysis import Analyzer

#: characters of a snippet (it may run a word longer so as not to cut one)
SNIPPET_CHARS = 200

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_analyzer = Analyzer()


def match_spans(
    text: str, terms: Collection[str], analyzer: Analyzer = _analyzer
) -> list[tuple[int, int]]:
    """The ``(start, end)`` character spans of the tokens of ``text`` whose analyzed term is
    one of ``terms``, in order."""
    if not terms:
        return []
    spans: list[tuple[int, int]] = []
    for match in _WORD.finditer(text):
        # Lowercasing can change a token's extent (a few letters lower to two characters);
        # the analyzer's own tokens of the span decide, as they would at indexing.
        for raw in _WORD.findall(match.group().lower()):
            term = analyzer.term(raw)
            if term is not None and term in terms:
                spans.append(match.span())
                break
    return spans


def snippet(text: str, spans: list[tuple[int, int]], chars: int = SNIPPET_CHARS) -> str:
    """A passage of about ``chars`` characters around the densest run of ``spans`` (the
    start of the text when there are none), cut at word boundaries."""
    if len(text) <= chars:
        return text.strip()
    start = 0
    if spans:
        # The window of ``chars`` starting a little before a span that covers the most spans.
        best, best_count = spans[0][0], 0
        ends = [end for _, end in spans]
        j = 0
        for i, (begin, _) in enumerate(spans):
            j = max(j, i)
            while j + 1 < len(spans) and ends[j + 1] - begin <= chars:
                j += 1
            if j - i + 1 > best_count:
                best, best_count = begin, j - i + 1
        start = max(0, best - chars // 5)
    start = _word_start(text, start)
    end = _word_end(text, min(len(text), start + chars))
    return text[start:end].strip()


def _word_start(text: str, at: int) -> int:
    while 0 < at < len(text) and text[at - 1].isalnum():
        at -= 1
    return at


def _word_end(text: str, at: int) -> int:
    while at < len(text) and text[at].isalnum():
        at += 1
    return at
