"""Sharded benchmark: a ShardedStore on Ray hosts versus one LocalShard, in one run.

    .venv/bin/python bench/bench_sharded.py --docs 1000000 --hosts 8 --partitions 8 \\
        --replicas 1 2                                          # about 35 minutes
    .venv/bin/python bench/bench_sharded.py --docs 100000 --hosts 8 --partitions 8

Same synthetic corpus as bench_local.py (384-d, ``_synthetic.py``). For each layout (each
replica count given) and for one LocalShard in this process: ingest rate (excluding
embedding), hybrid top-10 p50/p99 from one client, QPS with 8 client threads, rounds and host
messages per query, memory. Ray runs on 127.0.0.1 with explicit CPUs and object store
memory; hosts are actors with ``num_cpus=0``. Results: ``bench/results/sharded-N.json`` with
``ray_sharded`` (the first replica count), ``ray_sharded_by_replicas`` and ``single``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psutil

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
sys.path.insert(0, str(Path(__file__).parent))

from _load import run_clients
from _ray import start_local
from _synthetic import generate
from bench_local import RESULTS, FixedDimEmbedder, pct

from ragkit import HybridStore, Record
from ragkit.backends import LocalShard, ShardedStore


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def measure(
    store: HybridStore,
    qv: np.ndarray,
    qt: list[str],
    n: int,
    clients: int,
    seconds: float,
    phase: Callable[[str], None] = lambda name: None,
) -> dict[str, Any]:
    """Warm-up (every query once), ``n`` timed queries from one client, then QPS with
    ``clients`` threads for ``seconds``; ``phase`` is called at the end of each part."""
    for i in range(len(qv)):  # warm-up: every query's terms seen once (statistics cached)
        store.search_by_vector(qv[i], query=qt[i], k=10)
    phase("warm-up")
    lat = []
    for i in range(n):
        started = time.perf_counter()
        store.search_by_vector(qv[i % len(qv)], query=qt[i % len(qt)], k=10)
        lat.append((time.perf_counter() - started) * 1000)
    phase("one client")
    out: dict[str, Any] = {"hybrid": pct(np.array(lat))}
    done, took = run_clients(
        lambda i: store.search_by_vector(qv[i % len(qv)], query=qt[i % len(qt)], k=10),
        clients,
        seconds,
    )
    out[f"qps_{clients}_clients"] = done / took
    out[f"queries_{clients}_clients"] = done
    phase(f"{clients} clients")
    return out


def ingest(store: HybridStore, records: list[Record]) -> float:
    started = time.perf_counter()
    for start in range(0, len(records), 5000):
        store.upsert(records[start : start + 5000])
    return len(records) / (time.perf_counter() - started)


def run_sharded(
    args: argparse.Namespace, replicas: int, records: list[Record], qv: np.ndarray, qt: list[str]
) -> dict[str, Any]:
    import ray

    from ragkit.backends.sharded.ray import RayHost

    with tempfile.TemporaryDirectory() as scratch:
        start_local(object_store_mb=1024)
        hosts = [RayHost(f"h{i}", Path(scratch) / f"h{i}") for i in range(args.hosts)]
        router = ShardedStore(
            hosts,
            partitions=args.partitions,
            replicas=replicas,
            deadline_s=600,
            heal_interval_s=None,
        )
        store = HybridStore(backend=router, embedder=FixedDimEmbedder(384))
        print(f"ingesting into {args.hosts} Ray hosts, {args.partitions} partitions x {replicas}")
        rate = ingest(store, records)
        print(f"  {rate:,.0f} docs/s")
        row: dict[str, Any] = {"ingest_docs_per_s": rate}
        seen: dict[str, dict[str, int]] = {"start": {**router.rounds, "messages": 0}}

        def busy_ms() -> float:
            return 1000 * sum(float(h.call("status")["busy_s"]) for h in hosts)

        def phase(name: str) -> None:
            seen[name] = {
                **router.rounds,
                "messages": sum(h.messages for h in hosts),
                "host_busy_ms": busy_ms(),
            }

        seen["start"]["messages"] = sum(h.messages for h in hosts)
        seen["start"]["host_busy_ms"] = busy_ms()
        row.update(measure(store, qv, qt, args.queries, 8, args.seconds, phase))
        # Per query in each phase: search rounds, statistics rounds, deeper rounds, record
        # fetches, and host messages (a message can carry several concurrent queries).
        names = ["start", "warm-up", "one client", "8 clients"]
        counts = {
            "warm-up": len(qv),
            "one client": args.queries,
            "8 clients": row["queries_8_clients"],
        }
        row["per_query"] = {
            name: {
                key: (seen[name].get(key, 0) - seen[prev].get(key, 0)) / counts[name]
                for key in (
                    "search",
                    "stats",
                    "deeper",
                    "hydrate",
                    "stale_stats",
                    "messages",
                    "host_busy_ms",
                )
            }
            for prev, name in itertools.pairwise(names)
        }
        row["rss_mb_per_host"] = [round(rss_mb(h.pid())) for h in hosts]
        print(f"  {json.dumps({k: v for k, v in row.items() if k != 'rss_mb_per_host'})}")
        store.close()
        ray.shutdown()
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1])
    parser.add_argument("--seconds", type=float, default=20.0, help="QPS measurement window")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "docs": args.docs,
        "hosts": args.hosts,
        "partitions": args.partitions,
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
    by_replicas = {}
    for replicas in args.replicas:
        by_replicas[str(replicas)] = run_sharded(args, replicas, records, qv, qt)
    results["ray_sharded"] = by_replicas[str(args.replicas[0])]
    results["ray_sharded_by_replicas"] = by_replicas

    with tempfile.TemporaryDirectory() as scratch:
        single = HybridStore(
            backend=LocalShard(Path(scratch) / "single"), embedder=FixedDimEmbedder(384)
        )
        base = rss_mb(os.getpid())
        print("ingesting into one LocalShard")
        rate = ingest(single, records)
        row = {"ingest_docs_per_s": rate, **measure(single, qv, qt, args.queries, 8, args.seconds)}
        row["rss_mb_growth"] = round(rss_mb(os.getpid()) - base)
        results["single"] = row
        print(f"  {row}")
        single.close()
    sharded, one = results["ray_sharded"], results["single"]
    results["ratios"] = {
        "p50": sharded["hybrid"]["p50_ms"] / one["hybrid"]["p50_ms"],
        "p99": sharded["hybrid"]["p99_ms"] / one["hybrid"]["p99_ms"],
        "qps_8_clients": sharded["qps_8_clients"] / one["qps_8_clients"],
    }
    if "1" in by_replicas and "2" in by_replicas:
        results["ratios"]["qps_r2_over_r1"] = (
            by_replicas["2"]["qps_8_clients"] / by_replicas["1"]["qps_8_clients"]
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"sharded-{args.docs}.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["ratios"], indent=2))


if __name__ == "__main__":
    main()
