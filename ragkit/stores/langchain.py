"""ragkit as a LangChain ``VectorStore`` (needs the langchain extra).

A thin translation: Documents <-> Records, LangChain ``Embeddings`` -> a ragkit embedder,
search keyword arguments -> ``HybridStore.search`` parameters. All search work happens in
the HybridStore.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from ragkit.embeddings import Embedder
from ragkit.embeddings.langchain import LangChainEmbedder
from ragkit.errors import InvalidInputError
from ragkit.request import SearchRequest
from ragkit.schema import Hit, SearchResult
from ragkit.store import HybridStore

#: what similarity searches take besides ``k``: every option of ``SearchRequest``
SEARCH_KWARGS = frozenset(SearchRequest.option_names()) - {"k"}


def to_ragkit_embedder(embedding: Embeddings | Embedder | None) -> Embedder | None:
    """Accept a ragkit embedder or any LangChain ``Embeddings``."""
    if embedding is None or isinstance(embedding, Embedder):
        return embedding
    if isinstance(embedding, Embeddings):
        return LangChainEmbedder(embedding)
    raise InvalidInputError(
        f"embedding must be a LangChain Embeddings or a ragkit Embedder, "
        f"got {type(embedding).__name__}"
    )


def hit_to_document(hit: Hit) -> Document:
    record = hit.record
    return Document(page_content=record.text, metadata=dict(record.metadata), id=record.id)


def relevance(hit: Hit, result: SearchResult, alpha: float, rrf_k: int) -> float:
    """A [0, 1] relevance for ``similarity_search_with_relevance_scores``.

    Calibrated hybrid scores (the default) and cosine similarity (dense only, negative as 0)
    are used as they are: a ``score_threshold`` means the same for every query. BM25 alone
    maps to ``s / (s + 1)``; RRF is divided by its best possible score; relative score and
    DBSF are already in [0, 1]. These last three are only ordered within a query.
    """
    if result.scale == "bm25":
        return hit.score / (hit.score + 1.0)
    if result.scale == "rrf":  # the best possible RRF score: rank 1 in both legs
        return min(1.0, hit.score / ((alpha + (1.0 - alpha)) / (rrf_k + 1.0)))
    return max(0.0, min(1.0, hit.score))


class RagkitVectorStore(VectorStore):
    """LangChain vector store over a ragkit ``HybridStore``: hybrid BM25 + vector search.

    Setup:
        .. code-block:: bash

            pip install torch==2.13.0 && pip install "ragkit[local,langchain]"

    Key init args:
        embedding: a LangChain ``Embeddings`` or a ragkit embedder (default: the store's, or
            the offline all-MiniLM-L6-v2 for a new store).
        store: an existing ``HybridStore`` (instead of ``embedding`` / ``path``).
        path: a directory for a persistent store (default: in memory).
        **search defaults: ``mode`` ("hybrid", "dense", "lexical"), ``fusion``, ``alpha``,
            ``candidates``, ``tenant``, ``filter``; any of them can be overridden per call.

    Instantiate:
        .. code-block:: python

            from ragkit.stores.langchain import RagkitVectorStore
            vector_store = RagkitVectorStore(path="./kb")

    Add documents:
        .. code-block:: python

            from langchain_core.documents import Document
            vector_store.add_documents(
                [Document("ragkit fuses BM25 and vectors", metadata={"topic": "ir"})], ids=["1"]
            )

    Delete:
        .. code-block:: python

            vector_store.delete(ids=["1"])

    Search:
        .. code-block:: python

            docs = vector_store.similarity_search("hybrid search", k=4)

    Search with filter:
        .. code-block:: python

            vector_store.similarity_search("hybrid", k=4, filter={"topic": {"$in": ["ir"]}})

    Search with score:
        .. code-block:: python

            for doc, score in vector_store.similarity_search_with_score("hybrid", k=4):
                print(score, doc.page_content)

    Async:
        .. code-block:: python

            docs = await vector_store.asimilarity_search("hybrid search", k=4)

    Use as retriever:
        .. code-block:: python

            retriever = vector_store.as_retriever(search_kwargs={"k": 4})
            retriever.invoke("hybrid search")
    """

    def __init__(
        self,
        embedding: Embeddings | Embedder | None = None,
        *,
        store: HybridStore | None = None,
        path: str | os.PathLike[str] | None = None,
        **search_defaults: Any,
    ) -> None:
        self._check_search_kwargs(search_defaults)
        if store is not None:
            if embedding is not None or path is not None:
                raise InvalidInputError("pass either store=... or embedding/path, not both")
            self.store = store
        else:
            self.store = HybridStore(path, embedder=to_ragkit_embedder(embedding))
        self._lc_embeddings = embedding if isinstance(embedding, Embeddings) else None
        self.search_defaults = search_defaults

    @property
    def embeddings(self) -> Embeddings | None:
        return self._lc_embeddings

    @staticmethod
    def _check_search_kwargs(kwargs: dict[str, Any]) -> None:
        unknown = set(kwargs) - SEARCH_KWARGS
        if unknown:
            raise InvalidInputError(
                f"unknown search arguments {sorted(unknown)}; accepted: {sorted(SEARCH_KWARGS)}"
            )

    def _search_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("score_threshold",)}
        self._check_search_kwargs(kwargs)
        return {**self.search_defaults, **kwargs}

    # ---- writes -------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and store texts; returns their ids. Keyword arguments: ``tenant``, and
        ``batch_size``, which LangChain's ``index()`` passes: validated, and otherwise a hint
        (the whole input is validated before anything is written, then written in the
        store's own transactions of up to 4,096 records)."""
        text_list = list(texts)
        if ids is not None:
            ids = [i if i is not None else uuid.uuid4().hex for i in ids]
        tenant = kwargs.pop("tenant", self.search_defaults.get("tenant"))
        batch_size = kwargs.pop("batch_size", None)
        if kwargs:
            raise InvalidInputError(
                f"unknown add_texts arguments {sorted(kwargs)}; accepted: batch_size, tenant"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        return self.store.add_texts(text_list, metadatas, ids, tenant=tenant)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        import asyncio

        text_list = list(texts)
        return await asyncio.to_thread(
            lambda: self.add_texts(text_list, metadatas, ids=ids, **kwargs)
        )

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by ids and/or ``filter=``; deleting ids that do not exist is not an error."""
        flt = kwargs.pop("filter", None)
        tenant = kwargs.pop("tenant", None)
        if kwargs:
            raise InvalidInputError(f"unknown delete arguments {sorted(kwargs)}")
        self.store.delete(ids, filter=flt, tenant=tenant)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        import asyncio

        return await asyncio.to_thread(lambda: self.delete(ids, **kwargs))

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [
            Document(page_content=r.text, metadata=dict(r.metadata), id=r.id)
            for r in self.store.get(list(ids))
        ]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [
            Document(page_content=r.text, metadata=dict(r.metadata), id=r.id)
            for r in await self.store.aget(list(ids))
        ]

    # ---- search -------------------------------------------------------------------------

    def _search(self, query: str, k: int, kwargs: dict[str, Any]) -> SearchResult:
        return self.store.search(query, k=k, **self._search_args(kwargs))

    def _search_vector(self, vector: list[float], k: int, kwargs: dict[str, Any]) -> SearchResult:
        args = self._search_args(kwargs)
        args.pop("mode", None)
        return self.store.search_by_vector(np.asarray(vector, dtype=np.float32), k=k, **args)

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [hit_to_document(h) for h in self._search(query, k, kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        result = await self.store.asearch(query, k=k, **self._search_args(kwargs))
        return [hit_to_document(h) for h in result]

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents with ragkit's score: fused for hybrid, cosine for dense, BM25 for lexical."""
        return [(hit_to_document(h), h.score) for h in self._search(query, k, kwargs)]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        result = await self.store.asearch(query, k=k, **self._search_args(kwargs))
        return [(hit_to_document(h), h.score) for h in result]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        args = self._search_args(kwargs)
        result = self.store.search(query, k=k, **args)
        alpha = args.get("alpha", self.store.default_alpha)
        rrf_k = args.get("rrf_k", self.store.default_rrf_k)
        return [(hit_to_document(h), relevance(h, result, alpha, rrf_k)) for h in result]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        return [hit_to_document(h) for h in self._search_vector(embedding, k, kwargs)]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        import asyncio

        return await asyncio.to_thread(
            lambda: self.similarity_search_by_vector(embedding, k, **kwargs)
        )

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        args = {**self._search_args(kwargs), "candidates": max(fetch_k, k)}
        result = self.store.search(query, k=k, mmr=lambda_mult, **args)
        return [hit_to_document(h) for h in result]

    async def amax_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        args = {**self._search_args(kwargs), "candidates": max(fetch_k, k)}
        result = await self.store.asearch(query, k=k, mmr=lambda_mult, **args)
        return [hit_to_document(h) for h in result]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        args = {**self._search_args(kwargs), "candidates": max(fetch_k, k)}
        args.pop("mode", None)
        vector = np.asarray(embedding, dtype=np.float32)
        result = self.store.search_by_vector(vector, k=k, mmr=lambda_mult, **args)
        return [hit_to_document(h) for h in result]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda score: score  # relevance is computed per hit, see relevance()

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | Embedder | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> RagkitVectorStore:
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | Embedder | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> RagkitVectorStore:
        store = cls(embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store

    def close(self) -> None:
        self.store.close()
