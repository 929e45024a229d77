"""A deterministic bag-of-words hashing embedder, for tests and examples only."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit.analysis import Analyzer
from ragkit.embeddings.base import Embedder, normalize_rows


class HashingEmbedder(Embedder):
    """Feature-hashing embedder: fast, offline and deterministic across processes.

    **For tests only.** It captures word overlap, not meaning; use ``LocalEmbedder`` (or
    ``OpenAIEmbedder``) for real retrieval.

    Key init args:
        dim: vector dimension (default 256).

    Instantiate:
        .. code-block:: python

            from ragkit.embeddings import HashingEmbedder
            embedder = HashingEmbedder(dim=64)
            vectors = embedder.embed_documents(["hello world"])
    """

    computes_locally = True

    def __init__(self, dim: int = 256) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            from ragkit.errors import InvalidInputError

            raise InvalidInputError(f"HashingEmbedder dim must be an integer >= 2, got {dim!r}")
        self._dim = dim
        self.model_id = f"ragkit/hashing-{dim}"
        self._analyzer = Analyzer()
        self._buckets: dict[str, tuple[int, float]] = {}

    @property
    def dim(self) -> int:
        return self._dim

    def _bucket(self, term: str) -> tuple[int, float]:
        hit = self._buckets.get(term)
        if hit is None:
            digest = hashlib.blake2b(term.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            hit = (value % self._dim, 1.0 if (value >> 63) else -1.0)
            self._buckets[term] = hit
        return hit

    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for term in self._analyzer.tokens(text):
                index, sign = self._bucket(term)
                out[row, index] += sign
            if not out[row].any():  # no indexable words: a fixed non-zero vector
                out[row, 0] = 1.0
        return normalize_rows(out)

    def spec(self) -> dict[str, Any]:
        return {"kind": "hashing", "dim": self._dim}
