"""Acceptance 1 (LlamaIndex): ragkit's LlamaIndex contract suite on RagkitVectorStore."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit.embeddings.llamaindex import RagkitEmbedding
from ragkit.stores.llamaindex import RagkitVectorStore
from ragkit.testing.llamaindex_contract import LlamaIndexVectorStoreContract


class TestRagkitVectorStoreInMemory(LlamaIndexVectorStoreContract):
    @pytest.fixture
    def vector_store(self, embed_model: RagkitEmbedding) -> RagkitVectorStore:
        return RagkitVectorStore(embed_model=embed_model.embedder)


class TestRagkitVectorStoreOnDisk(LlamaIndexVectorStoreContract):
    @pytest.fixture
    def vector_store(self, embed_model: RagkitEmbedding, tmp_path: Path) -> RagkitVectorStore:
        return RagkitVectorStore(path=tmp_path / "kb", embed_model=embed_model)
