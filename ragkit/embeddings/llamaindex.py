"""Embedders across the LlamaIndex boundary, both ways (needs the llamaindex extra)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from numpy.typing import NDArray
from pydantic import ConfigDict, PrivateAttr

from ragkit.embeddings.base import Embedder, normalize_rows


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


class LlamaIndexEmbedder(Embedder):
    """A LlamaIndex embed model as a ragkit embedder."""

    def __init__(self, embed_model: BaseEmbedding) -> None:
        self.embed_model = embed_model
        self.model_id = f"llamaindex:{type(embed_model).__name__}:{embed_model.model_name}"
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_query("dimension probe").shape[0])
        return self._dim

    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        matrix = normalize_rows(np.asarray(self.embed_model.get_text_embedding_batch(list(texts))))
        self._dim = int(matrix.shape[1])
        return matrix

    def embed_query(self, text: str) -> NDArray[np.float32]:
        vector = np.asarray(self.embed_model.get_query_embedding(text), dtype=np.float32)
        return np.asarray(normalize_rows(vector[None, :])[0], dtype=np.float32)

    def spec(self) -> dict[str, Any]:
        return {"kind": "llamaindex", "model_id": self.model_id}
