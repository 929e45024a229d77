"""Embedders: local MiniLM (default), OpenAI-compatible services, and a hashing one for tests."""

from __future__ import annotations

from typing import Any

from ragkit.embeddings.base import Embedder
from ragkit.embeddings.hashing import HashingEmbedder
from ragkit.embeddings.local import LocalEmbedder
from ragkit.embeddings.openai import OpenAIEmbedder
from ragkit.errors import StoreError

__all__ = ["Embedder", "HashingEmbedder", "LocalEmbedder", "OpenAIEmbedder", "embedder_from_spec"]


def embedder_from_spec(spec: dict[str, Any]) -> Embedder:
    """Rebuild an embedder from the ``spec()`` a store persisted."""
    kind = spec.get("kind")
    if kind == "hashing":
        return HashingEmbedder(dim=int(spec["dim"]))
    if kind == "local":
        return LocalEmbedder(model_path=spec.get("model_path"))
    if kind == "openai":
        return OpenAIEmbedder(
            spec["model"], base_url=spec.get("base_url"), dimensions=spec.get("dimensions")
        )
    raise StoreError(
        f"the store was built with embedder {spec!r}, which ragkit cannot rebuild by itself; "
        "pass the same embedder (or LangChain embeddings) again when opening it"
    )
