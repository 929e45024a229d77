"""RAG chains built on ragkit retrievers (LangChain LCEL; LlamaIndex in ``.llamaindex``)."""

from ragkit.chains.multi_query import MultiQueryRetriever, multi_query_retriever
from ragkit.chains.rag import rag_chain

__all__ = ["MultiQueryRetriever", "multi_query_retriever", "rag_chain"]
