"""The benchmark report: every figure of BENCHMARKS.md's "Benchmark report" section and its
plots, in one run, each as a ratio to the peers measured in the same run.

    .venv/bin/python bench/report.py                          # about 20 minutes on 2 cores
    .venv/bin/python bench/report.py --sizes 10000 100000     # the curves up to 100k only

1. Quality on SciFact (BEIR test split, 5,183 passages, 300 queries; benchmark data, not
   shipped): nDCG@10 and Recall@100 for ragkit (dense, lexical, hybrid with each fusion) beside
   LangChain's EnsembleRetriever (BM25Retriever + Chroma), LlamaIndex's QueryFusionRetriever
   (reciprocal rerank and relative score; bm25s + VectorStoreIndex), bm25s alone and tantivy
   alone; every system gets the same precomputed all-MiniLM-L6-v2 vectors, and the same
   query latency is timed for each (one client).
2. Speed curves over corpus size (synthetic passages, ``bench/_synthetic.py``): hybrid top-10
   p50/p99, QPS with 1 and 8 client threads, ingest throughput without embedding and memory,
   for ragkit embedded (LocalShard), ragkit sharded (4 in-process hosts, 8 partitions) and the
   two framework retrievers; a peer stops at the first size where its build takes over a
   minute or a query over a second (the report says where).
3. Ingest with embedding: the local embedder (bf16 all-MiniLM-L6-v2) on SciFact passages.

Writes ``bench/results/report.json``, the plots ``docs/img/*.png``, the section between the
report markers in BENCHMARKS.md, and the site's copy of it (``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import psutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import _baselines
from _load import run_clients
from _synthetic import generate
from bench_local import RESULTS, scifact_vectors
from bench_speed import Reference

from ragkit import HybridStore, Record
from ragkit.backends import ShardedStore
from ragkit.backends.sharded import LocalHost
from ragkit.beir import read_qrels
from ragkit.embeddings import HashingEmbedder, LocalEmbedder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"
IMG = ROOT / "docs" / "img"
START, END = "<!-- report:start -->", "<!-- report:end -->"
BUILD_LIMIT_S, QUERY_LIMIT_S = 60.0, 1.0


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss / 2**20)


def timed(search: Any, queries: list[Any], n: int) -> dict[str, float]:
    for q in queries[:3]:
        search(q)
    ms = []
    for i in range(n):
        started = time.perf_counter()
        search(queries[i % len(queries)])
        ms.append((time.perf_counter() - started) * 1000)
    arr = np.array(ms)
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "qps_1": float(1000 / arr.mean()),
    }


def qps_threads(search: Any, queries: list[Any], clients: int, seconds: float) -> float:
    done, took = run_clients(lambda i: search(queries[i % len(queries)]), clients, seconds)
    return done / took


# ---- 1. quality ------------------------------------------------------------------------------


class Tantivy:
    """tantivy alone: BM25 with its English stemming tokenizer, disjunctive query."""

    def __init__(self, ids: list[str], texts: list[str]) -> None:
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_text_field("id", stored=True, tokenizer_name="raw")
        builder.add_text_field("body", stored=False, tokenizer_name="en_stem")
        self.index = tantivy.Index(builder.build())
        writer = self.index.writer(heap_size=200_000_000, num_threads=1)
        for rid, text in zip(ids, texts):
            writer.add_document(tantivy.Document(id=rid, body=text))
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()

    def search(self, text: str, k: int) -> list[str]:
        query = self.index.parse_query(re.sub(r"[^\w\s]", " ", text), ["body"])
        return [self.searcher.doc(addr)["id"][0] for _, addr in self.searcher.search(query, k).hits]


def quality(data: Path) -> dict[str, Any]:
    import ir_measures
    from ir_measures import R, nDCG

    docs, doc_vecs, queries, query_vecs = scifact_vectors(data, RESULTS / "cache")
    qrels = read_qrels(data)
    qids = list(queries)
    texts = [queries[q] for q in qids]
    ids = [d.id for d in docs]
    contents = [d.content for d in docs]
    table = dict(zip(contents, doc_vecs)) | dict(zip(texts, query_vecs))
    systems: dict[str, Any] = {}

    scratch = tempfile.mkdtemp(prefix="ragkit-report-")
    store = HybridStore(Path(scratch) / "kb", embedder=HashingEmbedder(dim=384))
    store.upsert([Record(i, t, {}, v) for i, t, v in zip(ids, contents, doc_vecs)])
    pairs = list(zip(texts, query_vecs))
    systems["ragkit dense"] = lambda q: store.search_by_vector(q[1], k=100, mode="dense").ids
    systems["ragkit lexical (BM25)"] = lambda q: store.search(q[0], k=100, mode="lexical").ids
    for fusion in ("calibrated", "relative_score", "dbsf", "rrf"):
        label = f"ragkit hybrid, {fusion}" + (" (default)" if fusion == "calibrated" else "")
        systems[label] = lambda q, f=fusion: (
            store.search_by_vector(q[1], query=q[0], k=100, fusion=f).ids
        )
    reference = Reference(ids, contents, doc_vecs)

    def bm25s_alone(q: tuple[str, Any]) -> list[str]:
        import bm25s

        tokens = bm25s.tokenize(
            [q[0]], stopwords="en", stemmer=reference.stemmer, show_progress=False
        )
        rows, _ = reference.bm25.retrieve(tokens, k=100, show_progress=False, n_threads=1)
        return [ids[r] for r in rows[0]]

    systems["bm25s alone"] = bm25s_alone
    tantivy_index = Tantivy(ids, contents)
    systems["tantivy alone"] = lambda q: tantivy_index.search(q[0], 100)
    ensemble = _baselines.langchain_ensemble(ids, contents, table, 100)
    systems["LangChain EnsembleRetriever (BM25Retriever + Chroma)"] = lambda q: ensemble(q[0])
    for mode in ("reciprocal_rerank", "relative_score"):
        fusion_search = _baselines.llamaindex_fusion(ids, contents, table, 100, mode)
        systems[f"LlamaIndex QueryFusionRetriever ({mode})"] = lambda q, s=fusion_search: s(q[0])

    out: dict[str, Any] = {}
    for name, search in systems.items():
        run: dict[str, dict[str, float]] = {}
        ms = []
        for qid, pair in zip(qids, pairs):
            started = time.perf_counter()
            found = list(search(pair))[:100]
            ms.append((time.perf_counter() - started) * 1000)
            run[qid] = {rid: float(100 - i) for i, rid in enumerate(found)} or {"none": 0.0}
        scores = ir_measures.calc_aggregate([nDCG @ 10, R @ 100], qrels, run)
        out[name] = {
            "ndcg@10": float(scores[nDCG @ 10]),
            "recall@100": float(scores[R @ 100]),
            "p50_ms": float(np.percentile(ms, 50)),
        }
        print(f"  {name}: {out[name]}", flush=True)
    store.close()
    shutil.rmtree(scratch, ignore_errors=True)
    return out


# ---- 2. speed curves -------------------------------------------------------------------------


def curve_point(
    name: str, build: Any, sizes_left: dict[str, bool], n: int, corpus: Any, seconds: float
) -> dict[str, Any] | None:
    if not sizes_left.get(name, True):
        return None
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    search, close = build()
    build_s = time.perf_counter() - started
    queries = list(zip(corpus.query_texts, corpus.query_vectors))
    lat = timed(search, queries, 100 if name.startswith("ragkit") else 20)
    point = {
        "docs": n,
        "build_s": build_s,
        "ingest_docs_per_s": n / build_s,
        "memory_mb": rss_mb() - before,
        **lat,
    }
    if lat["p50_ms"] < QUERY_LIMIT_S * 1000:
        point["qps_8"] = qps_threads(search, queries, 8, seconds)
    close()
    over = build_s > BUILD_LIMIT_S or lat["p50_ms"] > QUERY_LIMIT_S * 1000
    if over and not name.startswith("ragkit"):  # the limits are for the peers
        sizes_left[name] = False  # the next, larger size is not measured (stated in the report)
        point["stopped_after"] = True
    print(f"  {name} @ {n:,}: {point}", flush=True)
    return point


def builders(corpus: Any) -> list[tuple[str, Any]]:
    """Each system's build function for one corpus: returns (search, close)."""
    records = [
        Record(f"d{i}", t, {"bucket": int(b)}, v)
        for i, (t, v, b) in enumerate(zip(corpus.texts, corpus.vectors, corpus.buckets))
    ]
    ids = [r.id for r in records]
    table = {r.text: r.vector for r in records} | dict(
        zip(corpus.query_texts, corpus.query_vectors)
    )

    def fill(store: HybridStore, scratch: str) -> tuple[Any, Any]:
        for start in range(0, len(records), 5000):
            store.upsert(records[start : start + 5000])

        def close() -> None:  # the store, then its directory (gigabytes at 1M)
            store.close()
            shutil.rmtree(scratch, ignore_errors=True)

        return (lambda q: store.search_by_vector(q[1], query=q[0], k=10)), close

    def embedded() -> tuple[Any, Any]:
        scratch = tempfile.mkdtemp(prefix="ragkit-report-")
        store = HybridStore(Path(scratch) / "kb", embedder=HashingEmbedder(dim=384))
        return fill(store, scratch)

    def sharded() -> tuple[Any, Any]:
        scratch = tempfile.mkdtemp(prefix="ragkit-report-")
        hosts = [LocalHost(f"h{i}", str(Path(scratch) / f"h{i}")) for i in range(4)]
        router = ShardedStore(hosts, partitions=8, replicas=1)
        return fill(HybridStore(backend=router, embedder=HashingEmbedder(dim=384)), scratch)

    def ensemble() -> tuple[Any, Any]:
        search = _baselines.langchain_ensemble(ids, corpus.texts, table, 10)
        return (lambda q: search(q[0])), (lambda: None)

    def query_fusion() -> tuple[Any, Any]:
        search = _baselines.llamaindex_fusion(ids, corpus.texts, table, 10)
        return (lambda q: search(q[0])), (lambda: None)

    return [
        ("ragkit embedded", embedded),
        ("ragkit sharded (4 hosts, 8 partitions)", sharded),
        ("LangChain EnsembleRetriever", ensemble),
        ("LlamaIndex QueryFusionRetriever", query_fusion),
    ]


def curves(sizes: list[int], seconds: float) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    sizes_left: dict[str, bool] = {}
    for n in sizes:
        corpus = generate(n, 200)
        for name, build in builders(corpus):
            point = curve_point(name, build, sizes_left, n, corpus, seconds)
            if point is not None:
                out.setdefault(name, []).append(point)
        del corpus
        gc.collect()
    return out


def ingest_with_embedding(data: Path, n: int) -> dict[str, float]:
    from ragkit.beir import read_corpus

    docs = [d for _, d in zip(range(n), read_corpus(data))]
    store = HybridStore(embedder=LocalEmbedder())
    store.add_texts(["warm up the model"])
    started = time.perf_counter()
    store.add_texts([d.content for d in docs], ids=[d.id for d in docs])
    seconds = time.perf_counter() - started
    return {"passages": n, "per_s": n / seconds, "bf16": bool(store.embedder.uses_bf16)}  # type: ignore[attr-defined]


# ---- 3. plots and the report ------------------------------------------------------------------


def plots(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    q = results["quality"]
    names = list(q)
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 1.2))
    y = np.arange(len(names))
    ax.barh(y - 0.2, [q[n]["ndcg@10"] for n in names], 0.4, label="nDCG@10")
    ax.barh(y + 0.2, [q[n]["recall@100"] for n in names], 0.4, label="Recall@100")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0.5, 1.0)
    ax.legend(loc="lower right")
    ax.set_title("SciFact (test, 300 queries), identical all-MiniLM-L6-v2 vectors")
    fig.tight_layout()
    fig.savefig(IMG / "quality.png", dpi=110)
    plt.close(fig)

    c = results["curves"]
    for key, label, file in (
        ("p50_ms", "hybrid top-10 p50 (ms, log)", "latency.png"),
        ("qps_8", "queries/s with 8 client threads (log)", "qps.png"),
        ("ingest_docs_per_s", "ingest without embedding (docs/s, log)", "ingest.png"),
        ("memory_mb", "memory of the built index (MB, log)", "memory.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for name, points in c.items():
            xs = [p["docs"] for p in points if key in p]
            ys = [max(p[key], 1e-3) for p in points if key in p]
            if xs:
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("documents")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(IMG / file, dpi=110)
        plt.close(fig)


def markdown(results: dict[str, Any]) -> str:
    q = results["quality"]
    best_peer = max((n for n in q if not n.startswith("ragkit")), key=lambda n: q[n]["ndcg@10"])
    default = next(n for n in q if n.endswith("(default)"))
    lines = [
        START,
        f"## Benchmark report — {results['date']}",
        "",
        "One command reproduces every figure and plot of this section (about 20 minutes on",
        "these 2 cores; `bench/results/report.json`):",
        "",
        "```bash",
        ".venv/bin/python bench/report.py",
        "```",
        "",
        f"Machine: {results['machine']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + ".",
        "",
        "### Quality on SciFact",
        "",
        "Every system gets the same passages and the same precomputed all-MiniLM-L6-v2",
        "vectors; p50 is one client, embedding excluded. Ratios are to the best peer in the",
        f"run ({best_peer}).",
        "",
        "| system | nDCG@10 | Recall@100 | p50 | nDCG@10 vs best peer |",
        "|---|---|---|---|---|",
    ]
    for name, r in q.items():
        ratio = r["ndcg@10"] / q[best_peer]["ndcg@10"]
        lines.append(
            f"| {name} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | {r['p50_ms']:.2f} ms "
            f"| {ratio:.3f} |"
        )
    lines += [
        "",
        f"ragkit's default ({default}) against the best peer: nDCG@10 x"
        f"{q[default]['ndcg@10'] / q[best_peer]['ndcg@10']:.3f}, p50 "
        f"x{q[best_peer]['p50_ms'] / q[default]['p50_ms']:.1f} faster.",
        "",
        "![Quality on SciFact](docs/img/quality.png)",
        "",
        "### Speed over corpus size",
        "",
        "Synthetic passages shaped like real ones (`bench/_synthetic.py`), 384-d vectors, hybrid",
        "top 10 (the peers: their default fusion), 100 timed queries for ragkit, 20 for the",
        f"peers, then 8 client threads for {results['seconds']:.0f} s. A peer stops at the first",
        f"size where its build takes over {BUILD_LIMIT_S:.0f} s or a query over",
        f"{QUERY_LIMIT_S:.0f} s (marked \\*).",
        "",
        "| system | docs | build | ingest docs/s | p50 | p99 | QPS 1 | QPS 8 | memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, points in results["curves"].items():
        for p in points:
            star = " \\*" if p.get("stopped_after") and not name.startswith("ragkit") else ""
            qps8 = f"{p['qps_8']:.1f}" if "qps_8" in p else "-"
            lines.append(
                f"| {name}{star} | {p['docs']:,} | {p['build_s']:.1f} s | "
                f"{p['ingest_docs_per_s']:,.0f} | {p['p50_ms']:.2f} ms | {p['p99_ms']:.2f} ms | "
                f"{p['qps_1']:.1f} | {qps8} | {p['memory_mb']:,.0f} MB |"
            )
    embedded = {p["docs"]: p for p in results["curves"].get("ragkit embedded", [])}
    ratio_lines = []
    for name, points in results["curves"].items():
        if name.startswith("ragkit"):
            continue
        for p in points:
            if p["docs"] in embedded:
                ratio_lines.append(
                    f"- {name} at {p['docs']:,}: ragkit embedded p50 x"
                    f"{p['p50_ms'] / embedded[p['docs']]['p50_ms']:.0f} faster, build x"
                    f"{p['build_s'] / embedded[p['docs']]['build_s']:.1f} faster."
                )
    emb = results["ingest_with_embedding"]
    lines += [
        "",
        *ratio_lines,
        "",
        "![Latency over corpus size](docs/img/latency.png)",
        "![Throughput over corpus size](docs/img/qps.png)",
        "![Ingest over corpus size](docs/img/ingest.png)",
        "![Memory over corpus size](docs/img/memory.png)",
        "",
        "### Ingest with embedding",
        "",
        f"The local embedder (all-MiniLM-L6-v2, bf16={emb['bf16']}) on {emb['passages']} SciFact",
        f"passages: {emb['per_s']:.1f} passages/s, embedding included; without embedding, the",
        "curves above. On 2 cores the model is the bottleneck of an ingest by two orders of",
        "magnitude.",
        END,
    ]
    return "\n".join(lines)


def write_report(results: dict[str, Any]) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    section = markdown(results)
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    site_copy(text)


def site_copy(text: str) -> None:
    """docs/benchmarks.md: BENCHMARKS.md with image paths relative to docs/."""
    (ROOT / "docs" / "benchmarks.md").write_text(text.replace("](docs/img/", "](img/"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--render-only", action="store_true", help="plots and report from report.json"
    )
    parser.add_argument("--scifact", type=Path, default=DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seconds", type=float, default=10.0, help="8-client QPS duration")
    parser.add_argument("--embed-passages", type=int, default=300)
    args = parser.parse_args()
    if args.render_only:
        results = json.loads((RESULTS / "report.json").read_text())
        plots(results)
        write_report(results)
        return
    results = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "versions": {
            pkg: version(pkg)
            for pkg in (
                "ragkit",
                "langchain-core",
                "llama-index-core",
                "chromadb",
                "bm25s",
                "tantivy",
                "numpy",
                "hnswlib",
            )
        },
        "seconds": args.seconds,
    }
    print("quality", flush=True)
    results["quality"] = quality(args.scifact)
    print("curves", flush=True)
    results["curves"] = curves(args.sizes, args.seconds)
    print("ingest with embedding", flush=True)
    results["ingest_with_embedding"] = ingest_with_embedding(args.scifact, args.embed_passages)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(results, indent=2))
    plots(results)
    write_report(results)


if __name__ == "__main__":
    main()
