"""Embedders across the LlamaIndex boundary, both ways (needs the llamaindex extra)."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import ConfigDict, PrivateAttr

from ragkit.embeddings.base import AdapterEmbedder, Embedder


class RagkitEmbedding(BaseEmbedding):
    """A ragkit embedder as a LlamaIndex embed model, e.g. offline MiniLM for an index::

    from llama_index.core import Settings
    Settings.embed_model = RagkitEmbedding(LocalEmbedder())
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.model_id, **kwargs)
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in self._embedder.embed_query(query)]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in await self._embedder.aembed_query(query)]

    def _get_text_embedding(self, text: str) -> list[float]:
        return [float(x) for x in self._embedder.embed_documents([text])[0]]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._embedder.embed_documents(texts)]


class LlamaIndexEmbedder(AdapterEmbedder):
    """A LlamaIndex embed model as a ragkit embedder."""

    def __init__(self, embed_model: BaseEmbedding) -> None:
        self.embed_model = embed_model
        self.model_id = f"llamaindex:{type(embed_model).__name__}:{embed_model.model_name}"

    def _raw_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_model.get_text_embedding_batch(texts)

    def _raw_query(self, text: str) -> list[float]:
        return self.embed_model.get_query_embedding(text)

    def spec(self) -> dict[str, Any]:
        return {"kind": "llamaindex", "model_id": self.model_id}
