"""Caching benchmark: a Zipf-distributed repeated-query workload, end to end (query embedding
included), with and without caches; and the caches' overhead on a miss.

    .venv/bin/python bench/bench_cache.py

Store: SciFact (5,183 docs; vectors from bench_local.py's cache or embedded here), default
HybridStore settings, LocalEmbedder (bf16 MiniLM) for the queries. Workload: 2,000 requests
drawn from SciFact's 1,109 claims with Zipf(s=1.1) popularity. Miss overhead: 600 distinct
claims, each timed on a store without caches and one with them, interleaved.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from bench_local import RESULTS, scifact_vectors

from ragkit import HybridStore, Record
from ragkit.beir import read_queries
from ragkit.cache import MemoryCache
from ragkit.embeddings import LocalEmbedder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def run(store: HybridStore, queries: list[str]) -> dict[str, float]:
    started = time.perf_counter()
    lat = []
    for q in queries:
        t = time.perf_counter()
        store.search(q, k=10)
        lat.append((time.perf_counter() - t) * 1000)
    total = time.perf_counter() - started
    arr = np.array(lat)
    return {
        "qps": len(queries) / total,
        "mean_ms": float(arr.mean()),
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
    }


def main() -> None:
    docs, doc_vecs, _, _ = scifact_vectors(DATA, RESULTS / "cache")
    claims = list(read_queries(DATA).values())
    rng = np.random.default_rng(0)
    ranks = np.arange(1, len(claims) + 1)
    weights = 1.0 / ranks**1.1
    weights /= weights.sum()
    order = rng.permutation(len(claims))
    workload = [claims[order[i]] for i in rng.choice(len(claims), size=2000, p=weights)]
    embedder = LocalEmbedder()
    records = [Record(d.id, d.content, {}, doc_vecs[i]) for i, d in enumerate(docs)]
    configs: dict[str, dict[str, Any]] = {
        "no caches": {"query_embedding_cache": False},
        "query-embedding cache (default)": {},
        "embedding + result cache": {"cache": MemoryCache(50_000), "result_cache": True},
    }
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "requests": len(workload),
        "distinct": len(set(workload)),
    }
    for name, kwargs in configs.items():
        with HybridStore(embedder=embedder, **kwargs) as store:
            store.upsert(records)
            store.search("warm up the model", k=10)
            results[name] = run(store, workload)
            print(f"{name:34s} {results[name]}")
    # Miss overhead, side by side: every claim once (nothing repeats, so every lookup
    # misses), each query timed on a store without caches and on one with them, in
    # alternating order so drift on a noisy machine hits both alike.
    distinct = claims[:600]
    stores = {
        "off": HybridStore(embedder=embedder, query_embedding_cache=False),
        "on": HybridStore(embedder=embedder, cache=MemoryCache(50_000), result_cache=True),
    }
    for store in stores.values():
        store.upsert(records)
        store.search("warm up the model", k=10)
    timings: dict[str, list[float]] = {"off": [], "on": []}
    for i, query in enumerate(distinct):
        for label in ("off", "on") if i % 2 == 0 else ("on", "off"):
            t = time.perf_counter()
            stores[label].search(query, k=10)
            timings[label].append((time.perf_counter() - t) * 1000)
    for store in stores.values():
        store.close()
    off, on = float(np.mean(timings["off"])), float(np.mean(timings["on"]))
    results["miss_overhead"] = {
        "off_mean_ms": off,
        "on_mean_ms": on,
        "overhead_pct": 100 * (on / off - 1),
    }
    print("miss overhead", results["miss_overhead"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cache.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
