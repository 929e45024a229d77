"""LocalShard / HybridStore benchmark: speed and quality against LangChain and LlamaIndex.

    .venv/bin/python bench/bench_local.py                 # everything (about 15 minutes)
    .venv/bin/python bench/bench_local.py --docs 20000    # a quicker synthetic run

Sections (query embedding is excluded everywhere: every system gets the same precomputed
vectors through a lookup table, and ragkit is called with ``search_by_vector(v, query=text)``):

1. SciFact (BEIR, 5,183 docs, 300 test queries) embedded with all-MiniLM-L6-v2: nDCG@10 and
   hybrid top-10 latency for ragkit, LangChain EnsembleRetriever, LlamaIndex
   QueryFusionRetriever; ratios to ragkit.
2. A synthetic corpus (default 200,000 docs, 384-d, see ``_synthetic.py``): ingest rate
   (excluding embedding), hybrid and filtered-hybrid (10% selectivity) top-10 p50/p99, dense
   recall@10 of HNSW against the exact scan, peak RSS; then the two baselines on the same data
   (fewer queries: they take seconds each).

Results print as tables and are written as JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).parent))

from _baselines import langchain_ensemble, llamaindex_fusion
from _synthetic import generate

from ragkit import HybridStore, Record
from ragkit.backends import LocalShard
from ragkit.beir import read_corpus, read_qrels, read_queries
from ragkit.embeddings import Embedder, LocalEmbedder

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


class FixedDimEmbedder(Embedder):
    """Stands in for the real model when vectors are precomputed (never called to embed)."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self.model_id = "sentence-transformers/all-MiniLM-L6-v2"

    @property
    def dim(self) -> int:
        return self._dim

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("benchmark vectors are precomputed")

    def spec(self) -> dict[str, Any]:
        return {"kind": "bench"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latencies(
    search: Callable[[int], Any], n: int, warmup: int = 5
) -> tuple[np.ndarray, list[Any]]:
    for i in range(min(warmup, n)):
        search(i)
    out, answers = [], []
    for i in range(n):
        started = time.perf_counter()
        answers.append(search(i))
        out.append(time.perf_counter() - started)
    return np.array(out) * 1000, answers


def pct(ms: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "queries": len(ms),
    }


def ndcg(qrels: dict[str, dict[str, int]], run: dict[str, list[str]]) -> float:
    import ir_measures
    from ir_measures import nDCG

    scored = {
        q: ({d: float(100 - i) for i, d in enumerate(ids)} or {"none": 0.0})
        for q, ids in run.items()
    }
    return float(ir_measures.calc_aggregate([nDCG @ 10], qrels, scored)[nDCG @ 10])


# ---- SciFact --------------------------------------------------------------------------------


def scifact_vectors(
    data: Path, cache: Path
) -> tuple[list[Any], np.ndarray, dict[str, str], np.ndarray]:
    docs = list(read_corpus(data))
    queries = read_queries(data)
    qrels = read_qrels(data)
    qids = [q for q in qrels if q in queries]
    cache.mkdir(parents=True, exist_ok=True)
    doc_file, query_file = cache / "scifact_docs.npy", cache / "scifact_queries.npy"
    if doc_file.exists() and query_file.exists():
        doc_vecs, query_vecs = np.load(doc_file), np.load(query_file)
    else:
        embedder = LocalEmbedder()
        started = time.perf_counter()
        doc_vecs = embedder.embed_documents([d.content for d in docs])
        print(
            f"  embedded {len(docs)} passages in {time.perf_counter() - started:.0f}s "
            f"(bf16={embedder.uses_bf16})"
        )
        query_vecs = embedder.embed_queries([queries[q] for q in qids])
        np.save(doc_file, doc_vecs)
        np.save(query_file, query_vecs)
    return docs, doc_vecs, {q: queries[q] for q in qids}, query_vecs


def bench_scifact(data: Path, baselines: bool) -> dict[str, Any]:
    print("SciFact")
    docs, doc_vecs, queries, query_vecs = scifact_vectors(data, RESULTS / "cache")
    qrels = read_qrels(data)
    qids, qtexts = list(queries), list(queries.values())
    out: dict[str, Any] = {}
    with HybridStore(embedder=FixedDimEmbedder(doc_vecs.shape[1])) as store:
        store.upsert([Record(d.id, d.content, {}, doc_vecs[i]) for i, d in enumerate(docs)])
        ms, answers = latencies(
            lambda i: store.search_by_vector(query_vecs[i], query=qtexts[i], k=10).ids, len(qids)
        )
        out["ragkit"] = {"ndcg@10": ndcg(qrels, dict(zip(qids, answers))), **pct(ms)}
    if baselines:
        table = {d.content: doc_vecs[i] for i, d in enumerate(docs)}
        table.update({t: query_vecs[i] for i, t in enumerate(qtexts)})
        ids, texts = [d.id for d in docs], [d.content for d in docs]
        for name, build in (
            ("langchain_ensemble", langchain_ensemble),
            ("llamaindex_fusion", llamaindex_fusion),
        ):
            search = build(ids, texts, table, 10)
            ms, answers = latencies(lambda i, s=search: s(qtexts[i]), len(qids))
            out[name] = {"ndcg@10": ndcg(qrels, dict(zip(qids, answers))), **pct(ms)}
    return out


# ---- synthetic ------------------------------------------------------------------------------


def bench_synthetic(
    n_docs: int, n_queries: int, baselines: bool, baseline_queries: int
) -> dict[str, Any]:
    print(f"synthetic: generating {n_docs:,} documents")
    corpus = generate(n_docs, n_queries)
    out: dict[str, Any] = {"docs": n_docs}
    with tempfile.TemporaryDirectory() as scratch:
        shard = LocalShard(Path(scratch) / "kb")
        store = HybridStore(backend=shard, embedder=FixedDimEmbedder(corpus.vectors.shape[1]))
        records = [
            Record(f"d{i}", t, {"bucket": int(corpus.buckets[i])}, corpus.vectors[i])
            for i, t in enumerate(corpus.texts)
        ]
        rss_before = peak_rss_mb()
        started = time.perf_counter()
        for start in range(0, n_docs, 5000):
            store.upsert(records[start : start + 5000])
        ingest_s = time.perf_counter() - started
        started = time.perf_counter()
        shard.checkpoint()
        checkpoint_s = time.perf_counter() - started
        out["ingest"] = {
            "docs_per_s": n_docs / ingest_s,
            "seconds": ingest_s,
            "checkpoint_s": checkpoint_s,
        }
        print(
            f"  ingest {n_docs / ingest_s:,.0f} docs/s ({ingest_s:.1f}s), "
            f"checkpoint {checkpoint_s:.1f}s"
        )
        qv, qt = corpus.query_vectors, corpus.query_texts
        ms, _ = latencies(lambda i: store.search_by_vector(qv[i], query=qt[i], k=10), n_queries)
        out["hybrid"] = pct(ms)
        flt = {"bucket": 3}
        ms, _ = latencies(
            lambda i: store.search_by_vector(qv[i], query=qt[i], k=10, filter=flt), n_queries
        )
        out["hybrid_filtered_10pct"] = pct(ms)
        ms, dense = latencies(lambda i: store.search_by_vector(qv[i], k=10).ids, n_queries)
        out["dense"] = pct(ms)
        ms, _ = latencies(lambda i: shard.search_lexical(qt[i], 10), n_queries)
        out["lexical"] = pct(ms)
        exact = np.argsort(-(qv[:200] @ corpus.vectors.T), axis=1)[:, :10]
        recall = np.mean(
            [len({f"d{j}" for j in exact[i]} & set(dense[i])) / 10 for i in range(len(exact))]
        )
        out["dense_recall@10_vs_exact"] = float(recall)
        found = np.mean(
            [
                f"d{corpus.query_sources[i]}"
                in set(store.search_by_vector(qv[i], query=qt[i], k=10).ids)
                for i in range(200)
            ]
        )
        out["hybrid_source_doc_in_top10"] = float(found)
        out["peak_rss_mb"] = peak_rss_mb()
        out["rss_growth_mb"] = peak_rss_mb() - rss_before
        out["info"] = shard.info()
        store.close()
        if baselines:
            table = {t: corpus.vectors[i] for i, t in enumerate(corpus.texts)}
            table.update({t: qv[i] for i, t in enumerate(qt)})
            ids = [f"d{i}" for i in range(n_docs)]
            for name, build in (
                ("langchain_ensemble", langchain_ensemble),
                ("llamaindex_fusion", llamaindex_fusion),
            ):
                print(f"  building {name} over {n_docs:,} documents")
                started = time.perf_counter()
                search = build(ids, corpus.texts, table, 10)
                build_s = time.perf_counter() - started
                ms, _ = latencies(lambda i, s=search: s(qt[i]), baseline_queries, warmup=1)
                out[name] = {"build_s": build_s, **pct(ms)}
                del search
    return out


def report(results: dict[str, Any]) -> None:
    sci = results.get("scifact", {})
    if sci:
        print("\nSciFact hybrid top-10 (query embedding excluded)")
        base = sci["ragkit"]
        for name, row in sci.items():
            print(
                f"  {name:20s} nDCG@10 {row['ndcg@10']:.4f}  p50 {row['p50_ms']:8.2f} ms  "
                f"p99 {row['p99_ms']:8.2f} ms  speedup x{row['p50_ms'] / base['p50_ms']:.1f}  "
                f"quality ratio {base['ndcg@10'] / row['ndcg@10']:.3f}"
            )
    syn = results.get("synthetic", {})
    if syn:
        print(f"\nSynthetic {syn['docs']:,} docs (384-d)")
        print(
            f"  ingest {syn['ingest']['docs_per_s']:,.0f} docs/s; "
            f"peak RSS {syn['peak_rss_mb']:,.0f} MB; "
            f"dense recall@10 vs exact {syn['dense_recall@10_vs_exact']:.3f}"
        )
        for key in (
            "hybrid",
            "hybrid_filtered_10pct",
            "dense",
            "lexical",
            "langchain_ensemble",
            "llamaindex_fusion",
        ):
            if key in syn:
                row = syn[key]
                ratio = row["p50_ms"] / syn["hybrid"]["p50_ms"]
                print(
                    f"  {key:22s} p50 {row['p50_ms']:9.2f} ms  p99 {row['p99_ms']:9.2f} ms"
                    f"  (x{ratio:.1f} of ragkit hybrid)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--baseline-queries", type=int, default=20)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--only", choices=["scifact", "synthetic"], default=None)
    parser.add_argument("--scifact", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "python": platform.python_version(),
        "command": " ".join(sys.argv),
    }
    if args.only in (None, "scifact"):
        results["scifact"] = bench_scifact(args.scifact, not args.no_baselines)
    if args.only in (None, "synthetic"):
        results["synthetic"] = bench_synthetic(
            args.docs, args.queries, not args.no_baselines, args.baseline_queries
        )
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"local-{args.only or 'all'}-{args.docs}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
