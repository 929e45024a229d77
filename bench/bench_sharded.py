"""Sharded benchmark: 8 RayShards versus one LocalShard on the same machine.

    .venv/bin/python bench/bench_sharded.py                  # 1,000,000 docs (about 20 min)
    .venv/bin/python bench/bench_sharded.py --docs 100000    # quicker

Same synthetic corpus as bench_local.py (384-d, ``_synthetic.py``). For each layout: ingest
rate (excluding embedding), hybrid top-10 p50/p99 from one client, QPS with 8 concurrent
clients, memory per shard (RSS of each actor process; of this process for the LocalShard),
and the scatter-gather overhead: sharded p50 over single-shard p50. Ray runs on 127.0.0.1
with explicit CPUs and object store memory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psutil

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
sys.path.insert(0, str(Path(__file__).parent))

from _synthetic import generate
from bench_local import RESULTS, FixedDimEmbedder, pct

from ragkit import HybridStore, Record
from ragkit.backends import LocalShard, ShardedStore


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def measure(
    store: HybridStore, qv: np.ndarray, qt: list[str], n: int, clients: int
) -> dict[str, Any]:
    for i in range(5):
        store.search_by_vector(qv[i], query=qt[i], k=10)
    lat = []
    for i in range(n):
        started = time.perf_counter()
        store.search_by_vector(qv[i], query=qt[i], k=10)
        lat.append((time.perf_counter() - started) * 1000)
    out: dict[str, Any] = {"hybrid": pct(np.array(lat))}
    done = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + 20.0

    def client(seed: int) -> None:
        nonlocal done
        i = seed
        while time.perf_counter() < stop_at:
            store.search_by_vector(qv[i % len(qv)], query=qt[i % len(qt)], k=10)
            i += clients
            with lock:
                done += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["qps_8_clients"] = done / (time.perf_counter() - started)
    return out


def ingest(store: HybridStore, records: list[Record]) -> float:
    started = time.perf_counter()
    for start in range(0, len(records), 5000):
        store.upsert(records[start : start + 5000])
    return len(records) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    import ray

    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "docs": args.docs,
        "machine": f"{os.cpu_count()} cores",
        "command": " ".join(sys.argv),
    }
    print(f"generating {args.docs:,} documents")
    corpus = generate(args.docs, args.queries)
    records = [
        Record(f"d{i}", t, {"bucket": int(corpus.buckets[i])}, corpus.vectors[i])
        for i, t in enumerate(corpus.texts)
    ]
    qv, qt = corpus.query_vectors, corpus.query_texts
    with tempfile.TemporaryDirectory() as scratch:
        ray.init(
            num_cpus=2,
            object_store_memory=1024 * 2**20,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
        from ragkit.backends.sharded.ray import RayShard

        shards = [
            RayShard(Path(scratch) / f"s{i}", name=f"s{i}", call_timeout_s=600)
            for i in range(args.shards)
        ]
        sharded = HybridStore(
            backend=ShardedStore(shards, deadline_s=600), embedder=FixedDimEmbedder(384)
        )
        print(f"ingesting into {args.shards} RayShards")
        rate = ingest(sharded, records)
        print(f"  {rate:,.0f} docs/s")
        row = {"ingest_docs_per_s": rate, **measure(sharded, qv, qt, args.queries, 8)}
        row["rss_mb_per_shard"] = [round(rss_mb(s.pid())) for s in shards]
        results["ray_sharded"] = row
        print(f"  {row}")
        sharded.close()
        ray.shutdown()

        single = HybridStore(
            backend=LocalShard(Path(scratch) / "single"), embedder=FixedDimEmbedder(384)
        )
        base = rss_mb(os.getpid())
        print("ingesting into one LocalShard")
        rate = ingest(single, records)
        row = {"ingest_docs_per_s": rate, **measure(single, qv, qt, args.queries, 8)}
        row["rss_mb_growth"] = round(rss_mb(os.getpid()) - base)
        results["single"] = row
        print(f"  {row}")
        single.close()
    results["scatter_gather_overhead_p50"] = (
        results["ray_sharded"]["hybrid"]["p50_ms"] / results["single"]["hybrid"]["p50_ms"]
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"sharded-{args.docs}.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
