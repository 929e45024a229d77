"""ragkit as a LlamaIndex vector store (needs the llamaindex extra).

Nodes are stored as ragkit records: the node id is the record id, the node's text (without
metadata) is what BM25 and the embedder see, and LlamaIndex's node payload (relationships,
ref_doc_id, ...) rides along in the record's metadata, so nodes come back whole.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
from pydantic import PrivateAttr

from ragkit.embeddings import Embedder
from ragkit.embeddings.llamaindex import LlamaIndexEmbedder, RagkitEmbedding
from ragkit.errors import InvalidInputError
from ragkit.filters import matches, parse_filter
from ragkit.schema import Record, SearchResult
from ragkit.store import HybridStore
from ragkit.stores._llamaindex_filters import translate_filters

_QUERY_MODES = {
    VectorStoreQueryMode.DEFAULT: "dense",
    VectorStoreQueryMode.SPARSE: "lexical",
    VectorStoreQueryMode.TEXT_SEARCH: "lexical",
    VectorStoreQueryMode.HYBRID: "hybrid",
    VectorStoreQueryMode.MMR: "dense",
}


def as_embedder(embed_model: BaseEmbedding | Embedder | None) -> Embedder | None:
    """A ragkit embedder for a LlamaIndex embed model. A ``RagkitEmbedding`` is unwrapped:
    the store records the ragkit embedder itself, so it reopens with ``path=`` alone."""
    if isinstance(embed_model, RagkitEmbedding):
        return embed_model.embedder
    if isinstance(embed_model, BaseEmbedding):
        return LlamaIndexEmbedder(embed_model)
    return embed_model


def record_to_node(record: Record) -> BaseNode:
    """The LlamaIndex node a record holds (a plain TextNode for records written elsewhere)."""
    if "_node_content" in record.metadata:
        return metadata_dict_to_node(record.metadata, text=record.text)
    return TextNode(id_=record.id, text=record.text, metadata=dict(record.metadata))


class RagkitVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store over a ragkit ``HybridStore``: dense, BM25, hybrid and MMR.

    Setup:
        .. code-block:: bash

            pip install torch==2.13.0 && pip install "ragkit[local,llamaindex]"

    Key init args:
        store: an existing ``HybridStore`` (or ``path`` for a new or persistent one).
        embed_model: the LlamaIndex embed model the index uses (so vectors and query vectors
            match); default: the store's ragkit embedder.

    Instantiate:
        .. code-block:: python

            from llama_index.core import StorageContext, VectorStoreIndex
            from ragkit.embeddings import LocalEmbedder
            from ragkit.embeddings.llamaindex import RagkitEmbedding
            from ragkit.stores.llamaindex import RagkitVectorStore

            vector_store = RagkitVectorStore(path="./kb")
            embed_model = RagkitEmbedding(LocalEmbedder())
            index = VectorStoreIndex.from_documents(
                docs, storage_context=StorageContext.from_defaults(vector_store=vector_store),
                embed_model=embed_model,
            )

    Search:
        .. code-block:: python

            retriever = index.as_retriever(vector_store_query_mode="hybrid", alpha=0.5)
            engine = index.as_query_engine(vector_store_query_mode="hybrid")

    Search with filter:
        .. code-block:: python

            from llama_index.core.vector_stores import MetadataFilters, MetadataFilter
            only_ir = MetadataFilters(filters=[MetadataFilter(key="topic", value="ir")])
            index.as_retriever(filters=only_ir)

    Async:
        .. code-block:: python

            nodes = await index.as_retriever().aretrieve("hybrid search")
    """

    stores_text: bool = True
    flat_metadata: bool = False
    _store: HybridStore = PrivateAttr()

    def __init__(
        self,
        store: HybridStore | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        embed_model: BaseEmbedding | Embedder | None = None,
    ) -> None:
        super().__init__(stores_text=True)
        if store is not None and (path is not None or embed_model is not None):
            raise InvalidInputError("pass either store=... or path/embed_model, not both")
        if store is None:
            store = HybridStore(path, embedder=as_embedder(embed_model))
        self._store = store

    @classmethod
    def class_name(cls) -> str:
        return "RagkitVectorStore"

    @property
    def client(self) -> HybridStore:
        return self._store

    # ---- writes -------------------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        records = [
            Record(
                node.node_id,
                node.get_content(metadata_mode=MetadataMode.NONE),
                node_to_metadata_dict(node, remove_text=True, flat_metadata=False),
                None if node.embedding is None else np.asarray(node.embedding, np.float32),
                add_kwargs.get("tenant"),
            )
            for node in nodes
        ]
        self._store.upsert(records)
        return [r.id for r in records]

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        self._store.delete(filter={"ref_doc_id": ref_doc_id}, tenant=delete_kwargs.get("tenant"))

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        flt = translate_filters(filters)
        if node_ids is None and flt is None:
            raise InvalidInputError("delete_nodes needs node_ids or filters; use clear() for all")
        self._store.delete(node_ids, filter=flt, tenant=delete_kwargs.get("tenant"))

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    def clear(self) -> None:
        self._store.clear()

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    # ---- reads --------------------------------------------------------------------------

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        flt = translate_filters(filters)
        if node_ids is None:
            node_ids = self._store.ids(flt)
            records = self._store.get(node_ids)
        else:
            parsed = parse_filter(flt)
            records = [r for r in self._store.get(node_ids) if matches(parsed, r.metadata)]
        return [record_to_node(r) for r in records]

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    def _run(self, query: VectorStoreQuery, **kwargs: Any) -> SearchResult:
        mode = _QUERY_MODES.get(query.mode)
        if mode is None:
            accepted = ", ".join(m.value for m in _QUERY_MODES)
            raise InvalidInputError(
                f"query mode {query.mode.value!r} is not supported by ragkit; accepted: {accepted}"
            )
        if query.node_ids:
            raise InvalidInputError("restricting a query to node_ids is not supported; use filters")
        flt = translate_filters(query.filters)
        if query.doc_ids:
            doc_filter = {"ref_doc_id": {"$in": list(query.doc_ids)}}
            flt = doc_filter if flt is None else {"$and": [flt, doc_filter]}
        args: dict[str, Any] = {"filter": flt, "tenant": kwargs.get("tenant")}
        k = query.similarity_top_k
        if mode == "lexical":
            k = query.sparse_top_k or k
        elif mode == "hybrid":
            k = query.hybrid_top_k or k
            if query.alpha is not None:
                args["alpha"] = query.alpha
            if query.sparse_top_k:
                args["candidates"] = max(query.similarity_top_k, query.sparse_top_k)
        if query.mode is VectorStoreQueryMode.MMR:
            args["mmr"] = 0.5 if query.mmr_threshold is None else query.mmr_threshold
        vector = query.query_embedding
        if mode == "lexical" or vector is None:
            if not query.query_str:
                raise InvalidInputError(f"a {mode} query needs query_str or a query embedding")
            return self._store.search(query.query_str, k=k, mode=mode, **args)
        if mode == "hybrid" and query.query_str:
            args["query"] = query.query_str
        return self._store.search_by_vector(np.asarray(vector, np.float32), k=k, **args)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        result = self._run(query, **kwargs)
        return VectorStoreQueryResult(
            nodes=[record_to_node(hit.record) for hit in result],
            similarities=[hit.score for hit in result],
            ids=[hit.id for hit in result],
        )

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)
