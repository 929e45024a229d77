"""An offline extractive answerer: the best-matching sentences of the top sources, cited.

No model, no API key: each of the top sources contributes its sentence that best matches the
question (BM25-style term overlap, rarer terms weighing more), and every sentence carries the
number of its source, ``[n]``. Markup is dropped first (front matter, HTML comments and tags,
Markdown links and images, code fences) and the answer stays within ``max_chars``. Used by
the LangChain and LlamaIndex chains when no LLM is given.

Both chains abstain when retrieval found nothing relevant: when no source has a calibrated
score (``SearchResult.scale == "calibrated"``, the default) of at least ``min_score`` the
answer is ``NO_ANSWER``; otherwise sources scoring at least half the best score are used. As
the best hit's score, ``DEFAULT_MIN_SCORE = 0.25`` kept 98% of SciFact's 300 test questions and
rejected 96% of 300 off-topic questions with all-MiniLM-L6-v2 (``bench/bench_scores.py``);
with another embedder or corpus, measure your own with ``ragkit.evaluation.separation``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ragkit.analysis import Analyzer

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_ANALYZER = Analyzer()
_CLOSING = frozenset(".!?\"')]…")

#: the answer when no source is relevant enough
NO_ANSWER = "I found nothing relevant to this question in the indexed documents."
#: the calibrated score below which a source is not used (see the module docstring)
DEFAULT_MIN_SCORE = 0.25
#: the longest answer, and the longest sentence quoted in it
DEFAULT_MAX_CHARS = 900
_MAX_SENTENCE_CHARS = 320
_MIN_SENTENCE_CHARS = 60
_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")

_FRONT_MATTER = re.compile(r"\A\s*---\s*\n.*?\n(?:---|\.\.\.)\s*(?:\n|\Z)", re.S)
_MARKUP = [
    (re.compile(r"<!--.*?(?:-->|\Z)", re.S), " "),  # HTML comments, even unclosed
    (re.compile(r"```.*?(?:```|\Z)", re.S), " "),  # code fences
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), " "),  # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: keep the text
    (re.compile(r"</?[A-Za-z][^>]*>"), " "),  # HTML tags
    (re.compile(r"^\s{0,3}#{1,6}\s+(.*)$", re.M), r"\n\n\1\n\n"),  # a heading: its own part
    (re.compile(r"^\s{0,3}(?:[-*+]|>)\s+", re.M), ""),  # bullets, quotes
    (re.compile(r"^\.\. [\w:-]+::.*$", re.M), " "),  # RST directives (.. note::)
    (re.compile(r":[\w:+.-]+:`([^`]+)`"), r"\1"),  # RST roles: :func:`json.dumps`
    (re.compile(r"`+([^`\n]+?)`+"), r"\1"),  # inline code: keep the code, marks and all
    # emphasis only where it opens and closes around words: never the * of "f(a, *, b)" or
    # the ** of **kwargs; underscores only around several words (__init__ is a name)
    (re.compile(r"(?<![\w*])(\*{1,3})(?=[^\s*])((?:(?!\1).)+?)(?<=[^\s*])\1(?![\w*])"), r"\2"),
    (
        re.compile(
            r"(?<![\w_])(_{1,3})(?=[^\s_])((?:(?!\1).)*?\s(?:(?!\1).)*?)(?<=[^\s_])\1(?![\w_])"
        ),
        r"\2",
    ),
]


# A short line without closing punctuation followed by a capitalized line: a title.
_TITLE_LINE = re.compile(r"^([^\n]{0,79}[^\n.!?:;,])\n(?=[A-Z])", re.M)


def clean_text(text: str) -> str:
    """``text`` without markup a reader should not see quoted in an answer."""
    text = _FRONT_MATTER.sub("", text)
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r" ([.,;:!?])", r"\1", text).strip()


def _shorten(sentence: str, limit: int) -> str:
    if len(sentence) <= limit:
        return sentence
    cut = sentence[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


@dataclass(frozen=True, slots=True)
class Extract:
    source: int  # 1-based source number
    sentence: str
    score: float


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` once its markup is dropped."""
    out: list[str] = []
    text = _TITLE_LINE.sub(r"\1\n\n", clean_text(text))
    for part in re.split(r"\n\s*\n", text):  # paragraphs, headings, title lines
        out.extend(s.strip() for s in _SENTENCE.split(part.replace("\n", " ")) if s.strip())
    return out


def best_sentences(
    question: str, sources: Sequence[str], *, per_source: int = 1, max_sources: int | None = None
) -> list[Extract]:
    """The best sentences of the first ``max_sources`` sources (default: all), best first."""
    max_sources = len(sources) if max_sources is None else max_sources
    query_terms = set(_ANALYZER.tokens(question))
    candidates: list[tuple[int, str, list[str]]] = []
    for number, text in enumerate(sources[:max_sources], start=1):
        sentences = split_sentences(text)
        # A title line is not an answer, unless the source has nothing else.
        complete = [s for s in sentences if s[-1] in _CLOSING]
        for sentence in complete or sentences:
            candidates.append((number, sentence, _ANALYZER.tokens(sentence)))
    if not candidates:
        return []
    df = Counter(term for _, _, terms in candidates for term in set(terms))
    n = len(candidates)
    picked: list[Extract] = []
    for number in range(1, min(len(sources), max_sources) + 1):
        scored = []
        for position, (source, sentence, terms) in enumerate(candidates):
            if source != number:
                continue
            overlap = query_terms.intersection(terms)
            score = sum(math.log(1 + n / df[t]) for t in overlap) / math.sqrt(1 + len(terms))
            scored.append((score, -position, sentence))  # ties: the earlier sentence
        scored.sort(reverse=True)
        picked.extend(Extract(number, s, score) for score, _, s in scored[:per_source])
    ranked = sorted(picked, key=lambda e: (-e.score, e.source))
    # Sentences sharing no word with the question add noise, not evidence; keep the top
    # source's best sentence regardless, so there is always an answer.
    relevant = [e for e in ranked if e.score > 0]
    return relevant or [e for e in ranked if e.source == 1][:1]


def extractive_answer(
    question: str,
    sources: Sequence[str],
    *,
    citations: bool = True,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """An answer made of cited source sentences, at most ``max_chars`` long (no sources:
    ``NO_ANSWER``)."""
    extracts = best_sentences(question, sources)
    if not extracts:
        return NO_ANSWER
    # Every source keeps its sentence: the room is shared, a long sentence is shortened.
    room = max(_MIN_SENTENCE_CHARS, max_chars // len(extracts) - 6)
    parts = []
    for extract in sorted(extracts, key=lambda e: e.source):  # cited in the sources' order
        # "[14]" inside a quoted sentence is the source's own reference, not a citation.
        sentence = _BRACKETED_NUMBER.sub(r"(\1)", extract.sentence)
        cite = f" [{extract.source}]" if citations else ""
        parts.append(_shorten(sentence, min(room, _MAX_SENTENCE_CHARS)) + cite)
    answer = " ".join(parts)
    return answer if len(answer) <= max_chars else _shorten(answer, max_chars)


def relevant(
    scores: Sequence[tuple[float | None, str | None]], min_score: float | None
) -> list[int]:
    """Positions of the sources to answer from, given each one's ``(score, scale)``.

    None when no source has a calibrated score of at least ``min_score`` (abstain); else the
    sources scoring at least half the best score (the best one has set the topic; weaker
    ones on it support the answer). Without calibrated scores (another fusion, another
    retriever) nothing says a source is irrelevant, and every source is kept.
    """
    calibrated = [s for s, scale in scores if scale == "calibrated" and s is not None]
    if min_score is None or not calibrated:
        return list(range(len(scores)))
    best = max(calibrated)
    if best < min_score:
        return []
    return [
        i
        for i, (score, scale) in enumerate(scores)
        if scale != "calibrated" or score is None or score >= best / 2
    ]


_CITATION = re.compile(r"\[(\d+)\]")


def cited_numbers(answer: str) -> list[int]:
    """The source numbers an answer cites, in first-cited order."""
    return list(dict.fromkeys(int(m) for m in _CITATION.findall(answer)))


def number_sources(texts: Sequence[str], max_chars: int) -> str:
    """``[1] text\\n\\n[2] text ...`` truncated to ``max_chars`` in total."""
    parts, used = [], 0
    for number, text in enumerate(texts, start=1):
        room = max_chars - used
        if room <= 20:
            break
        chunk = f"[{number}] {text}"[:room]
        parts.append(chunk)
        used += len(chunk) + 2
    return "\n\n".join(parts)
