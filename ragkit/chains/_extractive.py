"""An offline extractive answerer: the best-matching sentences of the top sources, cited.

No model, no API key: each of the top sources contributes its sentence that best matches the
question (BM25-style term overlap, rarer terms weighing more), and every sentence carries the
number of its source, ``[n]``. Used by the LangChain and LlamaIndex chains when no LLM is given.
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


@dataclass(frozen=True, slots=True)
class Extract:
    source: int  # 1-based source number
    sentence: str
    score: float


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.replace("\n", " ")) if s.strip()]


def best_sentences(
    question: str, sources: Sequence[str], *, per_source: int = 1, max_sources: int = 3
) -> list[Extract]:
    """The best sentences of the first ``max_sources`` sources, best first."""
    query_terms = set(_ANALYZER.tokens(question))
    candidates: list[tuple[int, str, list[str]]] = []
    for number, text in enumerate(sources[:max_sources], start=1):
        for sentence in split_sentences(text):
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


def extractive_answer(question: str, sources: Sequence[str], *, citations: bool = True) -> str:
    """An answer made of cited source sentences (empty sources: a plain "no answer")."""
    extracts = best_sentences(question, sources)
    if not extracts:
        return "No relevant sources were found."
    if citations:
        return " ".join(f"{e.sentence} [{e.source}]" for e in extracts)
    return " ".join(e.sentence for e in extracts)


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
