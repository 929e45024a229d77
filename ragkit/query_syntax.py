"""The opt-in ``query_syntax="simple"``: phrases, required and excluded terms, OR.

Plain text stays the default and stays safe: without ``query_syntax="simple"`` no character
of a query means anything. With it:

- ``word``: scored, optional (as in a plain query);
- ``+word``: the record must contain it;
- ``-word`` or ``-"a phrase"``: the record must not contain it;
- ``"a phrase"``: the record must contain these words in this order, next to each other
  (after analysis: stop words are not indexed, so ``"capital of France"`` matches
  "capital of France" and "capital, France");
- ``a OR b``: the record must contain at least one of them (each side a word, ``+word`` or
  a phrase; the alternatives are required together, so ``cats OR dogs`` keeps only records
  with either).

Every word of a clause that is not excluded is also scored, by both legs. A malformed query
(an unclosed quote, a lone ``+``, ``OR`` at an end, an excluded alternative, a required word
that is a stop word) is an ``InvalidInputError`` naming the position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from ragkit.analysis import Analyzer
from ragkit.errors import InvalidInputError

Phrase = tuple[str, ...]

_analyzer = Analyzer()


class QuerySyntax(StrEnum):
    """How a query's text is read: ``plain`` (every character is text) or ``simple``."""

    PLAIN = "plain"
    SIMPLE = "simple"


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """A simple-syntax query: the text both legs score, and the constraints on records.

    ``required``: each entry a set of alternatives, at least one of which a record contains
    (a single word is a phrase of one term); ``excluded``: phrases a record must not contain.
    Terms are analyzed (lowercased, stemmed)."""

    text: str
    required: tuple[tuple[Phrase, ...], ...]
    excluded: tuple[Phrase, ...]
    terms: frozenset[str]

    @property
    def constrains(self) -> bool:
        return bool(self.required or self.excluded)

    def matches(self, tokens: Sequence[str]) -> bool:
        """Whether a record whose analyzed text is ``tokens`` satisfies every constraint."""
        return all(any(contains(tokens, p) for p in alts) for alts in self.required) and not any(
            contains(tokens, p) for p in self.excluded
        )


def contains(tokens: Sequence[str], phrase: Phrase) -> bool:
    """Whether ``phrase`` occurs in ``tokens`` as consecutive terms."""
    n = len(phrase)
    first = phrase[0]
    return any(
        tokens[i] == first and tuple(tokens[i : i + n]) == phrase
        for i in range(len(tokens) - n + 1)
    )


@dataclass(frozen=True, slots=True)
class _Clause:
    sign: str  # "", "+" or "-"
    surface: str
    phrase: Phrase
    quoted: bool
    position: int


def parse_query(query: str, analyzer: Analyzer = _analyzer) -> ParsedQuery:
    """Parse ``query`` in the simple syntax (see the module docstring)."""
    items = _lex(query, analyzer)
    required: list[tuple[Phrase, ...]] = []
    excluded: list[Phrase] = []
    scored: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, int):
            raise _error(query, item, "OR needs a term or phrase on each side")
        run = [item]
        while i + 1 < len(items) and isinstance(items[i + 1], int):
            if i + 2 >= len(items) or isinstance(items[i + 2], int):
                raise _error(query, items[i + 1], "OR needs a term or phrase on each side")  # type: ignore[arg-type]
            nxt = items[i + 2]
            assert not isinstance(nxt, int)
            run.append(nxt)
            i += 2
        i += 1
        for clause in run:
            if clause.sign == "-" and len(run) > 1:
                raise _error(query, clause.position, "an excluded term cannot be an alternative")
            if not clause.phrase:
                if clause.sign or clause.quoted or len(run) > 1:
                    raise _error(
                        query,
                        clause.position,
                        f"{clause.surface!r} has no indexed word (stop words are not indexed)",
                    )
                continue
            if clause.sign == "-":
                excluded.append(clause.phrase)
            else:
                scored.append(clause.surface)
        alternatives = tuple(c.phrase for c in run if c.phrase and c.sign != "-")
        chosen = len(run) > 1 or any(c.sign == "+" or c.quoted for c in run if c.sign != "-")
        if chosen and alternatives:
            required.append(alternatives)
    if not scored:
        raise InvalidInputError(
            f"query {query!r:.80} has no word to score: it needs at least one term or phrase "
            "that is not excluded (query_syntax='simple')"
        )
    return ParsedQuery(
        " ".join(scored),
        tuple(required),
        tuple(excluded),
        frozenset(t for alts in required for p in alts for t in p)
        | frozenset(analyzer.tokens(" ".join(scored))),
    )


def _lex(query: str, analyzer: Analyzer) -> list[_Clause | int]:
    """Clauses in order; an ``int`` is an ``OR`` at that position."""
    out: list[_Clause | int] = []
    i, n = 0, len(query)
    while i < n:
        if query[i].isspace():
            i += 1
            continue
        start, sign = i, ""
        if query[i] in "+-":
            sign = query[i]
            i += 1
            if i >= n or query[i].isspace():
                raise _error(query, start, f"{sign!r} must be followed by a term or a phrase")
        if query[i] == '"':
            close = query.find('"', i + 1)
            if close < 0:
                raise _error(query, i, "unclosed quote")
            surface = query[i + 1 : close]
            if not surface.strip():
                raise _error(query, i, "empty phrase")
            i = close + 1
            out.append(_Clause(sign, surface, tuple(analyzer.tokens(surface)), True, start))
            continue
        end = i
        while end < n and not query[end].isspace() and query[end] != '"':
            end += 1
        surface = query[i:end]
        i = end
        if surface == "OR" and not sign:
            out.append(start)
            continue
        out.append(_Clause(sign, surface, tuple(analyzer.tokens(surface)), False, start))
    return out


def _error(query: str, position: int, problem: str) -> InvalidInputError:
    return InvalidInputError(
        f"query_syntax='simple': {problem} at position {position} of {query!r:.120}; "
        'accepted: words, "phrases", +required, -excluded, a OR b'
    )
