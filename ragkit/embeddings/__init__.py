"""Embedders: local MiniLM (default), OpenAI-compatible services, and a hashing one for tests."""

from __future__ import annotations

from typing import Any

from ragkit.embeddings.base import Embedder
from ragkit.embeddings.hashing import HashingEmbedder
from ragkit.embeddings.local import LocalEmbedder
from ragkit.embeddings.openai import OpenAIEmbedder
from ragkit.errors import StoreError

__all__ = ["Embedder", "HashingEmbedder", "LocalEmbedder", "OpenAIEmbedder", "embedder_from_spec"]


def embedder_from_spec(spec: dict[str, Any], *, trusted: bool = False) -> Embedder:
    """Rebuild an embedder from the ``spec()`` a store persisted.

    A store directory is data, not configuration: unless ``trusted``, ragkit rebuilds only the
    bundled offline model (and the test embedder) from it. An embedding service named by the
    directory would receive your API key and your queries; a model path named by it would be
    loaded and may run code. For those, pass the embedder when opening the store, or
    ``trust_stored_embedder=True`` if you trust the directory.
    """
    kind = spec.get("kind")
    if kind == "hashing":
        return HashingEmbedder(dim=int(spec["dim"]))
    if kind == "local" and (trusted or spec.get("model_path") is None):
        return LocalEmbedder(
            model_path=spec.get("model_path"),
            runtime=spec.get("runtime", "auto"),
            precision=spec.get("precision", "auto"),
        )
    if kind == "openai" and trusted:
        return OpenAIEmbedder(
            spec["model"], base_url=spec.get("base_url"), dimensions=spec.get("dimensions")
        )
    if kind in ("local", "openai"):
        named = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "kind")
        raise StoreError(
            f"this store was built with the {kind} embedder ({named}); ragkit does not use an "
            "embedding service or model path read from a store directory on its own. Pass the "
            "embedder when opening the store (embedder=...), or trust_stored_embedder=True if "
            "you trust this directory."
        )
    raise StoreError(
        f"this store was built with {spec.get('model_id', spec)!r}, which ragkit cannot "
        f"rebuild by itself; pass it again when opening the store: {reopen_hint(spec)}"
    )


def reopen_hint(spec: dict[str, Any]) -> str:
    """How to pass a store's embedder again, in the framework that made it."""
    kind = spec.get("kind")
    if kind == "langchain":
        return "RagkitVectorStore(path=..., embedding=<the same LangChain embeddings>)"
    if kind == "llamaindex":
        return "RagkitVectorStore(path=..., embed_model=<the same LlamaIndex embed model>)"
    return "HybridStore(path, embedder=<the same embedder>)"


def rebuildable(spec: dict[str, Any]) -> bool:
    """Can ``embedder_from_spec`` rebuild this embedder without help (and without trust)?"""
    return spec.get("kind") == "hashing" or (
        spec.get("kind") == "local" and spec.get("model_path") is None
    )
