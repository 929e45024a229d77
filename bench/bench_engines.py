"""SciFact through MilvusShard (milvus-lite) and QdrantShard (local mode), beside a LocalShard.

    .venv/bin/python bench/bench_engines.py            # about 70 minutes on 2 cores

One run, one backend after the other, the same SciFact passages and vectors (real
all-MiniLM-L6-v2, cached by bench_local.py) and the same query embeddings (one shared cache,
so every backend sees identical query vectors). For each backend:

- ingest: ``upsert`` of the 5,183 passages with their vectors in batches of 500, docs/s;
- nDCG@10 over the 300 test queries: hybrid with ragkit's calibrated fusion, dense, lexical,
  and (Milvus, Qdrant) hybrid with ``fusion="native"`` (Milvus's WeightedRanker, Qdrant's
  RRF); ``ragkit.evaluation.evaluate``;
- ``ragkit.evaluation.separation``: ROC AUC of the top-1 calibrated hybrid score of the 300
  test queries against 300 off-topic questions;
- p50 / p95 of a calibrated hybrid search (k=10) over the 300 test queries, query vector given
  (embedding excluded), after one warm-up pass.

milvus-lite and Qdrant's local mode are pure-Python engines for development and tests: their
latencies say what ragkit adds on them, not what a Milvus or Qdrant server does. Writes
``bench/results/engines.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from bench_local import RESULTS, scifact_vectors

from ragkit import HybridStore, Record
from ragkit.backends import LocalShard, MilvusShard, QdrantShard, Shard
from ragkit.cache.backends import MemoryCache
from ragkit.embeddings import LocalEmbedder
from ragkit.evaluation import evaluate, separation

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def backends(root: Path) -> dict[str, Any]:
    return {
        "LocalShard": lambda: LocalShard(root / "local"),
        "MilvusShard (milvus-lite)": lambda: MilvusShard(str(root / "kb.db"), collection="scifact"),
        "QdrantShard (local mode)": lambda: QdrantShard(path=str(root / "qdrant")),
    }


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run(
    name: str, shard: Shard, records: list[Record], embedder: Any, cache: Any
) -> dict[str, Any]:
    started = time.perf_counter()
    for i in range(0, len(records), 500):
        shard.upsert(records[i : i + 500])
    ingest = len(records) / (time.perf_counter() - started)
    store = HybridStore(backend=shard, embedder=embedder, cache=cache)
    out: dict[str, Any] = {"ingest_docs_per_s": round(ingest, 1), "ndcg@10": {}}
    modes = [("hybrid", {}), ("dense", {}), ("lexical", {})]
    if not isinstance(shard, LocalShard):
        modes.append(("hybrid-native", {"fusion": "native"}))
    for label, options in modes:
        mode = label.split("-")[0]
        (quality,) = evaluate(store, DATA, [mode], **options)
        out["ndcg@10"][label] = round(quality.ndcg_at_10, 4)
        print(f"{name}: {label} nDCG@10 {quality.ndcg_at_10:.4f}", flush=True)
    queries = list(_queries().values())
    split = separation(store, queries)
    out["auc_off_topic"] = round(split.auc, 4)
    vectors = store.caches.query_vectors(queries)
    for q, v in zip(queries, vectors):  # warm-up
        store.search_by_vector(v, query=q, k=10)
    times = []
    for q, v in zip(queries, vectors):
        t = time.perf_counter()
        store.search_by_vector(v, query=q, k=10)
        times.append((time.perf_counter() - t) * 1000)
    out["hybrid_ms_p50"] = round(statistics.median(times), 2)
    out["hybrid_ms_p95"] = round(float(np.percentile(times, 95)), 2)
    print(name, out, flush=True)
    return out


def _queries() -> dict[str, str]:
    from ragkit.beir import read_qrels, read_queries

    queries, qrels = read_queries(DATA), read_qrels(DATA, "test")
    return {q: queries[q] for q in qrels if q in queries}


def main() -> None:
    docs, doc_vecs, _, _ = scifact_vectors(DATA, RESULTS / "cache")
    records = [Record(d.id, d.content, {}, doc_vecs[i]) for i, d in enumerate(docs)]
    embedder, cache = LocalEmbedder(), MemoryCache()
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "cpu": cpu(),
        "command": "python bench/bench_engines.py",
        "docs": len(records),
        "backends": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in backends(Path(tmp)).items():
            shard = make()
            try:
                result["backends"][name] = run(name, shard, records, embedder, cache)
            finally:
                shard.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engines.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
