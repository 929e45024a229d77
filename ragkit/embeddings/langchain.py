"""Use a LangChain ``Embeddings`` object as a ragkit embedder (needs the langchain extra)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ragkit.embeddings.base import AdapterEmbedder, normalize_rows

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings


def _model_name(embeddings: Embeddings) -> str:
    for attr in ("model", "model_name", "size"):
        value = getattr(embeddings, attr, None)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return f"{type(embeddings).__name__}:{value}"
    return type(embeddings).__name__


class LangChainEmbedder(AdapterEmbedder):
    """Wraps any LangChain ``Embeddings`` (OpenAI, HuggingFace, fakes in tests, ...).

    The dimension is learned from the first embedding. A store built with it records the
    model's class and name; reopening that store needs the same embeddings passed again.
    """

    def __init__(self, embeddings: Embeddings) -> None:
        self.embeddings = embeddings
        self.model_id = f"langchain:{_model_name(embeddings)}"

    def _raw_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embeddings.embed_documents(texts)

    def _raw_query(self, text: str) -> list[float]:
        return self.embeddings.embed_query(text)

    async def aembed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return self.embed_documents([])
        return normalize_rows(np.asarray(await self.embeddings.aembed_documents(list(texts))))

    async def aembed_query(self, text: str) -> NDArray[np.float32]:
        vector = np.asarray(await self.embeddings.aembed_query(text), dtype=np.float32)
        return np.asarray(normalize_rows(vector[None, :])[0], dtype=np.float32)

    def spec(self) -> dict[str, Any]:
        return {"kind": "langchain", "model_id": self.model_id}
