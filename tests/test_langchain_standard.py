"""Acceptance 1 (LangChain): the standard langchain-tests suites, nothing switched off."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from ragkit import HybridStore
from ragkit.embeddings import HashingEmbedder
from ragkit.retrievers.langchain import HybridRetriever
from ragkit.stores.langchain import RagkitVectorStore


class TestRagkitVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:  # type: ignore[override]
        store = RagkitVectorStore(self.get_embeddings())
        try:
            yield store
        finally:
            store.close()

    @property
    def has_get_by_ids(self) -> bool:
        return True


@functools.cache
def filled_store() -> HybridStore:
    store = HybridStore(embedder=HashingEmbedder(dim=64))
    store.add_texts(
        [f"document {i} about hybrid retrieval and topic {i % 5}" for i in range(20)],
        ids=[f"doc-{i}" for i in range(20)],
    )
    return store


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[HybridRetriever]:
        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"store": filled_store(), "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "hybrid retrieval topic"
