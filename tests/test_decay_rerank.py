"""Search that answers with documents, acceptance 5: decay with fixed dates and a
deterministic reranker, on the store and through the LangChain and LlamaIndex retrievers."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from ragkit import HybridStore
from ragkit.decay import Decay
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import InvalidInputError
from ragkit.schema import Hit

DATES = {"jan": "2026-01-01", "jun": "2026-06-01", "nov": "2026-11-01", "undated": None}
ORIGIN = "2026-12-01T00:00:00Z"


@pytest.fixture
def store() -> Iterator[HybridStore]:
    with HybridStore(embedder=HashingEmbedder(dim=16)) as s:
        # The same text everywhere: equal fused scores, so only decay or rerank orders them.
        s.add_texts(
            ["release notes for the search engine"] * 4,
            [{"published": d, "n": i} if d else {"n": i} for i, d in enumerate(DATES.values())],
            ids=list(DATES),
        )
        yield s


def _days(a: str, b: str) -> float:
    from ragkit.decay import parse_date

    return abs((parse_date(a) or 0) - (parse_date(b) or 0)) / 86400


@pytest.mark.parametrize(
    ("shape", "curve"),
    [
        ("exp", lambda d: 0.5 ** (d / 30)),
        ("gauss", lambda d: 0.5 ** ((d / 30) ** 2)),
        ("linear", lambda d: max(0.0, 1 - 0.5 * d / 30)),
    ],
)
def test_decay_multiplies_the_fused_score_by_the_curve(
    store: HybridStore, shape: str, curve: Any
) -> None:
    decay = {"field": "published", "origin": ORIGIN, "scale": "30d", "shape": shape}
    plain = {hit.id: hit.score for hit in store.search("search engine", k=4)}
    result = store.search("search engine", k=4, decay=decay)
    for hit in result:
        want = 1.0 if hit.id == "undated" else curve(_days(DATES[hit.id] or "", ORIGIN))
        assert hit.decay == pytest.approx(want, rel=1e-9)
        assert hit.fused_score == pytest.approx(plain[hit.id])
        assert hit.score == pytest.approx(plain[hit.id] * want)
    assert result.ids[:2] == ["undated", "nov"]  # no date: no penalty (missing=1.0)
    assert [h.score for h in result] == sorted((h.score for h in result), reverse=True)


def test_decay_on_numbers_with_an_offset_and_a_missing_factor(store: HybridStore) -> None:
    decay = {"field": "n", "origin": 3, "scale": 2, "offset": 1, "decay": 0.25}
    result = store.search("search engine", k=4, decay=decay)
    factors = {hit.id: hit.decay for hit in result}
    # n = 0, 1, 2, 3 -> distance beyond the offset 2, 1, 0, 0 (scale 2)
    assert factors == pytest.approx(
        {"jan": 0.25, "jun": 0.25**0.5, "nov": 1.0, "undated": 1.0}, rel=1e-9
    )
    dated = store.search("search engine", k=4, decay={**decay, "field": "published",
                                                      "origin": ORIGIN, "scale": "1d",
                                                      "offset": 0, "missing": 0.0})  # fmt: skip
    assert dated[-1].id == "undated" and dated[-1].score == 0.0


def test_decay_origin_now_uses_the_clock(store: HybridStore) -> None:
    decay = Decay.parse({"field": "published", "scale": "30d"})
    assert decay.origin is None
    now = Decay.parse({"field": "published", "origin": ORIGIN, "scale": "30d"}).origin
    assert now is not None
    assert decay.factor({"published": ORIGIN}, now) == 1.0
    assert math.isclose(decay.factor({"published": "2026-11-01T00:00:00Z"}, now), 0.5)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"field": "published", "scale": "30 days"}, "scale"),
        ({"field": "published", "scale": "0d"}, "scale"),
        ({"field": "published", "scale": "30d", "shape": "cubic"}, "shape"),
        ({"field": "published", "scale": "30d", "origin": "yesterday"}, "origin"),
        ({"field": "", "scale": "30d"}, "field"),
        ({"field": "n", "origin": 1, "scale": 2, "decay": 1.0}, "decay"),
        ({"field": "n", "origin": 1, "scale": 2, "halflife": 3}, "unknown keys"),
        ({"field": "n", "origin": 1}, "scale"),
        ("30d", "decay must be a dict"),
    ],
)
def test_bad_decay_names_the_value(store: HybridStore, spec: Any, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        store.search("q", decay=spec)


def by_number(query: str, hits: Sequence[Hit]) -> list[float]:
    """Deterministic: the record with the highest ``n`` first."""
    return [float(hit.metadata["n"]) for hit in hits]


def test_a_callable_reranks_and_hits_keep_the_fused_score(store: HybridStore) -> None:
    plain = {hit.id: hit.score for hit in store.search("search engine", k=4)}
    result = store.search("search engine", k=2, rerank=by_number)
    assert result.ids == ["undated", "nov"] and result.scale == "rerank"
    for hit in result:
        assert hit.rerank_score == hit.score == float(hit.metadata["n"])
        assert hit.fused_score == pytest.approx(plain[hit.id])


def test_rerank_after_decay_keeps_the_decayed_fused_score(store: HybridStore) -> None:
    decay = {"field": "published", "origin": ORIGIN, "scale": "30d"}
    decayed = {h.id: h for h in store.search("search engine", k=4, decay=decay)}
    for hit in store.search("search engine", k=4, decay=decay, rerank=by_number):
        assert hit.fused_score == pytest.approx(decayed[hit.id].fused_score)
        assert hit.decay == pytest.approx(decayed[hit.id].decay)


def test_a_reranker_returning_the_wrong_count_is_a_clear_error(store: HybridStore) -> None:
    with pytest.raises(InvalidInputError, match="one score per hit"):
        store.search("search engine", rerank=lambda q, hits: [1.0])
    with pytest.raises(InvalidInputError, match=r"rerank=.*accepted"):
        store.search("search engine", rerank=42)


def test_a_langchain_document_compressor_reranks(store: HybridStore) -> None:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document

    class KeepOddNumbers(BaseDocumentCompressor):
        """Drops even ``n``; scores the rest by ``n`` (as Cohere's or FlashRank's do)."""

        def compress_documents(
            self, documents: Sequence[Document], query: str, callbacks: Callbacks = None
        ) -> Sequence[Document]:
            kept = [d for d in documents if d.metadata["n"] % 2]
            for d in kept:
                d.metadata["relevance_score"] = d.metadata["n"] / 10
            return sorted(kept, key=lambda d: -d.metadata["n"])

    result = store.search("search engine", k=4, rerank=KeepOddNumbers())
    assert result.ids == ["undated", "jun"]
    assert [h.rerank_score for h in result] == [0.3, 0.1]


def test_a_llamaindex_postprocessor_reranks(store: HybridStore) -> None:
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import NodeWithScore, QueryBundle

    class ByNumber(BaseNodePostprocessor):
        def _postprocess_nodes(
            self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
        ) -> list[NodeWithScore]:
            for node in nodes:
                node.score = -float(node.node.metadata["n"])
            return sorted(nodes, key=lambda n: -(n.score or 0))

    result = store.search("search engine", k=4, rerank=ByNumber())
    assert result.ids == ["jan", "jun", "nov", "undated"]
    assert [h.rerank_score for h in result] == [0.0, -1.0, -2.0, -3.0]


def test_a_cross_encoder_from_a_local_path_reranks(store: HybridStore, tmp_path: Any) -> None:
    """A cross-encoder saved on disk (built here from the bundled MiniLM, its head seeded):
    the hits come back in the order of its own scores."""
    torch = pytest.importorskip("torch")
    from sentence_transformers import CrossEncoder

    from ragkit.embeddings.local import _bundled_model_path
    from ragkit.rerank import CrossEncoderReranker

    torch.manual_seed(0)
    model = CrossEncoder(str(_bundled_model_path()), num_labels=1, device="cpu")
    model.save(str(tmp_path / "ce"))
    with HybridStore(embedder=HashingEmbedder(dim=16)) as s:
        texts = ["hybrid search", "a recipe for bread", "vector databases", "bm25 ranking"]
        s.add_texts(texts, ids=["a", "b", "c", "d"])
        result = s.search("search ranking", k=4, rerank=str(tmp_path / "ce"))
        scores = CrossEncoderReranker(str(tmp_path / "ce"))("search ranking", result.hits)
        assert [h.rerank_score for h in result] == pytest.approx(scores, rel=1e-5)
        assert [h.rerank_score for h in result] == sorted(scores, reverse=True)
    with pytest.raises(InvalidInputError, match="not a directory"):
        store.search("q", rerank=str(tmp_path / "missing"))


def test_retrievers_pass_decay_and_rerank_through(store: HybridStore) -> None:
    from llama_index.core.schema import QueryBundle

    from ragkit.retrievers.langchain import HybridRetriever as LangChainRetriever
    from ragkit.retrievers.llamaindex import HybridRetriever as LlamaIndexRetriever

    decay = {"field": "published", "origin": ORIGIN, "scale": "30d"}
    want = store.search("search engine", k=3, decay=decay, rerank=by_number)
    docs = LangChainRetriever(store=store, k=3, decay=decay, rerank=by_number).invoke(
        "search engine"
    )
    assert [d.id for d in docs] == want.ids
    for doc, hit in zip(docs, want):
        info = doc.metadata["ragkit"]
        assert (info["score"], info["rerank_score"]) == (hit.score, hit.rerank_score)
        assert info["decay"] == pytest.approx(hit.decay)
        assert info["fused_score"] == pytest.approx(hit.fused_score)
    per_call = LangChainRetriever(store=store, k=3).invoke("search engine", decay=decay)
    assert [d.id for d in per_call] == store.search("search engine", k=3, decay=decay).ids
    nodes = LlamaIndexRetriever(store, k=3, decay=decay, rerank=by_number).retrieve(
        QueryBundle("search engine")
    )
    assert [n.node.node_id for n in nodes] == want.ids
    assert [n.score for n in nodes] == [h.score for h in want]
    assert nodes[0].node.metadata["ragkit"]["rerank_score"] == want[0].rerank_score
