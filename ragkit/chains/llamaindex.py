"""A LlamaIndex query engine over a HybridStore, with ragkit's citation format."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.response.schema import Response
from llama_index.core.llms import LLM
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore
from pydantic import ConfigDict

from ragkit.chains._extractive import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MIN_SCORE,
    NO_ANSWER,
    extractive_answer,
    number_sources,
    relevant,
)
from ragkit.retrievers.llamaindex import HybridRetriever
from ragkit.store import HybridStore

CITATION_PROMPT = (
    "Answer the question using only the numbered sources below. After each claim, cite the "
    "source it comes from as [n]. If the sources do not contain the answer, say so.\n\n"
    "Sources:\n{context}\n\nQuestion: {question}\nAnswer: "
)


class CitationQueryEngine(CustomQueryEngine):
    """Retrieves with a ragkit ``HybridRetriever`` and answers with ``[n]`` citations that
    point at ``response.source_nodes[n - 1]``; offline extractive when ``llm`` is None.

    Abstains like ``rag_chain``: when no node has a calibrated score of at least
    ``min_score`` the response is ``NO_ANSWER`` and the LLM is not called; otherwise nodes
    scoring at least half the best score are used."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: HybridRetriever
    llm: LLM | None = None
    max_context_chars: int = 6000
    citations: bool = True
    min_score: float | None = DEFAULT_MIN_SCORE
    max_answer_chars: int = DEFAULT_MAX_CHARS

    def _relevant(self, nodes: list[NodeWithScore]) -> list[NodeWithScore]:
        scores = [
            (
                n.node.metadata.get("ragkit", {}).get("score"),
                n.node.metadata.get("ragkit", {}).get("scale"),
            )
            for n in nodes
        ]
        return [nodes[i] for i in relevant(scores, self.min_score)]

    def _extract(self, query_str: str, texts: list[str]) -> str:
        return extractive_answer(
            query_str, texts, citations=self.citations, max_chars=self.max_answer_chars
        )

    def _prompt(self, query_str: str, nodes: list[NodeWithScore]) -> tuple[list[str], str]:
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        context = number_sources(texts, self.max_context_chars)
        return texts, CITATION_PROMPT.format(context=context, question=query_str)

    def custom_query(self, query_str: str) -> Response:
        nodes = self._relevant(self.retriever.retrieve(query_str))
        texts, prompt = self._prompt(query_str, nodes)
        if not nodes:
            answer = NO_ANSWER
        elif self.llm is None:
            answer = self._extract(query_str, texts)
        else:
            answer = str(self.llm.complete(prompt))
        return Response(response=answer, source_nodes=nodes)

    async def acustom_query(self, query_str: str) -> Response:
        nodes = self._relevant(await self.retriever.aretrieve(query_str))
        texts, prompt = self._prompt(query_str, nodes)
        if not nodes:
            answer = NO_ANSWER
        elif self.llm is None:
            answer = self._extract(query_str, texts)
        else:
            answer = str(await self.llm.acomplete(prompt))
        return Response(response=answer, source_nodes=nodes)


def query_engine(
    store: HybridStore,
    llm: LLM | None = None,
    *,
    k: int = 6,
    min_score: float | None = DEFAULT_MIN_SCORE,
    **search_args: Any,
) -> CitationQueryEngine:
    """A LlamaIndex query engine over ``store`` answering with ``[n]`` citations.

    Example:
        .. code-block:: python

            from ragkit.chains.llamaindex import query_engine
            engine = query_engine(store)               # offline extractive answers
            response = engine.query("what does error RK-4012 mean?")
            print(response.response, [n.node.node_id for n in response.source_nodes])
    """
    return CitationQueryEngine(
        retriever=HybridRetriever(store, k=k, **search_args), llm=llm, min_score=min_score
    )
