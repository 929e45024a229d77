"""Queries per second from 1, 2 and 4 client processes sharing a served store, beside one
process searching an embedded store, on SciFact.

    .venv/bin/python bench/bench_served.py                 # 20 s per case
    .venv/bin/python bench/bench_served.py --seconds 5

A Ray cluster of two nodes on 127.0.0.1 (``ragkit.testing.ray_cluster``) serves a store of
4 hosts, 8 partitions, 2 replicas (``ragkit.backends.sharded.served.up``) holding the SciFact
passages with their precomputed all-MiniLM-L6-v2 vectors. Each client process attaches with
``HybridStore(DIR)`` and runs hybrid ``search_by_vector(v, query=text, k=10)`` over the 300
test queries in a closed loop. The embedded baseline is one process, one thread, on a
LocalShard holding the same passages. Results: ``bench/results/served.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_local import RESULTS, scifact_vectors

from ragkit import HybridStore
from ragkit.embeddings import LocalEmbedder
from ragkit.schema import Record
from ragkit.testing.ray_cluster import LocalRayCluster

ROOT = Path(__file__).resolve().parents[1]

CLIENT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from ragkit import HybridStore

    store_dir, vectors, texts, go, seconds, out = sys.argv[1:7]
    queries = np.load(vectors)
    texts = json.load(open(texts))
    store = HybridStore(store_dir)
    store.search_by_vector(queries[0], query=texts[0], k=10)  # attached and warm
    open(out + ".ready", "w").close()
    while not __import__("os").path.exists(go):
        time.sleep(0.01)
    done, latencies, partial = 0, [], 0
    end = time.perf_counter() + float(seconds)
    while time.perf_counter() < end:
        i = done % len(texts)
        started = time.perf_counter()
        result = store.search_by_vector(queries[i], query=texts[i], k=10)
        latencies.append((time.perf_counter() - started) * 1000)
        partial += result.partial
        done += 1
    json.dump({"queries": done, "latencies": latencies, "partial": partial}, open(out, "w"))
    """
)


def run_clients(
    store_dir: Path, scratch: Path, n: int, seconds: float, env: dict[str, str]
) -> dict[str, Any]:
    go = scratch / f"go-{n}"
    outs = [scratch / f"client-{n}-{i}.json" for i in range(n)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLIENT,
                str(store_dir),
                str(scratch / "queries.npy"),
                str(scratch / "texts.json"),
                str(go),
                str(seconds),
                str(out),
            ],
            env=env,
        )
        for out in outs
    ]
    deadline = time.monotonic() + 180
    while not all(Path(str(o) + ".ready").exists() for o in outs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise SystemExit("a client did not start")
        time.sleep(0.05)
    go.touch()
    for proc in procs:
        proc.wait(seconds + 120)
    reports = [json.loads(o.read_text()) for o in outs]
    latencies = np.array([ms for r in reports for ms in r["latencies"]])
    queries = sum(r["queries"] for r in reports)
    return {
        "processes": n,
        "qps": queries / seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "partial": sum(r["partial"] for r in reports),
    }


def embedded_baseline(
    path: Path,
    docs: list[Any],
    vectors: np.ndarray,
    queries: np.ndarray,
    texts: list[str],
    seconds: float,
) -> dict[str, Any]:
    store = HybridStore(path, embedder=LocalEmbedder())
    store.upsert([Record(d.id, d.content, {}, vectors[i]) for i, d in enumerate(docs)])
    latencies = []
    end = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < end:
        i = done % len(texts)
        started = time.perf_counter()
        store.search_by_vector(queries[i], query=texts[i], k=10)
        latencies.append((time.perf_counter() - started) * 1000)
        done += 1
    store.close()
    return {
        "processes": 1,
        "qps": done / seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scifact", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    docs, doc_vecs, queries, query_vecs = scifact_vectors(args.scifact, RESULTS / "cache")
    texts = list(queries.values())
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores",
        "command": "bench/bench_served.py",
        "passages": len(docs),
        "layout": "4 hosts, 8 partitions, 2 replicas, 2 Ray nodes",
    }
    cluster = LocalRayCluster()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        np.save(scratch / "queries.npy", query_vecs)
        (scratch / "texts.json").write_text(json.dumps(texts))
        results["embedded, 1 process"] = embedded_baseline(
            scratch / "embedded", docs, doc_vecs, query_vecs, texts, args.seconds
        )
        print("embedded", results["embedded, 1 process"], flush=True)
        try:
            cluster.start(nodes=2)
            env = {**cluster.env, "RAY_ADDRESS": cluster.address}
            os.environ["RAY_ADDRESS"] = cluster.address
            os.environ["RAY_AUTH_TOKEN_PATH"] = cluster.token_path  # token auth is on
            from ragkit.backends.sharded.served import down, up

            store_dir = scratch / "served"
            up(store_dir, hosts=4, partitions=8, replicas=2)
            store = HybridStore(store_dir, embedder=LocalEmbedder())
            for start in range(0, len(docs), 500):
                store.upsert(
                    [
                        Record(d.id, d.content, {}, doc_vecs[start + i])
                        for i, d in enumerate(docs[start : start + 500])
                    ]
                )
            assert store.count() == len(docs)
            for n in (1, 2, 4):
                results[f"served, {n} client processes"] = run_clients(
                    store_dir, scratch, n, args.seconds, env
                )
                print(n, results[f"served, {n} client processes"], flush=True)
            down(store_dir)
        finally:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            cluster.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "served.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
