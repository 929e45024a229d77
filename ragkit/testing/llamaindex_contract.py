"""A conformance suite for LlamaIndex vector stores (LlamaIndex ships none).

In the spirit of ``langchain-tests``: subclass ``LlamaIndexVectorStoreContract`` and provide a
``vector_store`` fixture returning an empty store whose vectors come from ``embed_model``
(a ragkit ``HashingEmbedder`` wrapped for LlamaIndex, so the suite needs no model)::

    class TestMyStore(LlamaIndexVectorStoreContract):
        @pytest.fixture
        def vector_store(self, embed_model):
            return MyVectorStore(...)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms.mock import MockLLM
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from ragkit.embeddings import HashingEmbedder
from ragkit.embeddings.llamaindex import RagkitEmbedding

NODES: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "n1",
        "doc-a",
        "Hybrid search fuses keyword and vector rankings",
        {"topic": "ir", "year": 2019, "tags": ["a", "b"], "title": "Hybrid search"},
    ),
    (
        "n2",
        "doc-a",
        "BM25 scores documents by term frequency",
        {"topic": "ir", "year": 2021, "tags": ["b"], "title": "BM25 scoring"},
    ),
    (
        "n3",
        "doc-b",
        "Image networks classify pictures of cats",
        {"topic": "cv", "year": 2020, "tags": ["c"], "title": "Image nets"},
    ),
    (
        "n4",
        "doc-c",
        "Transformers model language with attention",
        {"topic": "nlp", "year": 2022, "title": "Transformers"},
    ),
    (
        "n5",
        "doc-b",
        "Convolutional networks detect edges in images",
        {"topic": "cv", "year": 2018, "tags": ["a", "c"], "title": "Conv nets"},
    ),
]

F = FilterOperator
OPERATOR_CASES: list[tuple[str, FilterOperator, Any, set[str]]] = [
    ("topic", F.EQ, "ir", {"n1", "n2"}),
    ("topic", F.NE, "ir", {"n3", "n4", "n5"}),
    ("year", F.GT, 2020, {"n2", "n4"}),
    ("year", F.GTE, 2020, {"n2", "n3", "n4"}),
    ("year", F.LT, 2020, {"n1", "n5"}),
    ("year", F.LTE, 2019, {"n1", "n5"}),
    ("topic", F.IN, ["cv", "nlp"], {"n3", "n4", "n5"}),
    ("topic", F.IN, "ir", {"n1", "n2"}),  # one value, as LlamaIndex's own stores read it
    ("topic", F.NIN, ["cv"], {"n1", "n2", "n4"}),
    ("tags", F.ANY, ["a", "c"], {"n1", "n3", "n5"}),
    ("tags", F.ALL, ["a", "c"], {"n5"}),
    ("tags", F.CONTAINS, "b", {"n1", "n2"}),
    ("title", F.TEXT_MATCH, "nets", {"n3", "n5"}),
    ("title", F.TEXT_MATCH_INSENSITIVE, "NETS", {"n3", "n5"}),
    ("title", F.TEXT_MATCH_INSENSITIVE, "hybrid", {"n1"}),
    ("tags", F.IS_EMPTY, None, {"n4"}),
]


def make_nodes(embed_model: RagkitEmbedding) -> list[TextNode]:
    nodes = []
    for node_id, doc_id, text, metadata in NODES:
        node = TextNode(id_=node_id, text=text, metadata=dict(metadata))
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc_id)
        node.embedding = embed_model.get_text_embedding(text)
        nodes.append(node)
    return nodes


def filters(*items: MetadataFilter | MetadataFilters, condition: str = "and") -> MetadataFilters:
    return MetadataFilters(filters=list(items), condition=FilterCondition(condition))


class LlamaIndexVectorStoreContract:
    """Inherit and provide ``vector_store``; every test runs against your store."""

    @pytest.fixture
    def embed_model(self) -> RagkitEmbedding:
        return RagkitEmbedding(HashingEmbedder(dim=64))

    @pytest.fixture
    def vector_store(self, embed_model: RagkitEmbedding) -> BasePydanticVectorStore:
        raise NotImplementedError("provide a vector_store fixture")

    @pytest.fixture
    def filled(
        self, vector_store: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> BasePydanticVectorStore:
        vector_store.add(make_nodes(embed_model))
        return vector_store

    def query(
        self, store: BasePydanticVectorStore, embed_model: RagkitEmbedding, text: str, **kwargs: Any
    ) -> list[str]:
        query = VectorStoreQuery(
            query_embedding=embed_model.get_query_embedding(text), query_str=text, **kwargs
        )
        result = store.query(query)
        return list(result.ids or [])

    # ---- basics ---------------------------------------------------------------------------

    def test_stores_text(self, vector_store: BasePydanticVectorStore) -> None:
        assert vector_store.stores_text is True

    def test_empty_store_returns_nothing(
        self, vector_store: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        assert self.query(vector_store, embed_model, "anything", similarity_top_k=3) == []
        assert (
            vector_store.get_nodes(filters=filters(MetadataFilter(key="topic", value="ir"))) == []
        )

    def test_add_returns_ids_and_nodes_come_back_whole(
        self, vector_store: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        ids = vector_store.add(make_nodes(embed_model))
        assert ids == [n[0] for n in NODES]
        (node,) = vector_store.get_nodes(node_ids=["n3"])
        assert node.node_id == "n3"
        assert node.get_content() == NODES[2][2]
        assert node.metadata == NODES[2][3]
        assert node.ref_doc_id == "doc-b"

    def test_re_adding_the_same_nodes_is_idempotent(
        self, filled: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        filled.add(make_nodes(embed_model))
        assert len(self.query(filled, embed_model, "networks", similarity_top_k=20)) == len(NODES)

    def test_delete_by_ref_doc_id_removes_all_its_nodes(
        self, filled: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        filled.delete("doc-b")
        remaining = set(self.query(filled, embed_model, "networks", similarity_top_k=20))
        assert remaining == {"n1", "n2", "n4"}

    def test_delete_nodes_by_ids_and_by_filters(
        self, filled: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        filled.delete_nodes(node_ids=["n1"])
        filled.delete_nodes(filters=filters(MetadataFilter(key="topic", value="cv")))
        assert {n.node_id for n in filled.get_nodes(node_ids=["n1", "n2", "n3", "n4", "n5"])} == {
            "n2",
            "n4",
        }

    def test_clear_empties_the_store(
        self, filled: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        filled.clear()
        assert self.query(filled, embed_model, "networks", similarity_top_k=20) == []

    # ---- query modes ----------------------------------------------------------------------

    def test_default_mode_ranks_by_vector_similarity(
        self, filled: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        text = "convolutional networks detect edges"
        query_vec = np.asarray(embed_model.get_query_embedding(text))
        by_cosine = sorted(
            NODES,
            key=lambda n: -float(np.dot(query_vec, embed_model.get_text_embedding(n[2]))),
        )
        got = self.query(filled, embed_model, text, similarity_top_k=2)
        assert got[0] == by_cosine[0][0] == "n5"
        assert len(got) == 2

    @pytest.mark.parametrize(
        "mode", [VectorStoreQueryMode.SPARSE, VectorStoreQueryMode.TEXT_SEARCH]
    )
    def test_sparse_modes_rank_by_bm25(
        self,
        filled: BasePydanticVectorStore,
        embed_model: RagkitEmbedding,
        mode: VectorStoreQueryMode,
    ) -> None:
        got = self.query(filled, embed_model, "attention language", mode=mode, similarity_top_k=5)
        assert got == ["n4"]  # only n4 contains either word

    def test_hybrid_mode_honours_alpha_and_hybrid_top_k(
        self, filled: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        text = "images networks cats"
        dense = self.query(filled, embed_model, text, similarity_top_k=5)
        sparse = self.query(
            filled, embed_model, text, mode=VectorStoreQueryMode.SPARSE, similarity_top_k=5
        )
        hybrid = VectorStoreQueryMode.HYBRID
        assert (
            self.query(filled, embed_model, text, mode=hybrid, alpha=1.0, similarity_top_k=5)[
                : len(dense)
            ]
            == dense
        )
        assert (
            self.query(filled, embed_model, text, mode=hybrid, alpha=0.0, similarity_top_k=5)[
                : len(sparse)
            ]
            == sparse
        )
        assert (
            len(
                self.query(
                    filled,
                    embed_model,
                    text,
                    mode=hybrid,
                    similarity_top_k=5,
                    sparse_top_k=5,
                    hybrid_top_k=2,
                )
            )
            == 2
        )

    def test_mmr_mode_returns_k_distinct_nodes(
        self, filled: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        got = self.query(
            filled,
            embed_model,
            "networks images",
            mode=VectorStoreQueryMode.MMR,
            similarity_top_k=3,
            mmr_threshold=0.3,
        )
        assert len(got) == 3 and len(set(got)) == 3

    # ---- filters --------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("key", "op", "value", "expected"), OPERATOR_CASES, ids=[c[1].value for c in OPERATOR_CASES]
    )
    def test_every_filter_operator(
        self,
        filled: BasePydanticVectorStore,
        embed_model: RagkitEmbedding,
        key: str,
        op: FilterOperator,
        value: Any,
        expected: set[str],
    ) -> None:
        flt = filters(MetadataFilter(key=key, operator=op, value=value))
        assert {n.node_id for n in filled.get_nodes(filters=flt)} == expected
        got = self.query(filled, embed_model, "networks search", similarity_top_k=10, filters=flt)
        assert set(got) == expected

    @pytest.mark.parametrize(
        ("condition", "expected"),
        # "not": none of the filters matches, as LlamaIndex's own evaluator has it (it was
        # "not all of them" here, {"n1", "n3", "n5"}, until round two fixed the semantics)
        [("and", {"n2", "n4"}), ("or", {"n2", "n3", "n4", "n5"}), ("not", {"n3", "n5"})],
    )
    def test_every_filter_condition(
        self,
        filled: BasePydanticVectorStore,
        embed_model: RagkitEmbedding,
        condition: str,
        expected: set[str],
    ) -> None:
        # and / not: topic in (ir, nlp) with year > 2020; or: topic == cv or year > 2020
        flt = (
            filters(
                MetadataFilter(key="topic", operator=F.IN, value=["ir", "nlp"]),
                MetadataFilter(key="year", operator=F.GT, value=2020),
                condition=condition,
            )
            if condition != "or"
            else filters(
                MetadataFilter(key="topic", value="cv"),
                MetadataFilter(key="year", operator=F.GT, value=2020),
                condition="or",
            )
        )
        assert {n.node_id for n in filled.get_nodes(filters=flt)} == expected

    def test_nested_filters(self, filled: BasePydanticVectorStore) -> None:
        flt = filters(
            MetadataFilter(key="tags", operator=F.CONTAINS, value="a"),
            filters(
                MetadataFilter(key="topic", value="ir"),
                MetadataFilter(key="year", operator=F.LT, value=2019),
                condition="or",
            ),
        )
        assert {n.node_id for n in filled.get_nodes(filters=flt)} == {"n1", "n5"}

    def test_every_filter_operator_is_covered(self) -> None:
        """A new LlamaIndex operator fails the contract until it has a case above."""
        assert {case[1] for case in OPERATOR_CASES} == set(FilterOperator)

    # ---- async ----------------------------------------------------------------------------

    async def test_async_twins(
        self, vector_store: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        assert await vector_store.async_add(make_nodes(embed_model)) == [n[0] for n in NODES]
        text = "BM25 scores documents by term frequency"
        query = VectorStoreQuery(
            query_embedding=embed_model.get_query_embedding(text),
            query_str=text,
            similarity_top_k=1,
            mode=VectorStoreQueryMode.HYBRID,
        )
        assert (await vector_store.aquery(query)).ids == ["n2"]
        assert [n.node_id for n in await vector_store.aget_nodes(node_ids=["n4"])] == ["n4"]
        await vector_store.adelete("doc-a")
        await vector_store.adelete_nodes(node_ids=["n4"])
        assert {
            n.node_id
            for n in await vector_store.aget_nodes(
                filters=filters(MetadataFilter(key="year", operator=F.GT, value=0))
            )
        } == {"n3", "n5"}
        await vector_store.aclear()
        assert (await vector_store.aquery(query)).ids == []

    # ---- the index API ------------------------------------------------------------------

    def test_works_under_vector_store_index_and_query_engine(
        self, vector_store: BasePydanticVectorStore, embed_model: RagkitEmbedding
    ) -> None:
        docs = [Document(text=text, metadata=meta, id_=doc_id) for _, doc_id, text, meta in NODES]
        VectorStoreIndex.from_documents(
            docs,
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=embed_model,
        )
        index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)
        nodes = index.as_retriever(similarity_top_k=2, vector_store_query_mode="hybrid").retrieve(
            "term frequency scoring"
        )
        assert nodes[0].node.get_content() == NODES[1][2]
        engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=1)
        response = engine.query("attention in transformers")
        assert response.source_nodes[0].node.get_content() == NODES[3][2]
        index.delete_ref_doc("doc-c")
        assert (
            "attention"
            not in index.as_retriever(similarity_top_k=5)
            .retrieve("attention")[0]
            .node.get_content()
        )
