"""The model paths side by side: ragkit's ingest against each runtime's own padded encode,
quality, query latency and peak RSS. Each path runs in its own process (peak RSS is a
process's), started by ``bench_ingest.py --model-paths``; see that script's docstring."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ragkit import HybridStore
from ragkit.beir import read_corpus, read_qrels, read_queries
from ragkit.embeddings import LocalEmbedder
from ragkit.evaluation import evaluate
from ragkit.ingest import IngestPipeline, MarkdownChunker, SourceDocument, WholeChunker
from ragkit.ingest.loaders import load_folder

PATHS = ("torch:bf16", "torch:fp32", "onnx:fp32", "onnx:int8", "openvino:fp32", "openvino:bf16")
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
ONNX_CACHE = Path(__file__).parent / "results" / "cache" / "onnx"


def python_docs_available() -> bool:
    """Debian's python3.11-doc, installed here when missing (root with apt-get only)."""
    if PYTHON_DOCS.is_dir():
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["update", "-qq"], ["install", "-y", "-qq", "python3.11-doc"]):
            subprocess.run(["apt-get", *command], check=False, capture_output=True, env=env)
    return PYTHON_DOCS.is_dir()


def corpus_sources(corpus: str, scifact: Path, files: int) -> tuple[list[SourceDocument], Any]:
    if corpus == "scifact":
        docs = [SourceDocument(d.id, d.content) for d in read_corpus(scifact)]
        return docs, WholeChunker()
    docs = list(load_folder(PYTHON_DOCS, source_name="python-docs"))
    if files and files < len(docs):
        docs = random.Random(0).sample(docs, files)
    return docs, MarkdownChunker()


def padded_encode(embedder: LocalEmbedder, texts: list[str]) -> float:
    """Texts per second of the runtime's own encode: length-sorted, padded batches of 64."""
    started = time.perf_counter()
    if embedder.runtime == "torch":
        embedder.model.encode(texts, batch_size=64, convert_to_numpy=True)
    else:
        ids = sorted(embedder.graph.token_ids(texts), key=len)
        for start in range(0, len(ids), 64):
            embedder.graph.encode_ids(ids[start : start + 64])
    return len(texts) / (time.perf_counter() - started)


def worker(path: str, corpus: str, scifact: Path, files: int, sample: int, out: Path) -> None:
    runtime, precision = path.split(":")
    embedder = LocalEmbedder(runtime=runtime, precision=precision, cache_dir=ONNX_CACHE)  # type: ignore[arg-type]
    docs, chunker = corpus_sources(corpus, scifact, files)
    chunks = [c.text for d in docs for c in chunker.split(d)]
    picked = random.Random(1).sample(chunks, min(sample, len(chunks)))
    embedder.embed_documents(picked[:64])  # load and warm up (and export, the first time)
    model_rate = padded_encode(embedder, picked)
    row: dict[str, Any] = {"path": path, "corpus": corpus, "chunks": len(chunks)}
    row["model_chunks_per_s"] = model_rate
    with tempfile.TemporaryDirectory() as scratch:
        store = HybridStore(Path(scratch) / "kb", embedder=embedder, query_embedding_cache=False)
        started = time.perf_counter()
        report = IngestPipeline(store, chunker=chunker).ingest(docs)
        seconds = time.perf_counter() - started
        row["ingest_chunks_per_s"] = report.embedded / seconds
        row["ingest_to_model"] = row["ingest_chunks_per_s"] / model_rate
        if corpus == "scifact":
            for result in evaluate(store, scifact, ["hybrid", "dense"]):
                row[f"ndcg10_{result.mode}"] = result.ndcg_at_10
            judged = read_qrels(scifact, "test")
            queries = [q for i, q in read_queries(scifact).items() if i in judged]
            for query in queries[:20]:
                store.search(query, k=10)
            latencies = []
            for query in queries:
                begun = time.perf_counter()
                store.search(query, k=10)
                latencies.append((time.perf_counter() - begun) * 1000)
            row["text_to_hits_p50_ms"] = statistics.median(latencies)
        store.close()
    np.save(out.with_suffix(".npy"), embedder.embed_documents(picked[:256]))
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(row))


def compare(corpus: str, scifact: Path, files: int, sample: int) -> list[dict[str, Any]]:
    """Every path on ``corpus``, one process each, one after the other; cosines to the
    torch fp32 vectors of the same sampled chunks."""
    rows = []
    for path in PATHS:  # export first (a one-time cost that would inflate the peak RSS)
        runtime, precision = path.split(":")
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from ragkit.embeddings import LocalEmbedder; "
                f"LocalEmbedder(runtime={runtime!r}, precision={precision!r}, "
                f"cache_dir={str(ONNX_CACHE)!r}).embed_query('warm')",
            ],
            check=True,
        )
    with tempfile.TemporaryDirectory() as scratch:
        for path in PATHS:
            out = Path(scratch) / f"{path.replace(':', '-')}.json"
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    path,
                    corpus,
                    str(scifact),
                    str(files),
                    str(sample),
                    str(out),
                ],
                check=True,
            )
            rows.append(
                {**json.loads(out.read_text()), "vectors": np.load(out.with_suffix(".npy"))}
            )
    reference = next(r["vectors"] for r in rows if r["path"] == "torch:fp32")
    for row in rows:
        cosines = np.sum(row.pop("vectors") * reference, axis=1)
        row["cosine_to_fp32_min"] = float(cosines.min())
        row["cosine_to_fp32_mean"] = float(cosines.mean())
    return rows


if __name__ == "__main__":
    path_, corpus_, scifact_, files_, sample_, out_ = sys.argv[1:]
    worker(path_, corpus_, Path(scifact_), int(files_), int(sample_), Path(out_))
