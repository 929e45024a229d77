"""Scores users can trust: calibrated hybrid scores, abstention, and the rough edges a
newcomer hit (issue "Scores users can trust"). Real all-MiniLM-L6-v2 embeddings where the
test is about what scores mean."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragkit import HybridStore
from ragkit.chains._extractive import NO_ANSWER, cited_numbers, extractive_answer
from ragkit.embeddings import HashingEmbedder, LocalEmbedder
from ragkit.evaluation import off_topic_queries, roc_auc, separation
from ragkit.fusion import Fusion, fuse
from ragkit.ingest.sources import read_source
from ragkit.schema import Leg

DEMO = Path(__file__).resolve().parents[1] / "cookbook" / "data" / "demo_corpus.jsonl"
ON_TOPIC = {
    "why is the sky blue": "astro-01",
    "what does error RK-4012 mean?": "ops-01",
    "my homemade loaf came out flat and dense": "cook-03",
    "how do I merge keyword and vector rankings?": "search-03",
}
OFF_TOPIC = [
    "how do I file my taxes in Norway",
    "what is the capital of France?",
    "xkqzt vbrmf plokh",
    "what does EADDRINUSE mean",
]


@pytest.fixture(scope="module")
def demo(local_embedder: LocalEmbedder) -> Iterator[HybridStore]:
    docs = list(read_source(DEMO))
    with HybridStore(embedder=local_embedder) as store:
        store.add_texts([d.text for d in docs], [d.metadata for d in docs], [d.id for d in docs])
        yield store


# ---- calibrated scores ------------------------------------------------------------------------


def test_a_threshold_separates_relevant_from_irrelevant_on_every_query(
    demo: HybridStore,
) -> None:
    relevant = {q: demo.search(q, k=1) for q in ON_TOPIC}
    for query, result in relevant.items():
        assert result.scale == "calibrated"
        assert result.ids == [ON_TOPIC[query]]
        assert result.hits[0].score >= 0.3, query
    for query in OFF_TOPIC:
        best = demo.search(query, k=1).hits[0].score
        assert best < 0.15, (query, best)  # taxes, France, gibberish: far below any answer
    # Relative score fusion gives the best hit of every query 0.5-1.0: no threshold works.
    worst_relevant = min(demo.search(q, k=1, fusion="relative_score")[0].score for q in ON_TOPIC)
    best_irrelevant = max(demo.search(q, k=1, fusion="relative_score")[0].score for q in OFF_TOPIC)
    assert best_irrelevant >= worst_relevant


def test_calibrated_scores_are_the_documented_formula(demo: HybridStore) -> None:
    """alpha * max(cosine, 0) + (1 - alpha) * min(BM25 / ceiling, 1); the ceiling is each
    query term's IDF times k1 + 1, computed here from the store's own statistics."""
    query = "why is the sky blue"
    shard = demo.backend
    terms = shard.analyze(query)
    stats = shard.lexical_stats(list(dict.fromkeys(terms)))
    ceiling = sum(
        math.log(
            1
            + (stats.doc_count - stats.doc_freqs.get(t, 0) + 0.5)
            / (stats.doc_freqs.get(t, 0) + 0.5)
        )
        * 2.2
        for t in terms
    )
    for alpha in (0.5, 0.3):
        for hit in demo.search(query, k=5, alpha=alpha):
            dense = max(hit.dense_score or 0.0, 0.0)
            lexical = min((hit.lexical_score or 0.0) / ceiling, 1.0)
            assert hit.score == pytest.approx(alpha * dense + (1 - alpha) * lexical, abs=1e-6)
            assert 0.0 <= hit.score <= 1.0


def test_every_candidate_is_scored_on_both_legs(demo: HybridStore) -> None:
    """A record found by one leg still gets its score on the other (not 0 for 'absent')."""
    result = demo.search("bread dough yeast", k=10)
    for hit in result:
        assert hit.dense_score is not None  # every record has a cosine
        assert hit.lexical_score is not None  # 0.0 when no query term occurs in it
    ranked_by_one_leg = [h for h in result if h.dense_rank is None or h.lexical_rank is None]
    assert ranked_by_one_leg, "the query should have candidates only one leg ranked"


def test_weaviate_stores_default_to_relative_score() -> None:
    from test_weaviate_adapter import fake_client  # evaluates queries at the client boundary

    from ragkit.backends.weaviate import WeaviateShard

    store = HybridStore(backend=WeaviateShard(fake_client(), "Docs"), embedder=HashingEmbedder(16))
    assert store.default_fusion == "relative_score"
    from ragkit.errors import InvalidInputError

    store.add_texts(["hello world"])
    with pytest.raises(InvalidInputError, match="not available in Weaviate"):
        store.search("hello", fusion="calibrated")


def test_fusion_keeps_other_methods_and_never_inflates_single_leg_hits() -> None:
    dense = Leg(["a", "b"], np.array([0.9, 0.5], np.float32), ceiling=1.0, extra={"c": -0.2})
    lexical = Leg(["b", "c"], np.array([6.0, 3.0], np.float32), ceiling=12.0, extra={"a": 0.0})
    calibrated = fuse(Fusion.CALIBRATED, [dense, lexical], [0.5, 0.5])
    assert list(calibrated.ids) == ["b", "a", "c"]
    assert calibrated.scores.round(4).tolist() == [0.5, 0.45, 0.125]  # b: 0.5*0.5 + 0.5*6/12
    assert calibrated.leg_scores[0, 2] == pytest.approx(-0.2)  # c's cosine, filled in (as 0)
    assert calibrated.leg_ranks[0, 2] == 0  # but c was not among the dense candidates
    for method in (Fusion.RRF, Fusion.RELATIVE_SCORE, Fusion.DBSF):
        assert set(fuse(method, [dense, lexical], [0.5, 0.5]).ids) == {"a", "b", "c"}


def test_separation_and_roc_auc(demo: HybridStore) -> None:
    assert roc_auc([3, 4], [1, 2]) == 1.0 and roc_auc([1], [1]) == 0.5
    split = separation(demo, list(ON_TOPIC), OFF_TOPIC)
    assert split.auc == 1.0
    assert 0 < split.threshold(1.0) <= min(split.on_topic)
    assert split.rejected(split.threshold(1.0)) == 1.0
    relative = separation(demo, list(ON_TOPIC), OFF_TOPIC, fusion="relative_score")
    assert relative.auc < split.auc


def test_off_topic_queries_are_distinct_and_deterministic() -> None:
    queries = off_topic_queries()
    assert len(queries) == len(set(queries)) == 300
    assert queries == off_topic_queries()
    assert off_topic_queries(seed=1) != queries


def test_a_langchain_score_threshold_now_means_something(demo: HybridStore) -> None:
    from ragkit.stores.langchain import RagkitVectorStore

    retriever = RagkitVectorStore(store=demo).as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.25, "k": 3}
    )
    assert retriever.invoke("why is the sky blue")[0].id == "astro-01"
    for query in OFF_TOPIC:
        assert retriever.invoke(query) == []


# ---- abstention and extractive answers ---------------------------------------------------


def test_the_chains_abstain_off_topic_and_answer_on_topic(demo: HybridStore) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from ragkit.chains import rag_chain
    from ragkit.chains.llamaindex import query_engine
    from ragkit.retrievers.langchain import HybridRetriever

    retriever = HybridRetriever(store=demo, k=4)
    chain = rag_chain(retriever)
    engine = query_engine(demo, k=4)
    for query in OFF_TOPIC:
        out = chain.invoke(query)
        assert out["answer"] == NO_ANSWER and out["sources"] == []
        assert str(engine.query(query)) == NO_ANSWER
    for query, expected in ON_TOPIC.items():
        out = chain.invoke(query)
        cited = {out["sources"][n - 1].id for n in cited_numbers(out["answer"])}
        assert expected in cited, query
        response = engine.query(query)
        assert expected in {n.node.node_id for n in response.source_nodes}
    # With a model: an off-topic question never reaches it.
    llm = FakeListChatModel(responses=["the model's answer [1]"])
    with_llm = rag_chain(retriever, llm)
    assert with_llm.invoke(OFF_TOPIC[0])["answer"] == NO_ANSWER
    assert llm.i == 0  # not called
    assert with_llm.invoke("why is the sky blue")["answer"] == "the model's answer [1]"
    # min_score=None keeps every source (no abstention).
    assert rag_chain(retriever, min_score=None).invoke(OFF_TOPIC[0])["answer"] != NO_ANSWER


def test_extractive_answers_drop_markup_and_stay_short() -> None:
    source = (
        "---\ntitle: Setup\ntags: [a]\n---\n<!-- internal: do not publish -->\n# Installing\n"
        "Run **pip install ragkit** to get the [library](https://example.org) quickly. "
        "<b>Then</b> open a store [12] and add texts."
    )
    answer = extractive_answer("how do I install the library with pip", [source])
    assert "pip install ragkit" in answer and answer.endswith("[1]")
    for leftover in ("---", "title:", "<!--", "internal", "**", "](", "<b>", "[12]"):
        assert leftover not in answer, leftover
    long = " ".join(f"Sentence {i} mentions pip install steps at length." for i in range(200))
    bounded = extractive_answer("pip install", [long] * 6, max_chars=500)
    assert len(bounded) <= 500
    assert cited_numbers(bounded) == [1, 2, 3, 4, 5, 6]  # every source keeps its citation


def test_extractive_answers_keep_code_drop_rst_roles_and_cite_in_source_order() -> None:
    code = (
        "The :func:`json.dumps` function is ``dumps(obj, *, skipkeys=False, "
        "ensure_ascii=True, **kw)`` and serializes obj to a JSON formatted str."
    )
    answer = extractive_answer("what does json dumps serialize", [code])
    assert "dumps(obj, *, skipkeys=False, ensure_ascii=True, **kw)" in answer
    assert ":func:" not in answer and "The json.dumps function" in answer
    assert "__init__" in extractive_answer("what does __init__ do", ["__init__ sets fields up."])
    sources = [
        "Cats sleep a lot. Unrelated.",
        "Dumps serializes objects to JSON text.",
        "JSON dumps serializes objects, and dumps writes JSON strings.",
    ]
    cited = cited_numbers(extractive_answer("json dumps serializes objects", sources))
    assert cited == sorted(cited) and len(cited) >= 2


# ---- rough edges -----------------------------------------------------------------------------


def test_multi_query_rewrites_keep_digits_dots_and_dashes(demo: HybridStore) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from ragkit.chains import multi_query_retriever
    from ragkit.chains.multi_query import clean_rewrite
    from ragkit.retrievers.langchain import HybridRetriever

    assert clean_rewrite("1. meaning of error RK-4012") == "meaning of error RK-4012"
    assert clean_rewrite("2FA setup") == "2FA setup"
    assert clean_rewrite('- "version 3.11"') == "version 3.11"
    assert clean_rewrite("(2) 10.5 mm") == "10.5 mm"
    seen: list[str] = []

    class Recording(HybridRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> Any:
            seen.append(query)
            return super()._get_relevant_documents(query, run_manager=run_manager)

    llm = FakeListChatModel(responses=["1. meaning of error RK-4012\n2. RK-4012 lock error"])
    retriever = multi_query_retriever(Recording(store=demo, k=3), llm, n=2)
    docs = retriever.invoke("what is RK-4012?")
    assert "meaning of error RK-4012" in seen and "RK-4012 lock error" in seen
    assert docs[0].id == "ops-01"


def test_llamaindex_in_with_one_string_and_case_insensitive_text_match(
    tmp_path: Path,
) -> None:
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import (
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
    )

    from ragkit.stores.llamaindex import RagkitVectorStore

    store = RagkitVectorStore(embed_model=HashingEmbedder(dim=32))
    nodes = [
        TextNode(id_="n1", text="alpha", metadata={"topic": "search", "title": "Hybrid Search"}),
        TextNode(id_="n2", text="beta", metadata={"topic": "ops", "title": "Error codes"}),
    ]
    for node in nodes:
        node.embedding = HashingEmbedder(dim=32).embed_query(node.text).tolist()
    store.add(nodes)

    def ids(*filters: MetadataFilter) -> set[str]:
        query = VectorStoreQuery(
            query_embedding=HashingEmbedder(dim=32).embed_query("alpha").tolist(),
            similarity_top_k=5,
            filters=MetadataFilters(filters=list(filters)),
        )
        return set(store.query(query).ids or [])

    assert ids(MetadataFilter(key="topic", value="search", operator=FilterOperator.IN)) == {"n1"}
    assert ids(MetadataFilter(key="topic", value="ops", operator=FilterOperator.NIN)) == {"n1"}
    insensitive = FilterOperator.TEXT_MATCH_INSENSITIVE
    assert ids(MetadataFilter(key="title", value="hybrid", operator=insensitive)) == {"n1"}
    assert ids(MetadataFilter(key="title", value="ERROR", operator=insensitive)) == {"n2"}
    assert (
        ids(MetadataFilter(key="title", value="hybrid", operator=FilterOperator.TEXT_MATCH))
        == set()
    )


def test_icontains_is_the_same_on_every_evaluator() -> None:
    from ragkit.backends import LocalShard
    from ragkit.filters import matches, parse_filter

    flt = parse_filter({"title": {"$icontains": "straße"}})
    assert matches(flt, {"title": "Die STRASSE"})  # Unicode case folding
    assert not matches(flt, {"title": ["Straße"]})  # string fields only
    with HybridStore(backend=LocalShard(), embedder=HashingEmbedder(dim=16)) as store:
        store.add_texts(
            ["a", "b", "c"], [{"title": "Die STRASSE"}, {"title": "x"}, {}], ["1", "2", "3"]
        )
        assert store.ids({"title": {"$icontains": "straße"}}) == ["1"]
    from ragkit.errors import FilterError

    with pytest.raises(FilterError, match="non-empty string"):
        parse_filter({"title": {"$icontains": 3}})


def test_a_llamaindex_store_made_with_ragkit_embedding_reopens_with_path_alone(
    tmp_path: Path,
) -> None:
    from llama_index.core import Document, StorageContext, VectorStoreIndex

    from ragkit.embeddings.llamaindex import RagkitEmbedding
    from ragkit.errors import EmbedderMismatchError
    from ragkit.stores.llamaindex import RagkitVectorStore

    embed_model = RagkitEmbedding(HashingEmbedder(dim=32))
    vector_store = RagkitVectorStore(path=tmp_path / "kb", embed_model=embed_model)
    VectorStoreIndex.from_documents(
        [Document(text="hello world")],
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=embed_model,
    )
    vector_store.client.close()
    reopened = RagkitVectorStore(path=tmp_path / "kb")
    assert reopened.client.embedder.model_id == "ragkit/hashing-32"
    reopened.client.close()
    with pytest.raises(EmbedderMismatchError, match="Open it without passing an embedder"):
        RagkitVectorStore(path=tmp_path / "kb", embed_model=RagkitEmbedding(HashingEmbedder(8)))


def test_a_store_made_with_langchain_embeddings_says_how_to_reopen_it(tmp_path: Path) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from ragkit.errors import EmbedderMismatchError, StoreError
    from ragkit.stores.langchain import RagkitVectorStore

    store = RagkitVectorStore(path=tmp_path / "kb", embedding=DeterministicFakeEmbedding(size=8))
    store.add_texts(["hello"])
    store.store.close()
    with pytest.raises(StoreError, match=r"RagkitVectorStore\(path=..., embedding="):
        HybridStore(tmp_path / "kb")
    with pytest.raises(EmbedderMismatchError, match=r"Pass the embedder it was built with"):
        HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=8))


def test_opening_a_directory_again_in_the_same_process_closes_the_earlier_handle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ragkit.errors import StoreError

    first = HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=8))
    first.add_texts(["written by the first handle"], ids=["a"])
    second = HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=8))  # a cell run again
    assert "still open in this process" in caplog.text
    assert second.get(["a"])[0].text == "written by the first handle"
    with pytest.raises(StoreError, match="closed"):
        first.backend.count()
    second.close()


@pytest.fixture
def held_open(tmp_path: Path) -> Iterator[Path]:
    """A store another process holds open for writing."""
    import subprocess
    import sys

    path = tmp_path / "kb"
    with HybridStore(path, embedder=HashingEmbedder(dim=16)) as store:
        store.add_texts(["the held store holds this passage about lighthouses"], ids=["l1"])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from ragkit import HybridStore; "
            "s = HybridStore(sys.argv[1]); s.add_texts(['a second passage, on harbours'], "
            "ids=['l2']); print('ready', flush=True); time.sleep(120)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    yield path
    holder.kill()
    holder.wait()


def test_read_only_opens_a_store_another_process_holds(held_open: Path) -> None:
    from ragkit.errors import StoreError

    with pytest.raises(StoreError, match="open in another process"):
        HybridStore(held_open)
    with HybridStore(held_open, read_only=True) as store:
        assert store.count() == 2  # the holder's write included
        assert store.search("harbours", k=1).ids == ["l2"]
        with pytest.raises(StoreError, match="read-only"):
            store.add_texts(["nope"])
    assert "LOCK" in {p.name for p in held_open.iterdir()}


def test_cli_search_and_stats_read_a_store_an_application_holds(
    held_open: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragkit.cli import main

    assert main(["search", "lighthouses", "--store", str(held_open), "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["id"] == "l1" and first["scale"] == "calibrated"
    assert main(["stats", "--store", str(held_open), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == 2 and stats["tenants"] == 1
    assert stats["embedder"]["model_id"] == "ragkit/hashing-16"
    assert "searches" not in stats  # the CLI's own counters are not the application's


def test_cli_rough_edges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragkit.cli import main

    monkeypatch.setenv("COLUMNS", "300")  # wide enough that table cells do not wrap
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.rst").write_text("Restructured text\n=================\n\nRST is indexed too.")
    (docs / "NOTES.MD").write_text("# Notes\n\nUpper-case extensions are indexed.")
    (docs / "legacy.txt").write_bytes("caf\xe9 latin-1 text".encode("latin-1"))
    (docs / "empty.txt").write_text("   \n")
    (docs / "picture.png").write_bytes(b"\x89PNG")
    store = tmp_path / "kb"
    assert main(["ingest", str(docs), "--store", str(store)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "skipped legacy.txt: not UTF-8" in err
    assert "skipped 1 empty document(s): empty.txt" in err
    assert "1 .png" in err
    assert "Loading weights" not in err
    with HybridStore(store, read_only=True) as kb:
        paths = {r.metadata["path"] for r in kb.get(kb.ids())}
        sources = {r.metadata["source"] for r in kb.get(kb.ids())}
    assert paths == {"guide.rst", "NOTES.MD"}  # the source: the folder's absolute path + path
    assert sources == {f"{docs.resolve().as_posix()}/{name}" for name in paths}

    for args, message in [
        (["ingest", str(docs), "--store", str(store), "--batch-size", "0"], "positive integer"),
        (["ingest", str(docs), "--store", str(store), "--chunk-chars", "10"], "at least 50"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "missing"), "--store", str(store)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.startswith("ragkit ")

    assert main(["search", "rst indexed", "--store", str(store)]) == 0
    table = capsys.readouterr().out
    # The passage's newlines are gone: its title, underline and body share one table line.
    assert any(
        "Restructured text ===" in line and "indexed too." in line for line in table.splitlines()
    )
    assert main(["search", "zzzqqq", "--store", str(store), "--mode", "lexical"]) == 0
    assert "no results for 'zzzqqq'" in capsys.readouterr().out


def test_a_beir_corpus_with_an_empty_document_is_indexed_and_evaluated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragkit.cli import main

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    rows = [
        {"_id": "d1", "title": "Lighthouses", "text": "Lighthouses guide ships at night."},
        {"_id": "d2", "title": "", "text": ""},
        {"_id": "d3", "title": "Harbours", "text": "Harbours shelter ships from storms."},
    ]
    (data / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what guides ships"}))
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert main(["ingest", str(data), "--store", str(tmp_path / "kb")]) == 0
    assert "skipped 1 empty document(s): d2" in capsys.readouterr().err
    assert main(["eval", "--data", str(data), "--mode", "lexical", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ndcg@10"] == 1.0


def test_ctrl_c_is_a_short_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from ragkit.cli import commands, main

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "ingest", interrupted)
    assert main(["ingest", str(tmp_path), "--store", str(tmp_path / "kb")]) == 130
    assert capsys.readouterr().err.strip() == "ragkit: interrupted"
