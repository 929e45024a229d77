"""The embedder interface every ragkit store uses."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


class Embedder(ABC):
    """Turns text into unit-length float32 vectors.

    Subclasses implement ``embed_documents``; the rest has sensible defaults. ``spec()`` is a
    JSON description persisted with a store, so reopening the store restores the embedder and
    a different model is detected (``embedder_from_spec`` rebuilds it).
    """

    #: stable identifier of the model (persisted; a mismatch on reopen is an error)
    model_id: str
    #: the model computes on this machine's CPU (one call at a time keeps it busiest), not
    #: in a service whose latency concurrent calls hide
    computes_locally: bool = False

    @property
    @abstractmethod
    def dim(self) -> int:
        """Dimension of the vectors."""

    @abstractmethod
    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed passages; returns an array of shape ``(len(texts), dim)``."""

    def embed_query(self, text: str) -> NDArray[np.float32]:
        """Embed one query; returns a vector of shape ``(dim,)``."""
        return np.asarray(self.embed_documents([text])[0], dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed many queries at once (batched)."""
        return self.embed_documents(texts)

    async def aembed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> NDArray[np.float32]:
        return await asyncio.to_thread(self.embed_query, text)

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-serializable constructor description (never contains secrets)."""


def normalize_rows(matrix: NDArray[np.floating]) -> NDArray[np.float32]:
    """Scale each row to unit length (zero rows stay zero)."""
    out = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(out / norms, dtype=np.float32)


class AdapterEmbedder(Embedder):
    """Base for embedders that wrap another library's model: subclasses provide the raw
    calls, this class learns the dimension and normalizes the vectors."""

    _dim: int | None = None

    @abstractmethod
    def _raw_documents(self, texts: list[str]) -> list[list[float]]: ...

    @abstractmethod
    def _raw_query(self, text: str) -> list[float]: ...

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_query("dimension probe").shape[0])
        return self._dim

    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        matrix = normalize_rows(np.asarray(self._raw_documents(list(texts)), dtype=np.float32))
        self._dim = int(matrix.shape[1])
        return matrix

    def embed_query(self, text: str) -> NDArray[np.float32]:
        vector = np.asarray(self._raw_query(text), dtype=np.float32)
        self._dim = int(vector.shape[0])
        return np.asarray(normalize_rows(vector[None, :])[0], dtype=np.float32)
