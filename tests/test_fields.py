"""Named text fields and BM25F: the lexical leg against a brute-force BM25F over random
corpora (through replacements and deletes, per tenant), ``{"text": 1}`` equal to BM25, the
fields kept by the store and their indexes through a reopen, rebuilt when the fields change,
titles weighed twice by default, clear errors."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit import HybridStore
from ragkit.analysis import Analyzer
from ragkit.backends import LocalShard
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError
from ragkit.request import TITLE_FIELD_WEIGHTS

WORDS = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "the"]
EMBEDDER = HashingEmbedder(dim=16)
ANALYZE = Analyzer().tokens
K1, B = 1.2, 0.75

words = st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join)
corpora = st.lists(
    st.tuples(words.filter(str.strip), st.one_of(st.none(), words), st.sampled_from([None, "t"])),
    min_size=1,
    max_size=40,
)
weights = st.fixed_dictionaries(
    {"text": st.sampled_from([0.0, 0.5, 1.0]), "title": st.sampled_from([0.5, 1.0, 3.0])}
)


def brute_bm25f(
    docs: dict[str, tuple[str, str | None]], query: str, w: dict[str, float]
) -> dict[str, float]:
    """BM25F by the formula, over ``docs`` (id -> (text, title)): IDF from the records
    holding the term in a weighted field, each field's frequencies over its length
    normalization, weighted, one saturation."""
    text = {rid: ANALYZE(t) for rid, (t, _) in docs.items()}
    title = {rid: ANALYZE(ti or "") for rid, (_, ti) in docs.items()}
    n = len(docs)
    avg = {"text": sum(map(len, text.values())) / n, "title": sum(map(len, title.values())) / n}
    df = Counter(
        term
        for rid in docs
        for term in set(text[rid] * (w.get("text", 0) > 0) + title[rid] * (w.get("title", 0) > 0))
    )
    out: dict[str, float] = {}
    for term, qtf in Counter(ANALYZE(query)).items():
        if not df[term]:
            continue
        idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
        for rid in docs:
            tf = 0.0
            for name, tokens in (("text", text[rid]), ("title", title[rid])):
                if w.get(name, 0) and avg[name] > 0 and tokens.count(term):
                    norm = 1 - B + B * len(tokens) / avg[name]
                    tf += w[name] * tokens.count(term) / norm
            if tf > 0:
                out[rid] = out.get(rid, 0.0) + qtf * idf * tf * (K1 + 1) / (tf + K1)
    return out


def fill(store: HybridStore, corpus: list[tuple[str, str | None, str | None]]) -> dict[Any, Any]:
    """Writes the corpus; returns {tenant: {id: (text, title)}}."""
    by_tenant: dict[str | None, dict[str, tuple[str, str | None]]] = {}
    for i, (text, title, tenant) in enumerate(corpus):
        by_tenant.setdefault(tenant, {})[f"r{i}"] = (text, title)
    for tenant, docs in by_tenant.items():
        store.add_texts(
            [t for t, _ in docs.values()],
            [{} if ti is None else {"title": ti} for _, ti in docs.values()],
            ids=list(docs),
            tenant=tenant,
        )
    return by_tenant


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora, st.lists(st.sampled_from(WORDS), min_size=1, max_size=3), weights, st.data())
def test_bm25f_equals_a_brute_force_reference(
    corpus: list[tuple[str, str | None, str | None]], query: list[str], w: Any, data: Any
) -> None:
    assume_weights = w if any(w.values()) else {**w, "title": 1.0}
    with HybridStore(embedder=EMBEDDER, text_fields=["title"]) as store:
        by_tenant = fill(store, corpus)
        # A replacement and a delete: their old rows must not count.
        tenant = data.draw(st.sampled_from(sorted(by_tenant, key=str)))
        docs = by_tenant[tenant]
        first = next(iter(docs))
        docs[first] = ("fig fig banana", "cherry")
        store.add_texts([docs[first][0]], [{"title": "cherry"}], ids=[first], tenant=tenant)
        if len(docs) > 1:
            last = list(docs)[-1]
            del docs[last]
            store.delete([last], tenant=tenant)
        text = " ".join(query)
        result = store.search(
            text, k=100, mode="lexical", field_weights=assume_weights, tenant=tenant
        )
        want = brute_bm25f(docs, text, assume_weights)
        assert set(result.ids) == set(want)
        for hit in result:
            assert hit.score == pytest.approx(want[hit.id], rel=1e-4, abs=1e-6)
        assert [h.score for h in result] == sorted((h.score for h in result), reverse=True)
        # The live lengths and counts the field indexes keep hold through a merge of
        # everything (optimize), and the k best are the best of every match.
        store.optimize()
        again = store.search(
            text, k=100, mode="lexical", field_weights=assume_weights, tenant=tenant
        )
        assert [(h.id, h.score) for h in again] == [(h.id, h.score) for h in result]
        top = store.search(text, k=2, mode="lexical", field_weights=assume_weights, tenant=tenant)
        assert [h.score for h in top] == [h.score for h in result][: len(top)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora, st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
def test_text_weight_alone_is_plain_bm25(
    corpus: list[tuple[str, str | None, str | None]], query: list[str]
) -> None:
    with (
        HybridStore(embedder=EMBEDDER, text_fields=["title"]) as store,
        HybridStore(embedder=EMBEDDER) as without,  # (no fields: plain BM25)
    ):
        fill(store, corpus)
        fill(without, corpus)
        text = " ".join(query)
        for mode in ("lexical", "hybrid"):
            plain = without.search(text, k=50, mode=mode)
            fields = store.search(text, k=50, mode=mode, field_weights={"text": 1.0})
            assert fields.ids == plain.ids
            assert [h.score for h in fields] == pytest.approx([h.score for h in plain], rel=1e-5)


def test_field_indexes_are_kept_by_the_store_and_rebuilt_when_fields_change(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kb"
    titles = {"a": "apple pie", "b": "banana bread"}
    with HybridStore(path, embedder=EMBEDDER, text_fields=["title"]) as store:
        store.add_texts(["a recipe", "a recipe"], [{"title": t} for t in titles.values()],
                        ids=list(titles))  # fmt: skip
        before = store.search("apple", mode="lexical", field_weights={"title": 1.0})
    assert before.ids == ["a"]
    with HybridStore(path, embedder=EMBEDDER, text_fields=["title"]) as store:
        again = store.search("apple", mode="lexical", field_weights={"title": 1.0})
        assert again.ids == ["a"] and again[0].score == pytest.approx(before[0].score)
    with HybridStore(path, embedder=EMBEDDER, text_fields=["title", "tags"]) as store:
        assert store.search("banana", mode="lexical", field_weights={"title": 1.0}).ids == ["b"]
    # Opened without text_fields, the store keeps its own (read-only too).
    with HybridStore(path, embedder=EMBEDDER) as store:
        assert store.text_fields == ("title", "tags")
        assert store.search("banana", mode="lexical", field_weights={"title": 1.0}).ids == ["b"]
    with HybridStore(path, embedder=EMBEDDER, read_only=True) as store:
        assert store.text_fields == ("title", "tags")
    with HybridStore(path, embedder=EMBEDDER, text_fields=[]) as store:
        assert store.text_fields == ()
        with pytest.raises(InvalidInputError, match="does not index as text"):
            store.search("apple", field_weights={"title": 1.0})
    with HybridStore(path, embedder=EMBEDDER) as store:
        assert store.text_fields == ()


@pytest.mark.parametrize(
    "bad",
    [{}, {"title": -1}, {"title": 0}, {"": 1.0}, {"title": True}, {"title": float("nan")}, [1]],
)
def test_bad_field_weights_name_the_value(bad: Any) -> None:
    with (
        HybridStore(embedder=EMBEDDER, text_fields=["title"]) as store,
        pytest.raises(InvalidInputError, match="field_weights"),
    ):
        store.search("q", field_weights=bad)


def test_field_weights_need_a_backend_that_indexes_fields(tmp_path: Path) -> None:
    from ragkit.backends import ShardedStore
    from ragkit.backends.sharded import LocalHost

    backend = ShardedStore([LocalHost("h0")], partitions=2, heal_interval_s=None)
    with (
        HybridStore(backend=backend, embedder=EMBEDDER) as store,
        pytest.raises(InvalidInputError, match="indexes text fields"),
    ):
        store.search("q", field_weights={"text": 1.0})
    with pytest.raises(InvalidInputError, match="text_fields"):
        LocalShard(text_fields=["text"])
    with pytest.raises(InvalidInputError, match="text_fields"):
        HybridStore(backend=LocalShard(), embedder=EMBEDDER, text_fields=["title"])


def test_titles_weigh_twice_by_default_where_the_store_indexes_them() -> None:
    """``TITLE_FIELD_WEIGHTS`` is the default of a store that indexes ``title`` (the
    measured choice); a store without it, or with other fields only, scores plain BM25."""
    records = (["apple body", "apple apple pie"], [{"title": "apple"}, {"title": "pie"}])
    with (
        HybridStore(embedder=EMBEDDER, text_fields=["title"]) as titled,
        HybridStore(embedder=EMBEDDER, text_fields=["section"]) as sectioned,
        HybridStore(embedder=EMBEDDER) as plain,
    ):
        for store in (titled, sectioned, plain):
            store.add_texts(*records, ids=["t", "p"])
        default = titled.search("apple", mode="lexical")
        weighted = titled.search("apple", mode="lexical", field_weights=TITLE_FIELD_WEIGHTS)
        assert TITLE_FIELD_WEIGHTS == {"text": 1.0, "title": 2.0}
        assert default.ids == weighted.ids == ["t", "p"]  # (the title match wins)
        assert [h.score for h in default] == [h.score for h in weighted]
        for other in (sectioned, plain):
            assert other.search("apple", mode="lexical").ids == ["p", "t"]  # (BM25: tf 2)
        assert titled.search("apple", mode="lexical", field_weights={"text": 1.0}).ids == [
            "p",
            "t",
        ]


def test_a_store_default_applies_and_a_search_overrides_it() -> None:
    with HybridStore(
        embedder=EMBEDDER, text_fields=["title"], field_weights={"title": 1.0}
    ) as store:
        store.add_texts(["plain body", "apple body"], [{"title": "apple"}, {}], ids=["t", "b"])
        assert store.search("apple", mode="lexical").ids == ["t"]
        assert store.search("apple", mode="lexical", field_weights={"text": 1.0}).ids == ["b"]
