"""Offline RAG over SciFact: cites relevant documents, and abstains off-topic.

An LCEL ``rag_chain`` and a LlamaIndex query engine answer every SciFact test claim over the
same store, offline (extractive mode, the default abstention threshold): the documents they
cite include one judged relevant in qrels for at least 80% of the claims. Asked 300 everyday
off-topic questions, they answer ``NO_ANSWER`` for at least 90% of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit import HybridStore
from ragkit.beir import read_qrels, read_queries
from ragkit.chains import rag_chain
from ragkit.chains._extractive import NO_ANSWER, cited_numbers
from ragkit.chains.llamaindex import query_engine
from ragkit.evaluation import off_topic_queries
from ragkit.retrievers.langchain import HybridRetriever


@pytest.mark.quality
def test_rag_chain_and_query_engine_cite_relevant_documents_and_abstain_off_topic(
    scifact_dir: Path, scifact_store: Path
) -> None:
    qrels = read_qrels(scifact_dir)
    queries = read_queries(scifact_dir)
    qids = [q for q in qrels if q in queries]
    with HybridStore(scifact_store) as store:
        chain = rag_chain(HybridRetriever(store=store, k=6))
        engine = query_engine(store)  # k=6
        lc_hits = li_hits = 0
        for qid in qids:
            out = chain.invoke(queries[qid])
            numbers = cited_numbers(out["answer"])
            assert all(1 <= n <= len(out["sources"]) for n in numbers)
            cited = {out["sources"][n - 1].id for n in numbers}
            lc_hits += bool(cited & qrels[qid].keys())

            response = engine.query(queries[qid])
            numbers = cited_numbers(str(response))
            assert all(1 <= n <= len(response.source_nodes) for n in numbers)
            cited = {response.source_nodes[n - 1].node.node_id for n in numbers}
            li_hits += bool(cited & qrels[qid].keys())
        off_topic = off_topic_queries()
        lc_abstained = sum(chain.invoke(q)["answer"] == NO_ANSWER for q in off_topic)
        li_abstained = sum(str(engine.query(q)) == NO_ANSWER for q in off_topic)
    print(
        f"cited a relevant document: LCEL {lc_hits}/{len(qids)}, LlamaIndex {li_hits}/{len(qids)}; "
        f"abstained off-topic: LCEL {lc_abstained}/300, LlamaIndex {li_abstained}/300"
    )
    assert lc_hits >= 0.8 * len(qids) and li_hits >= 0.8 * len(qids)
    assert lc_abstained >= 0.9 * len(off_topic) and li_abstained >= 0.9 * len(off_topic)
