"""A LangChain retriever over a ragkit HybridStore (needs the langchain extra)."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from ragkit.errors import InvalidInputError
from ragkit.grouping import group_info, group_passage
from ragkit.request import SearchRequest
from ragkit.schema import Group, Hit, SearchResult
from ragkit.store import HybridStore

RAGKIT_EVENT = "ragkit_search"
#: what a call may override: every option of ``SearchRequest`` (each one is a field below)
_PER_CALL = frozenset(SearchRequest.option_names())


def hit_document(hit: Hit, rank: int, scale: str = "calibrated") -> Document:
    """A Document for a hit, with ragkit's scores under ``metadata["ragkit"]``; its text is
    the hit's window (``expand``) where there is one."""
    record = hit.record
    scores = hit.score_info(rank, scale)
    return Document(
        page_content=hit.window_text, metadata={**record.metadata, "ragkit": scores}, id=record.id
    )


def group_document(group: Group, rank: int, scale: str = "calibrated") -> Document:
    """A Document for a group (``group_by``): its chunks joined in source order, the best
    hit's metadata, and under ``metadata["ragkit"]`` the group's key, score and chunk ids."""
    text, _ = group_passage(group)
    metadata = {**group.hits[0].metadata, "ragkit": group_info(group, rank, scale)}
    return Document(page_content=text, metadata=metadata)


class HybridRetriever(BaseRetriever):
    """Hybrid BM25 + vector retrieval from a ragkit ``HybridStore`` as a LangChain retriever.

    Every field can be overridden per call: ``retriever.invoke("q", k=3, filter={...})``.
    Documents carry their id, and the fused and per-leg scores and ranks under
    ``metadata["ragkit"]``. Async is native (``ainvoke`` runs the search off the event loop).

    Setup:
        .. code-block:: bash

            pip install torch==2.13.0 && pip install "ragkit[local,langchain]"

    Key init args:
        store: the ``HybridStore`` to search.
        k: documents to return (default 4).
        mode, fusion, alpha, filter, tenant, candidates, mmr, rrf_k: as in
            ``HybridStore.search`` (``None``: the store's default).
        group_by, group_size: one document per group (its chunks joined, in source order;
            ``metadata["ragkit"]["chunks"]`` lists them).
        expand: each document's text is its chunk with ``expand`` neighbours either side.
        field_weights, highlight, decay, rerank, query_syntax: as in ``HybridStore.search``.

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            from ragkit.retrievers.langchain import HybridRetriever
            retriever = HybridRetriever(store=HybridStore("./kb"), k=4)

    Use:
        .. code-block:: python

            docs = retriever.invoke("what is reciprocal rank fusion?")
            docs[0].metadata["ragkit"]["lexical_rank"]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: HybridStore
    k: int = 4
    mode: str = "hybrid"
    fusion: str | None = None
    alpha: float | None = None
    filter: dict[str, Any] | None = None
    tenant: str | None = None
    candidates: int | None = None
    mmr: float | None = Field(default=None, description="MMR lambda; None disables MMR")
    rrf_k: int | None = Field(default=None, description="the k of RRF fusion (default 60)")
    field_weights: dict[str, float] | None = Field(
        default=None, description="BM25F weights per text field, e.g. {'title': 2, 'text': 1}"
    )
    group_by: str | None = Field(default=None, description="a document per value of this field")
    group_size: int = Field(default=1, description="chunks joined per group")
    expand: int = Field(default=0, description="neighbouring chunks each side of a hit")
    highlight: bool = Field(default=False, description="spans and snippet in metadata")
    decay: dict[str, Any] | None = Field(default=None, description="see ragkit.decay")
    rerank: Any = Field(default=None, description="see ragkit.rerank")
    query_syntax: str = Field(default="plain", description="'simple': phrases, +, -, OR")

    def _params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = set(overrides) - _PER_CALL
        if unknown:
            raise InvalidInputError(
                f"unknown retriever arguments {sorted(unknown)}; accepted: {sorted(_PER_CALL)}"
            )
        params = {name: getattr(self, name) for name in _PER_CALL}
        params.update(overrides)
        return params

    @staticmethod
    def _documents(result: SearchResult) -> list[Document]:
        if result.groups is not None:
            return [
                group_document(g, rank, result.scale)
                for rank, g in enumerate(result.groups, start=1)
            ]
        return [hit_document(h, rank, result.scale) for rank, h in enumerate(result, start=1)]

    @staticmethod
    def _event(result: SearchResult) -> dict[str, Any]:
        return {
            **result.info,
            "mode": result.mode.value,
            "hits": len(result),
            "partial": result.partial,
            "missing_shards": list(result.missing_shards),
        }

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        result = self.store.search(query, **self._params(kwargs))
        # ragkit's timings and cache status reach LangChain callbacks as a custom event.
        dispatch_custom_event(
            RAGKIT_EVENT, self._event(result), config={"callbacks": run_manager.get_child()}
        )
        return self._documents(result)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        result = await self.store.asearch(query, **self._params(kwargs))
        await adispatch_custom_event(
            RAGKIT_EVENT, self._event(result), config={"callbacks": run_manager.get_child()}
        )
        return self._documents(result)
