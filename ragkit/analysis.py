"""Text analysis for the lexical leg: one analyzer shared by indexing and querying.

The analyzer lowercases, splits on anything that is not a letter or digit, drops a short list
of English stop words and applies the Snowball English stemmer. Query text goes through exactly
the same steps, so user input is never interpreted as query syntax: quotes, colons,
parentheses, ``AND`` or ``*`` are just characters that the tokenizer splits on or drops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import Stemmer

# The classic Lucene English stop set: short enough not to hurt recall on technical text.
ENGLISH_STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)

_TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)


class Analyzer:
    """Lowercase, tokenize on non-alphanumerics, drop stop words, stem (Snowball English).

    Stemming results are memoized per surface form: corpora repeat words heavily, and the
    memo makes analysis several times faster than stemming every token.
    """

    __slots__ = ("_memo", "_stemmer", "_stop_words", "language")

    def __init__(self, language: str = "english", stop_words: Iterable[str] | None = None) -> None:
        self.language = language
        # No cache in PyStemmer (size 0): the memo below does its work, and its cache keeps a
        # two-item list per word, 10,000 per analyzer, that every full garbage collection walks.
        self._stemmer = Stemmer.Stemmer(language, 0)
        self._stop_words = frozenset(ENGLISH_STOP_WORDS if stop_words is None else stop_words)
        self._memo: dict[str, str | None] = {}

    def raw_tokens(self, text: str) -> list[str]:
        """Lowercased surface tokens, before stop-word removal and stemming."""
        return _TOKEN_RE.findall(text.lower())

    def term(self, raw: str) -> str | None:
        """The indexed term for one lowercased surface token (``None`` for a stop word)."""
        term = self._memo.get(raw, "")
        if term == "":
            term = None if raw in self._stop_words else str(self._stemmer.stemWord(raw))
            if len(self._memo) < 2_000_000:
                self._memo[raw] = term
        return term

    def terms_of(self, raws: list[str]) -> list[str | None]:
        """``term`` of each lowercased surface token (one dict lookup each once known)."""
        found: list[str | None] = list(map(self._memo.get, raws, [""] * len(raws)))
        if "" in found:
            found = [self.term(raw) if t == "" else t for raw, t in zip(raws, found)]
        return found

    def tokens(self, text: str) -> list[str]:
        """Return the analyzed terms of ``text`` in order, repeats kept."""
        memo = self._memo
        out: list[str] = []
        for raw in _TOKEN_RE.findall(text.lower()):
            term = memo.get(raw, "")
            if term == "":
                term = None if raw in self._stop_words else self._stemmer.stemWord(raw)
                if len(memo) < 2_000_000:
                    memo[raw] = term
            if term is not None:
                out.append(term)
        return out

    def spec(self) -> dict[str, object]:
        """A JSON-serializable description, persisted with an index to detect mismatches."""
        return {"language": self.language, "stop_words": sorted(self._stop_words)}
