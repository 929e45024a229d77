"""A LlamaIndex retriever over a ragkit HybridStore (needs the llamaindex extra)."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, TextNode
from pydantic import Field

from ragkit.grouping import group_info, group_passage
from ragkit.schema import SearchResult
from ragkit.store import HybridStore
from ragkit.stores.llamaindex import record_to_node

_SCORES_KEY = "ragkit"
dispatcher = get_dispatcher(__name__)


class RagkitSearchEvent(BaseEvent):
    """Emitted by ragkit retrievers: mode, hits, latency and cache status of one search."""

    mode: str
    hits: int
    latency_ms: float | None = None
    result_cache_hit: bool = False
    embedding_cache_hit: bool = False
    partial: bool = False
    missing_shards: list[str] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "RagkitSearchEvent"

    @classmethod
    def from_result(cls, result: SearchResult) -> RagkitSearchEvent:
        return cls(
            mode=result.mode.value,
            hits=len(result),
            partial=result.partial,
            missing_shards=list(result.missing_shards),
            **result.info,
        )


class HybridRetriever(BaseRetriever):
    """Hybrid BM25 + vector retrieval from a ragkit ``HybridStore`` as a LlamaIndex retriever.

    Returns ``NodeWithScore`` with the fused score; each node's metadata carries the per-leg
    scores and ranks under ``"ragkit"`` (hidden from the LLM and the embedder). Works in
    ``RetrieverQueryEngine`` and ``QueryFusionRetriever``.

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            from ragkit.retrievers.llamaindex import HybridRetriever
            from llama_index.core.query_engine import RetrieverQueryEngine

            retriever = HybridRetriever(HybridStore("./kb"), k=4)
            nodes = retriever.retrieve("what is reciprocal rank fusion?")
    """

    def __init__(
        self,
        store: HybridStore,
        *,
        k: int = 4,
        mode: str = "hybrid",
        fusion: str | None = None,
        alpha: float | None = None,
        filter: dict[str, Any] | None = None,
        tenant: str | None = None,
        candidates: int | None = None,
        mmr: float | None = None,
        rrf_k: int | None = None,
        field_weights: dict[str, float] | None = None,
        group_by: str | None = None,
        group_size: int = 1,
        expand: int = 0,
        highlight: bool = False,
        decay: dict[str, Any] | None = None,
        rerank: Any = None,
        query_syntax: str = "plain",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.search_args: dict[str, Any] = {
            "k": k,
            "mode": mode,
            "fusion": fusion,
            "alpha": alpha,
            "filter": filter,
            "tenant": tenant,
            "candidates": candidates,
            "mmr": mmr,
            "rrf_k": rrf_k,
            "field_weights": field_weights,
            "group_by": group_by,
            "group_size": group_size,
            "expand": expand,
            "highlight": highlight,
            "decay": decay,
            "rerank": rerank,
            "query_syntax": query_syntax,
        }

    @staticmethod
    def _nodes(result: SearchResult) -> list[NodeWithScore]:
        out = []
        if result.groups is not None:
            for rank, group in enumerate(result.groups, start=1):
                text, _ = group_passage(group)
                node: BaseNode = TextNode(text=text, metadata=dict(group.hits[0].metadata))
                _scores(node, group_info(group, rank, result.scale))
                out.append(NodeWithScore(node=node, score=group.score))
            return out
        for rank, hit in enumerate(result, start=1):
            node = record_to_node(hit.record)
            if hit.window is not None:
                node.set_content(hit.window_text)
            _scores(node, hit.score_info(rank, result.scale))
            out.append(NodeWithScore(node=node, score=hit.score))
        return out

    @dispatcher.span
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = self.store.search(query_bundle.query_str, **self.search_args)
        dispatcher.event(RagkitSearchEvent.from_result(result))
        return self._nodes(result)

    @dispatcher.span
    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = await self.store.asearch(query_bundle.query_str, **self.search_args)
        dispatcher.event(RagkitSearchEvent.from_result(result))
        return self._nodes(result)


def _scores(node: BaseNode, info: dict[str, Any]) -> None:
    """ragkit's scores under ``metadata["ragkit"]``, hidden from the LLM and the embedder."""
    node.metadata[_SCORES_KEY] = info
    for excluded in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
        if _SCORES_KEY not in excluded:
            excluded.append(_SCORES_KEY)
