"""Issue 3, acceptance 2: offline RAG over SciFact cites relevant documents.

An LCEL ``rag_chain`` and a LlamaIndex query engine answer SciFact test claims over the same
store, offline (extractive mode); the documents they cite must include one judged relevant in
qrels for at least 75% of the queries.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit import HybridStore
from ragkit.beir import read_qrels, read_queries
from ragkit.chains import rag_chain
from ragkit.chains._extractive import cited_numbers
from ragkit.chains.llamaindex import query_engine
from ragkit.retrievers.langchain import HybridRetriever

N_QUERIES = 60


@pytest.mark.quality
def test_rag_chain_and_query_engine_cite_relevant_documents(
    scifact_dir: Path, scifact_store: Path
) -> None:
    qrels = read_qrels(scifact_dir)
    queries = read_queries(scifact_dir)
    qids = [q for q in qrels if q in queries][:N_QUERIES]
    with HybridStore(scifact_store) as store:
        chain = rag_chain(HybridRetriever(store=store, k=4))
        engine = query_engine(store, k=4)
        lc_hits = li_hits = 0
        for qid in qids:
            out = chain.invoke(queries[qid])
            numbers = cited_numbers(out["answer"])
            assert numbers and all(1 <= n <= len(out["sources"]) for n in numbers)
            cited = {out["sources"][n - 1].id for n in numbers}
            lc_hits += bool(cited & qrels[qid].keys())

            response = engine.query(queries[qid])
            numbers = cited_numbers(str(response))
            assert numbers and all(1 <= n <= len(response.source_nodes) for n in numbers)
            cited = {response.source_nodes[n - 1].node.node_id for n in numbers}
            li_hits += bool(cited & qrels[qid].keys())
    print(
        f"cited a relevant document: LCEL {lc_hits}/{len(qids)}, LlamaIndex {li_hits}/{len(qids)}"
    )
    assert lc_hits >= 0.75 * len(qids)
    assert li_hits >= 0.75 * len(qids)
