"""The frameworks' own indexing APIs drive ragkit's stores as they drive any other: LangChain's
``index()`` with an in-memory and a persistent SQL record manager, LlamaIndex's
``IngestionPipeline`` with a docstore. Counts are exact after every run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.indexing import InMemoryRecordManager, index

from ragkit import HybridStore
from ragkit.embeddings import HashingEmbedder
from ragkit.stores.langchain import RagkitVectorStore


def _docs(**texts: str) -> list[Document]:
    """Documents named ``<source>:<n>`` -> text, with ``source`` metadata."""
    return [
        Document(page_content=text, metadata={"source": name.split("_")[0]})
        for name, text in texts.items()
    ]


def _incremental(docs: list[Document], manager: Any, vector_store: Any) -> dict[str, Any]:
    return dict(
        index(docs, manager, vector_store, cleanup="incremental", source_id_key="source",
              key_encoder="blake2b")
    )  # fmt: skip


def _vector_store() -> RagkitVectorStore:
    return RagkitVectorStore(store=HybridStore(embedder=HashingEmbedder(dim=64)))


def _sql_manager(path: Path) -> Any:
    from langchain_classic.indexes import SQLRecordManager

    manager = SQLRecordManager("ragkit-test", db_url=f"sqlite:///{path}")
    manager.create_schema()
    return manager


def _managers(tmp_path: Path) -> dict[str, Any]:
    memory = InMemoryRecordManager("ragkit-test")
    memory.create_schema()
    return {"memory": memory, "sql": _sql_manager(tmp_path / "records.db")}


@pytest.mark.parametrize("kind", ["memory", "sql"])
def test_langchain_index_incremental_adds_skips_updates_and_cleans_up(
    tmp_path: Path, kind: str
) -> None:
    manager = _managers(tmp_path)[kind]
    vector_store = _vector_store()
    first = _docs(a_1="apples are red", a_2="apples are sweet", b_1="bananas are yellow")
    result = _incremental(first, manager, vector_store)
    assert (result["num_added"], result["num_skipped"], result["num_deleted"]) == (3, 0, 0)
    assert vector_store.store.count() == 3

    again = _incremental(first, manager, vector_store)
    assert (again["num_added"], again["num_skipped"], again["num_deleted"]) == (0, 3, 0)

    # source a changes one of its two documents: the old one is cleaned up
    edited = _docs(a_1="apples are red", a_2="apples are crisp")
    changed = _incremental(edited, manager, vector_store)
    assert (changed["num_added"], changed["num_skipped"], changed["num_deleted"]) == (1, 1, 1)
    texts = sorted(r.text for r in vector_store.store.get(vector_store.store.ids()))
    assert texts == ["apples are crisp", "apples are red", "bananas are yellow"]


@pytest.mark.parametrize("kind", ["memory", "sql"])
def test_langchain_index_full_cleanup_removes_what_is_no_longer_indexed(
    tmp_path: Path, kind: str
) -> None:
    manager = _managers(tmp_path)[kind]
    vector_store = _vector_store()
    docs = _docs(a_1="apples", b_1="bananas", c_1="cherries")
    assert (
        index(docs, manager, vector_store, cleanup="full", key_encoder="blake2b")["num_added"] == 3
    )
    result = index(docs[:1], manager, vector_store, cleanup="full", key_encoder="blake2b")
    assert (result["num_skipped"], result["num_deleted"]) == (1, 2)
    assert [r.text for r in vector_store.store.get(vector_store.store.ids())] == ["apples"]


def test_langchain_index_with_a_persistent_record_manager_survives_a_restart(
    tmp_path: Path,
) -> None:
    docs = _docs(a_1="apples", b_1="bananas")
    for run in range(2):  # a second process: the same files, reopened
        with HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64)) as store:
            manager = _sql_manager(tmp_path / "records.db")
            result = _incremental(docs, manager, RagkitVectorStore(store=store))
            assert (result["num_added"], result["num_skipped"]) == ((2, 0) if run == 0 else (0, 2))
            assert store.count() == 2


def test_llamaindex_ingestion_pipeline_with_a_docstore_upserts_exactly(tmp_path: Path) -> None:
    from llama_index.core import Document as LIDocument
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.storage.docstore import SimpleDocumentStore

    from ragkit.embeddings.llamaindex import RagkitEmbedding
    from ragkit.stores.llamaindex import RagkitVectorStore as LIVectorStore

    embedder = HashingEmbedder(dim=64)
    store = HybridStore(tmp_path / "kb", embedder=embedder)
    docstore = SimpleDocumentStore()

    def run(docs: list[Any]) -> list[Any]:
        pipeline = IngestionPipeline(
            transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0),
                             RagkitEmbedding(embedder)],
            docstore=docstore,
            vector_store=LIVectorStore(store=store),
            docstore_strategy=DocstoreStrategy.UPSERTS,
        )  # fmt: skip
        return pipeline.run(documents=docs)

    def doc(doc_id: str, text: str) -> Any:
        return LIDocument(text=text, id_=doc_id)

    assert len(run([doc("a", "Apples are red."), doc("b", "Bananas are yellow.")])) == 2
    assert store.count() == 2
    assert run([doc("a", "Apples are red."), doc("b", "Bananas are yellow.")]) == []
    assert store.count() == 2  # a re-run with nothing changed writes nothing
    assert len(run([doc("a", "Apples are green."), doc("b", "Bananas are yellow.")])) == 1
    texts = sorted(r.text for r in store.get(store.ids()))
    assert texts == ["Apples are green.", "Bananas are yellow."]  # replaced, not added
    assert len(run([doc("c", "Cherries are dark.")])) == 1 and store.count() == 3
    store.close()
