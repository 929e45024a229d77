"""The hybrid retrievers users build today, on identical precomputed vectors.

- LangChain: ``EnsembleRetriever`` over ``BM25Retriever`` (rank-bm25) and a Chroma vector
  store (in-process), weights 0.5 / 0.5 (its weighted RRF).
- LlamaIndex: ``QueryFusionRetriever`` (reciprocal rerank, one query, no LLM) over the bm25s
  ``BM25Retriever`` and a ``VectorStoreIndex`` (its default in-memory vector store).

Both embed through a lookup table of the same vectors ragkit gets, so only retrieval differs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

warnings.filterwarnings("ignore", category=DeprecationWarning)

Search = Callable[[str], list[str]]


def _langchain_embeddings(table: dict[str, np.ndarray]) -> Any:
    from langchain_core.embeddings import Embeddings

    class Lookup(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [table[t].tolist() for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return table[text].tolist()

    return Lookup()


def langchain_ensemble(
    ids: Sequence[str], texts: Sequence[str], table: dict[str, np.ndarray], k: int
) -> Search:
    import chromadb
    from langchain_chroma import Chroma
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.documents import Document

    docs = [Document(page_content=t, metadata={"id": i}, id=i) for i, t in zip(ids, texts)]
    bm25 = BM25Retriever.from_documents(docs, k=k)
    client = chromadb.EphemeralClient()
    chroma = Chroma(
        client=client,
        collection_name=f"bench{len(docs)}",
        embedding_function=_langchain_embeddings(table),
        collection_metadata={"hnsw:space": "cosine"},
    )
    batch = 5000
    for start in range(0, len(docs), batch):
        chroma.add_documents(docs[start : start + batch], ids=list(ids[start : start + batch]))
    ensemble = EnsembleRetriever(
        retrievers=[bm25, chroma.as_retriever(search_kwargs={"k": k})], weights=[0.5, 0.5]
    )

    def search(query: str) -> list[str]:
        return [d.metadata["id"] for d in ensemble.invoke(query)][:k]

    return search


def llamaindex_fusion(
    ids: Sequence[str],
    texts: Sequence[str],
    table: dict[str, np.ndarray],
    k: int,
    mode: str = "reciprocal_rerank",
) -> Search:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms.mock import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    class Lookup(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return table[query].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return table[query].tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return table[text].tolist()

    nodes = [TextNode(text=t, id_=i, embedding=table[t].tolist()) for i, t in zip(ids, texts)]
    index = VectorStoreIndex(nodes, embed_model=Lookup(), show_progress=False)
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=k)
    fusion = QueryFusionRetriever(
        [index.as_retriever(similarity_top_k=k), bm25],
        similarity_top_k=k,
        num_queries=1,
        mode=mode,  # type: ignore[arg-type]  # reciprocal_rerank or relative_score
        use_async=False,
        llm=MockLLM(),  # one query: no LLM call
    )

    def search(query: str) -> list[str]:
        return [n.node.node_id for n in fusion.retrieve(query)][:k]

    return search
