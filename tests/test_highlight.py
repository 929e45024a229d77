"""Search that answers with documents, acceptance 4: every highlighted span lies in the hit's
text and its analysed token is a query term; every token that is a query term is
highlighted; the snippet is a passage of the text around the best span."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ragkit import HybridStore
from ragkit.analysis import Analyzer
from ragkit.embeddings import HashingEmbedder
from ragkit.highlight import SNIPPET_CHARS, match_spans, snippet

ANALYZER = Analyzer()
WORDS = ["Running", "runs", "the", "dying", "die", "Lying", "tie", "tying", "skies"]
WORDS += ["Straße", "İstanbul", "café", "ﬁle", "naïve", "x_y", "42"]

texts = st.lists(
    st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=8)), min_size=1, max_size=40
).map(" ".join)
query_terms = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(
    lambda words: set(ANALYZER.tokens(" ".join(words)))
)


@settings(max_examples=300, deadline=None)
@given(texts, query_terms)
def test_every_span_is_a_query_term_and_every_query_term_is_a_span(
    text: str, terms: set[str]
) -> None:
    spans = match_spans(text, terms)
    assert spans == sorted(spans)
    for (start, end), following in zip(spans, [*spans[1:], (len(text), len(text))]):
        assert 0 <= start < end <= following[0] <= len(text)
        assert set(ANALYZER.tokens(text[start:end])) & terms
    # Completeness, found another way: blank out the spans; no query term is left.
    rest = list(text)
    for start, end in spans:
        rest[start:end] = " " * (end - start)
    assert not set(ANALYZER.tokens("".join(rest))) & terms


@settings(max_examples=200, deadline=None)
@given(texts, query_terms)
def test_a_snippet_is_a_passage_of_the_text_around_the_best_span(
    text: str, terms: set[str]
) -> None:
    spans = match_spans(text, terms)
    passage = snippet(text, spans)
    assert passage in text
    if len(text) > SNIPPET_CHARS and spans:
        found = text.find(passage)
        assert any(found <= s and e <= found + len(passage) for s, e in spans)


def test_search_hits_carry_spans_and_a_snippet() -> None:
    filler = "Background material without the keywords. " * 10
    with HybridStore(embedder=HashingEmbedder(dim=16)) as store:
        store.add_texts(
            [filler + "Hybrid search fuses BM25 and vectors. " + filler, "Nothing relevant."],
            ids=["long", "other"],
        )
        result = store.search("hybrid searching", k=2, highlight=True)
        hit = result[0]
        assert hit.id == "long" and hit.highlights
        assert [hit.text[s:e] for s, e in hit.highlights] == ["Hybrid", "search"]
        assert hit.snippet is not None and "Hybrid search fuses" in hit.snippet
        assert len(hit.snippet) <= SNIPPET_CHARS + 20
        dense_only = result[1]  # no query term: no span, the start of its text
        assert dense_only.highlights == [] and dense_only.snippet == "Nothing relevant."
        plain = store.search("hybrid searching", k=1)
        assert plain[0].highlights is None and plain[0].snippet is None


def test_highlights_follow_the_simple_syntax_terms() -> None:
    with HybridStore(embedder=HashingEmbedder(dim=16)) as store:
        store.add_texts(["red cats and red dogs"], ids=["a"])
        hit = store.search('red -"blue birds"', k=1, highlight=True, query_syntax="simple")[0]
        assert [hit.text[s:e] for s, e in hit.highlights or []] == ["red", "red"]
        assert re.fullmatch(r"red cats and red dogs", hit.snippet or "")


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=6), query_terms)
def test_highlighting_many_texts_at_once_is_highlighting_each(
    many: list[str], terms: set[str]
) -> None:
    from ragkit.highlight import highlights

    got = highlights(many, terms)
    assert [spans for spans, _ in got] == [match_spans(text, terms) for text in many]
    assert [passage for _, passage in got] == [
        snippet(text, match_spans(text, terms)) for text in many
    ]


def test_every_word_of_the_bundled_corpus_is_found_by_its_own_term() -> None:
    """The scan looks only at tokens starting like a query term (``ragkit.highlight``): on
    real English vocabulary (the bundled corpus and the documentation), no word may fall
    outside its own term's prefix."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    corpus = root / "cookbook" / "data" / "demo_corpus.jsonl"
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    texts += [p.read_text() for p in [root / "README.md", *(root / "docs").glob("*.md")]]
    words = {raw for text in texts for raw in ANALYZER.raw_tokens(text)}
    words |= {"dying", "lying", "tying", "skies", "happily", "generously", "relational"}
    assert len(words) > 2000
    text = " ".join(sorted(words))
    for word in sorted(words):
        term = ANALYZER.term(word)
        if term is None:
            continue
        spans = match_spans(text, {term})
        assert any(text[s:e] == word for s, e in spans), (word, term)


def test_a_snippet_around_tokens_longer_than_itself() -> None:
    """Every span longer than a snippet: the first span still anchors it, scanned in one
    batch or alone."""
    from ragkit.highlight import highlights

    long_word = "a" * 300
    text = "x " * 150 + long_word + " " + long_word + " y" * 100
    terms = set(ANALYZER.tokens(long_word))
    spans = match_spans(text, terms)
    assert spans == [(300, 600), (601, 901)]
    assert highlights([text, "no match"], terms)[0] == (spans, snippet(text, spans))
