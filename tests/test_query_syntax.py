"""Search that answers with documents, acceptance 3: ``query_syntax="simple"`` phrases and
operators against a brute-force matcher on random corpora (every hit meets the query; every
record meeting it is found when k is large enough), through adds, deletes, merges and a
reopen, on one shard and on partitions; malformed queries name the position."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ragkit import HybridStore
from ragkit.analysis import Analyzer
from ragkit.backends import ShardedStore
from ragkit.backends.sharded import LocalHost
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError
from ragkit.query_syntax import contains, parse_query

# Few words, so phrases recur; "the" and "of" are stop words (not indexed, not counted).
WORDS = ["red", "green", "blue", "cats", "dogs", "run", "running", "the", "of", "fast"]
EMBEDDER = HashingEmbedder(dim=16)
ANALYZE = Analyzer().tokens

texts = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=10), min_size=1, max_size=40)
phrase = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
clause = st.one_of(
    phrase.map(lambda p: f'"{p}"'),
    st.sampled_from(WORDS).map(lambda w: f"+{w}"),
    phrase.map(lambda p: f'-"{p}"'),
    st.tuples(phrase, phrase).map(lambda ab: f'"{ab[0]}" OR "{ab[1]}"'),
)
queries = st.tuples(st.sampled_from(WORDS[:7]), st.lists(clause, min_size=1, max_size=3)).map(
    lambda q: " ".join([q[0], *q[1]])
)


def brute_matches(query: str, corpus: dict[str, str]) -> set[str]:
    """The ids whose text meets ``query``, checked by reading every text: each required
    clause's phrase (or one of its alternatives) at consecutive analyzed positions, no
    excluded phrase. Phrases are read here from the query itself, not from the parser."""
    parsed = parse_query(query)
    out = set()
    for rid, text in corpus.items():
        tokens = ANALYZE(text)
        ok = all(any(contains(tokens, p) for p in alts) for alts in parsed.required)
        if ok and not any(contains(tokens, p) for p in parsed.excluded):
            out.add(rid)
    return out


def searchable(store: HybridStore, query: str, mode: str) -> set[str]:
    try:
        return set(store.search(query, k=500, mode=mode, query_syntax="simple").ids)
    except InvalidInputError:
        return set()  # (a required clause of stop words only: rejected, checked elsewhere)


def _valid(query: str) -> bool:
    try:
        parse_query(query)
    except InvalidInputError:
        return False
    return True


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts, queries, st.sampled_from(["hybrid", "lexical", "dense"]), st.sampled_from([1, 3]))
def test_simple_queries_find_exactly_the_matching_records(
    corpus_words: list[list[str]], query: str, mode: str, partitions: int
) -> None:
    assume(_valid(query))
    corpus = {f"r{i}": " ".join(w) for i, w in enumerate(corpus_words)}
    backend = (
        None
        if partitions == 1
        else ShardedStore([LocalHost("h0")], partitions=partitions, heal_interval_s=None)
    )
    with HybridStore(backend=backend, embedder=EMBEDDER) as store:
        store.add_texts(list(corpus.values()), ids=list(corpus))
        want = brute_matches(query, corpus)
        got = set(store.search(query, k=500, mode=mode, query_syntax="simple").ids)
        if mode != "lexical":
            assert got == want  # the dense leg ranks every allowed record
        else:
            assert got <= want
            scored = {rid for rid in want if set(ANALYZE(corpus[rid])) & parse_query(query).terms}
            assert got == scored  # a lexical match: it holds a scored term


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts, texts, queries, st.data())
def test_positions_stay_right_through_writes_deletes_merges_and_reopen(
    first: list[list[str]], second: list[list[str]], query: str, data: Any
) -> None:
    assume(_valid(query))
    import tempfile

    corpus = {f"a{i}": " ".join(w) for i, w in enumerate(first)}
    later = {f"b{i}": " ".join(w) for i, w in enumerate(second)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kb"
        with HybridStore(path, embedder=EMBEDDER) as store:
            store.add_texts(list(corpus.values()), ids=list(corpus))
            store.add_texts(list(later.values()), ids=list(later))  # a second segment
            corpus.update(later)
            gone = data.draw(st.lists(st.sampled_from(sorted(corpus)), max_size=5, unique=True))
            store.delete(gone)
            for rid in gone:
                del corpus[rid]
            changed = data.draw(st.sampled_from(sorted(corpus))) if corpus else None
            if changed is not None:  # replaced: its old positions must not match any more
                corpus[changed] = "fast red dogs"
                store.add_texts([corpus[changed]], ids=[changed])
            assert searchable(store, query, "dense") == brute_matches(query, corpus)
            store.optimize()  # segments merged, dead rows dropped
            assert searchable(store, query, "dense") == brute_matches(query, corpus)
        with HybridStore(path, embedder=EMBEDDER) as reopened:  # from the checkpoint
            assert searchable(reopened, query, "dense") == brute_matches(query, corpus)


def test_a_phrase_needs_its_words_in_order_and_adjacent() -> None:
    with HybridStore(embedder=EMBEDDER) as store:
        store.add_texts(
            ["the capital of France", "France has a capital", "capital cities of France"],
            ids=["adjacent", "reversed", "apart"],
        )
        result = store.search('"capital of France"', k=10, query_syntax="simple")
        assert result.ids == ["adjacent"]  # "of" is a stop word: not counted between them
        plain = store.search('"capital of France"', k=10)  # plain text: quotes mean nothing
        assert set(plain.ids) == {"adjacent", "reversed", "apart"}


def test_required_excluded_and_or_filter_both_legs() -> None:
    with HybridStore(embedder=EMBEDDER) as store:
        store.add_texts(
            ["red cats", "red dogs", "blue cats", "green birds"], ids=["rc", "rd", "bc", "gb"]
        )
        assert store.search("red +cats", k=10, query_syntax="simple").ids == ["rc", "bc"]
        assert set(store.search("+red +cats", k=10, query_syntax="simple").ids) == {"rc"}
        lexical = store.search("red -dogs", k=10, mode="lexical", query_syntax="simple")
        assert lexical.ids == ["rc"]
        hits = store.search("cats OR dogs", k=10, mode="dense", query_syntax="simple")
        assert set(hits.ids) == {"rc", "rd", "bc"}  # a dense hit without either is dropped


@pytest.mark.parametrize(
    ("query", "position", "problem"),
    [
        ('red "cats', 4, "unclosed quote"),
        ("red + cats", 4, "must be followed"),
        ("OR cats", 0, "OR needs"),
        ("cats OR", 5, "OR needs"),
        ("cats OR OR dogs", 5, "OR needs"),
        ("cats OR -dogs", 8, "excluded term cannot be an alternative"),
        ('red ""', 4, "empty phrase"),
        ("red +the", 4, "no indexed word"),
    ],
)
def test_malformed_queries_name_the_position(query: str, position: int, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=f"{problem}.* at position {position} "):
        parse_query(query)


def test_a_query_of_exclusions_only_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no word to score"):
        parse_query("-cats -dogs")


def test_plain_text_stays_the_default_and_stays_safe() -> None:
    with HybridStore(embedder=EMBEDDER) as store:
        store.add_texts(["a -b +c OR d"], ids=["x"])
        assert store.search('"unclosed -b +c OR', k=1).ids == ["x"]
