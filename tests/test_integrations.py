"""LangChain and LlamaIndex components beyond the standard suites: parity with HybridStore,
filters, scores, chains."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import QueryFusionRetriever

from ragkit import HybridStore, RagkitError
from ragkit.chains import multi_query_retriever, rag_chain
from ragkit.chains._extractive import cited_numbers
from ragkit.chains.llamaindex import query_engine
from ragkit.embeddings import LocalEmbedder
from ragkit.ingest.sources import read_source
from ragkit.retrievers.langchain import HybridRetriever as LCRetriever
from ragkit.retrievers.llamaindex import HybridRetriever as LIRetriever
from ragkit.stores.langchain import RagkitVectorStore

DEMO = Path(__file__).resolve().parents[1] / "cookbook" / "data" / "demo_corpus.jsonl"


@pytest.fixture(scope="module")
def demo_store(local_embedder: LocalEmbedder) -> Iterator[HybridStore]:
    docs = list(read_source(DEMO))
    with HybridStore(embedder=local_embedder) as store:
        store.add_texts([d.text for d in docs], [d.metadata for d in docs], [d.id for d in docs])
        yield store


def queries() -> list[str]:
    words = []
    for doc in read_source(DEMO):
        words.extend(doc.text.split()[:12])
    return [" ".join(words[i : i + 4]) for i in range(0, 240, 4)] + [
        "what does RK-4012 mean",
        "why is the sky blue",
        "bread will not rise",
        '"quoted" AND (x)',
    ]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"mode": "dense"},
        {"mode": "lexical"},
        {"fusion": "rrf"},
        {"fusion": "dbsf", "alpha": 0.3},
        {"filter": {"topic": {"$in": ["search", "cooking"]}}},
    ],
    ids=["hybrid", "dense", "lexical", "rrf", "dbsf", "filtered"],
)
def test_both_retrievers_return_exactly_what_the_store_returns(
    demo_store: HybridStore, params: dict
) -> None:
    lc = LCRetriever(store=demo_store, k=5, **params)
    li = LIRetriever(demo_store, k=5, **params)
    for query in queries():
        expected = demo_store.search(query, k=5, **params)
        assert [d.id for d in lc.invoke(query)] == expected.ids, query
        li_nodes = li.retrieve(query)
        assert [n.node.node_id for n in li_nodes] == expected.ids, query
        assert [n.score for n in li_nodes] == pytest.approx([h.score for h in expected])


def test_langchain_documents_carry_per_leg_scores(demo_store: HybridStore) -> None:
    doc = LCRetriever(store=demo_store, k=1).invoke("what does error RK-4012 mean")[0]
    assert doc.id == "ops-01"
    scores = doc.metadata["ragkit"]
    assert scores["rank"] == 1 and scores["lexical_rank"] == 1 and scores["dense_rank"] is not None
    assert doc.metadata["topic"] == "operations"


async def test_retrievers_are_natively_async(demo_store: HybridStore) -> None:
    query = "why is the sky blue"
    expected = demo_store.search(query, k=3).ids
    assert [d.id for d in await LCRetriever(store=demo_store, k=3).ainvoke(query)] == expected
    nodes = await LIRetriever(demo_store, k=3).aretrieve(query)
    assert [n.node.node_id for n in nodes] == expected


def test_retriever_rejects_unknown_arguments(demo_store: HybridStore) -> None:
    with pytest.raises(RagkitError, match="unknown retriever arguments"):
        LCRetriever(store=demo_store).invoke("x", top_n=3)


def test_llamaindex_retriever_in_query_engine_and_fusion(demo_store: HybridStore) -> None:
    retriever = LIRetriever(demo_store, k=3)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query("what does error RK-4012 mean")
    assert response.source_nodes[0].node.node_id == "ops-01"
    assert "ragkit" not in response.source_nodes[0].node.get_content(metadata_mode="llm")
    fusion = QueryFusionRetriever(
        [retriever, LIRetriever(demo_store, k=3, mode="lexical")],
        llm=MockLLM(),
        num_queries=1,
        use_async=False,
        similarity_top_k=3,
    )
    assert fusion.retrieve("what does error RK-4012 mean")[0].node.node_id == "ops-01"


# ---- the LangChain vector store ------------------------------------------------------------


@pytest.fixture
def vector_store() -> Iterator[RagkitVectorStore]:
    store = RagkitVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_texts(
        ["keyword search with BM25", "vector search with embeddings", "cooking pasta at home"],
        metadatas=[{"topic": "ir", "n": 1}, {"topic": "ir", "n": 2}, {"topic": "food", "n": 3}],
        ids=["k", "v", "c"],
    )
    yield store
    store.close()


def test_vector_store_filters_use_the_ragkit_language(vector_store: RagkitVectorStore) -> None:
    docs = vector_store.similarity_search("search", k=3, filter={"n": {"$gte": 2}})
    assert {d.id for d in docs} == {"v", "c"}
    assert vector_store.similarity_search("search", k=3, filter={"topic": "food"})[0].id == "c"


def test_vector_store_scores_and_relevance(vector_store: RagkitVectorStore) -> None:
    scored = vector_store.similarity_search_with_score("keyword BM25", k=3)
    assert scored[0][0].id == "k"
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)
    for mode in ("hybrid", "dense", "lexical"):
        relevant = vector_store.similarity_search_with_relevance_scores(
            "BM25 search", k=3, mode=mode
        )
        assert all(0.0 <= s <= 1.0 for _, s in relevant), mode


def test_vector_store_defaults_and_per_call_overrides(vector_store: RagkitVectorStore) -> None:
    lexical = RagkitVectorStore(store=vector_store.store, mode="lexical")
    assert [d.id for d in lexical.similarity_search("pasta", k=3)] == ["c"]
    assert len(lexical.similarity_search("pasta", k=3, mode="dense")) == 3
    with pytest.raises(RagkitError, match="unknown search arguments"):
        vector_store.similarity_search("x", k=1, where={"a": 1})


def test_vector_store_by_vector_mmr_and_retriever(vector_store: RagkitVectorStore) -> None:
    embedding = DeterministicFakeEmbedding(size=16).embed_query("cooking pasta at home")
    assert vector_store.similarity_search_by_vector(embedding, k=1)[0].id == "c"
    assert len(vector_store.max_marginal_relevance_search("search", k=2, fetch_k=3)) == 2
    assert len(vector_store.max_marginal_relevance_search_by_vector(embedding, k=2)) == 2
    retriever = vector_store.as_retriever(search_kwargs={"k": 1, "filter": {"topic": "food"}})
    assert [d.id for d in retriever.invoke("search")] == ["c"]


def test_vector_store_delete_by_filter_and_from_documents(tmp_path: Path) -> None:
    docs = [
        Document("alpha text", metadata={"g": 1}, id="a"),
        Document("beta text", metadata={"g": 2}),
    ]
    store = RagkitVectorStore.from_documents(
        docs, DeterministicFakeEmbedding(size=8), path=tmp_path / "kb"
    )
    assert store.get_by_ids(["a"])[0].page_content == "alpha text"
    store.delete(filter={"g": 2})
    assert store.store.count() == 1
    with pytest.raises(RagkitError, match="ids or a filter"):
        store.delete()
    store.close()
    reopened = RagkitVectorStore(DeterministicFakeEmbedding(size=8), path=tmp_path / "kb")
    assert [d.id for d in reopened.similarity_search("alpha", k=5)] == ["a"]
    reopened.close()


def test_vector_store_accepts_a_ragkit_embedder(local_embedder: LocalEmbedder) -> None:
    store = RagkitVectorStore(local_embedder)
    store.add_texts(["The feline slept.", "Interest rates rose."], ids=["cat", "rates"])
    assert store.similarity_search("a cat napping", k=1, mode="dense")[0].id == "cat"
    assert store.embeddings is None
    store.close()


# ---- chains ----------------------------------------------------------------------------------


def test_offline_rag_chain_cites_its_sources(demo_store: HybridStore) -> None:
    chain = rag_chain(LCRetriever(store=demo_store, k=4))
    out = chain.invoke({"question": "what does error RK-4012 mean?"})
    numbers = cited_numbers(out["answer"])
    assert numbers and out["sources"][numbers[0] - 1].id == "ops-01"
    assert "locked by another process" in out["answer"]
    plain = rag_chain(LCRetriever(store=demo_store, k=4), citations=False).invoke("RK-4012")
    assert cited_numbers(plain["answer"]) == []


def test_rag_chain_streams_the_models_tokens(demo_store: HybridStore) -> None:
    llm = GenericFakeChatModel(messages=iter([AIMessage(content="The store is locked [1].")]))
    chunks = list(rag_chain(LCRetriever(store=demo_store, k=2), llm).stream("RK-4012?"))
    answer_chunks = [c["answer"] for c in chunks if "answer" in c]
    assert len(answer_chunks) > 1
    assert "".join(answer_chunks) == "The store is locked [1]."
    sources = next(c["sources"] for c in chunks if "sources" in c)
    assert sources[0].id == "ops-01"


def test_multi_query_retriever_fuses_rewrites(demo_store: HybridStore) -> None:
    llm = GenericFakeChatModel(
        messages=iter([AIMessage(content="Rayleigh scattering\nbread yeast")])
    )
    retriever = multi_query_retriever(
        LCRetriever(store=demo_store, k=2, mode="lexical"), llm, n=2, k=6
    )
    ids = [d.id for d in retriever.invoke("RK-4012")]
    assert ids[0] == "ops-01"
    assert {"astro-01", "cook-03"} <= set(ids)


def test_llamaindex_query_engine_uses_the_same_citation_format(demo_store: HybridStore) -> None:
    response = query_engine(demo_store, k=4).query("what does error RK-4012 mean?")
    numbers = cited_numbers(str(response))
    assert response.source_nodes[numbers[0] - 1].node.node_id == "ops-01"
