"""Highlights: where a hit's text matches the query, and a short passage to show.

The spans are found with the lexical leg's own analyzer, so a span is highlighted exactly
when the token under it was a reason the hit matched: "Running" is marked for the query
"runs" (both stem to "run"), "the" never is (a stop word is not indexed).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Collection, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit import _highlight_scan as scan
from ragkit.analysis import Analyzer

#: characters of a snippet (it may run to the end of a word, at most ``_SNAP`` more)
SNIPPET_CHARS = 200
_SNAP = 20

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_analyzer = Analyzer()
# The Snowball English stemmer rewrites the end of a word only: a stem without its last
# letter begins the word (all of a stem of two), but for three of its exceptions ("dying"
# -> "die", "lying" -> "lie", "tying" -> "tie"). (Checked on the 55,000 words of SciFact
# and the Python docs; tests/test_highlight.py checks the bundled corpus.)
_SECOND_LETTER_CHANGED = {"die": "dy", "lie": "ly", "tie": "ty"}


@lru_cache(maxsize=1024)
def _prefixes(terms: frozenset[str]) -> tuple[NDArray[np.uint32], NDArray[np.int64], Any]:
    """What every token analyzing to one of ``terms`` starts with: the term but its last
    letter, at most four letters, at least two (the whole of a shorter one); as code points
    (one row each, zero-padded) and lengths. Only tokens starting so are analyzed."""
    out = {t[: max(min(2, len(t)), min(4, len(t) - 1))] for t in terms}
    out |= {_SECOND_LETTER_CHANGED[t] for t in terms if t in _SECOND_LETTER_CHANGED}
    # A prefix that another one starts with finds nothing the other does not.
    kept = sorted(p for p in out if not any(q != p and p.startswith(q) for q in out))
    codes = np.zeros((len(kept), 4), dtype=np.uint32)
    for i, prefix in enumerate(kept):
        codes[i, : len(prefix)] = [ord(c) for c in prefix]
    lengths = np.array([len(p) for p in kept], dtype=np.int64)
    return codes, lengths, scan.guide(codes, lengths)


def match_spans(
    text: str, terms: Collection[str], analyzer: Analyzer = _analyzer
) -> list[tuple[int, int]]:
    """The ``(start, end)`` character spans of the tokens of ``text`` whose analyzed term is
    one of ``terms``, in order."""
    return match_spans_of([text], terms, analyzer)[0]


def highlights(
    texts: Sequence[str], terms: Collection[str], analyzer: Analyzer = _analyzer
) -> list[tuple[list[tuple[int, int]], str]]:
    """For each of ``texts``: ``match_spans`` and ``snippet``, all found in one scan."""
    spans, windows = _scan(texts, terms, analyzer)
    return [
        (
            found,
            text[place[0] : place[1]].strip()
            if place is not None
            else _window(text, _densest(found)),
        )
        for text, found, place in zip(texts, spans, windows)
    ]


def match_spans_of(
    texts: Sequence[str], terms: Collection[str], analyzer: Analyzer = _analyzer
) -> list[list[tuple[int, int]]]:
    """``match_spans`` of each of ``texts``, in one scan of them all."""
    return _scan(texts, terms, analyzer)[0]


def _scan(
    texts: Sequence[str], terms: Collection[str], analyzer: Analyzer
) -> tuple[list[list[tuple[int, int]]], list[tuple[int, int] | None]]:
    """The spans of each text and, where the scan found it, its snippet's place
    (``None``: ``_window`` finds it)."""
    best: list[tuple[int, int] | None] = [None] * len(texts)
    if not terms:
        return [[] for _ in texts], best
    out: list[list[tuple[int, int]]] = [[] for _ in texts]
    # (the prefixes hold for the English stemmer; other analyzers take the slow way)
    fast = list(range(len(texts))) if analyzer.language == "english" else []
    scanned = _candidates(texts, fast, terms)
    if scanned is not None and scanned[0][3]:
        # "İ" lowercases to two characters: the texts holding it are scanned apart.
        fast = [i for i in fast if "\u0130" not in texts[i]]
        scanned = _candidates(texts, fast, terms)
    if len(fast) < len(texts):
        for i in sorted(set(range(len(texts))) - set(fast)):
            out[i] = _spans_slowly(texts[i], terms, analyzer)
    if scanned is None:
        return out, best
    (n, forms, written, _, _), codes, sizes, found, chars = scanned
    distinct = chars[:written].tobytes().decode("utf-32-le").split("\x00")[:forms]
    wanted = terms if isinstance(terms, set | frozenset) else set(terms)  # (as given)
    matching = np.fromiter(map(wanted.__contains__, analyzer.terms_of(distinct)), np.bool_, forms)
    local, end, cuts, snippets = scan.kept_spans(
        found[:4, :n], matching, codes, sizes, SNIPPET_CHARS, _SNAP
    )
    spans = list(zip(local.tolist(), end.tolist()))
    cut = cuts.tolist()
    for slot, (i, place) in enumerate(zip(fast, snippets.tolist())):
        out[i] = spans[cut[slot] : cut[slot + 1]]
        best[i] = (place[0], place[1])
    return out, best


def _candidates(
    texts: Sequence[str], fast: list[int], terms: Collection[str]
) -> tuple[tuple[int, int, int, bool, int], Any, Any, Any, Any] | None:
    """``candidate_tokens`` over the texts ``fast`` names, with its inputs and buffers.
    A text holding a NUL (which would read as the end of a text) leaves ``fast``."""
    if not fast:
        return None
    scanned = _scan_joined(texts, fast, terms)
    if scanned[0][4] != len(fast) - 1:  # (rare: scanned again without those texts)
        fast[:] = [i for i in fast if "\x00" not in texts[i]]
        return _candidates(texts, fast, terms)
    return scanned


def _scan_joined(
    texts: Sequence[str], fast: list[int], terms: Collection[str]
) -> tuple[tuple[int, int, int, bool, int], Any, Any, Any, Any]:
    chosen = texts if len(fast) == len(texts) else [texts[i] for i in fast]
    codes = np.frombuffer("\x00".join(chosen).encode("utf-32-le"), dtype=np.uint32)
    prefixes, lengths, guide = _prefixes(
        terms if isinstance(terms, frozenset) else frozenset(terms)
    )
    bounds, found, chars = scan.scratch(len(codes))
    sizes = np.fromiter(map(len, chosen), np.int64, len(chosen))
    word, lower = scan.tables()
    counts = scan.candidate_tokens(
        codes, word, lower, prefixes, lengths, guide, bounds, found, chars, sizes
    )
    return counts, codes, sizes, found, chars


def _spans_slowly(text: str, terms: Collection[str], analyzer: Analyzer) -> list[tuple[int, int]]:
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
    start of the text when there are none), cut between words where one is near."""
    return _window(text, _densest(spans, chars), chars)


def _densest(spans: list[tuple[int, int]], chars: int = SNIPPET_CHARS) -> int | None:
    """Where the span starts that has the most spans ending within ``chars`` of it."""
    if len(spans) < 2:
        return spans[0][0] if spans else None
    ends = [end for _, end in spans]
    counts = [bisect_right(ends, b + chars) - i for i, (b, _) in enumerate(spans)]
    return spans[counts.index(max(counts))][0]


def _window(text: str, best: int | None, chars: int = SNIPPET_CHARS) -> str:
    """``chars`` of ``text`` starting a little before ``best`` (the start: ``None``)."""
    if len(text) <= chars:
        return text.strip()
    start = 0
    if best is not None:
        start = max(0, best - chars // 5)
        if start:  # back to the space before the word it falls in, if near
            space = text.rfind(" ", max(0, start - _SNAP), start + 1)
            start = space + 1 if space >= 0 else start
    end = min(len(text), start + chars)
    if end < len(text):  # on to the end of the word it falls in, if near
        space = text.find(" ", end - 1, end + _SNAP)
        end = space if space >= 0 else end
    return text[start:end].strip()
