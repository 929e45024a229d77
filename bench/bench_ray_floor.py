"""The floor Ray puts under a fan-out over H actors, before any of ragkit's own work.

    .venv/bin/python bench/bench_ray_floor.py --hosts 8                  # about 1 minute
    .venv/bin/python bench/bench_ray_floor.py --hosts 8 --docs 1000000   # about 10 minutes

The same Ray setup as bench_sharded.py (a local instance on 127.0.0.1, ``num_cpus=2``, actors
with ``num_cpus=0``). One "query" submits one call to every actor and waits for all of them
(``ray.wait``), as the router does; its p50 and p99 come from one client, its QPS from 8
client threads.

- **Echo** (always): each actor returns its 2 kB argument. Reports the driver's CPU per round
  too. Results: ``bench/results/ray-floor-H.json``.
- **HNSW walk** (with ``--docs N``): each actor holds an hnswlib index of 1/H of the
  synthetic corpus of bench_sharded.py (M=16, ef_construction=64, ef=128: ragkit's
  settings) and answers the dense top 33 of a query vector (the depth the router asks of a
  host holding 1 of 8 partitions), pickled both ways as ragkit's Ray transport does. No
  BM25, fusion, records or merge. One LocalShard holding all N documents answers the full
  hybrid search in the same run, as in bench_sharded.py, and the ratios are taken against
  it. Results: ``bench/results/ray-floor-H-N.json``.

Whatever a sharded search over H Ray hosts costs on this machine, it costs at least these.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
sys.path.insert(0, str(Path(__file__).parent))

from _load import run_clients
from _ray import start_local
from _synthetic import generate
from bench_local import RESULTS, FixedDimEmbedder, pct
from bench_sharded import ingest, measure

DEPTH = 33  # ceil(2 * 100 * 1/8) + 8: what the router asks of a host with 1 of 8 partitions


class Echo:
    def echo(self, payload: bytes) -> bytes:
        return payload


class HnswHost:
    """One partition's vectors (every H-th row of the saved matrix) in an hnswlib index."""

    def __init__(self, path: str, part: int, parts: int) -> None:
        import hnswlib

        vectors = np.ascontiguousarray(np.load(path, mmap_mode="r")[part::parts])
        self.index = hnswlib.Index(space="ip", dim=vectors.shape[1])
        self.index.init_index(max_elements=len(vectors), ef_construction=64, M=16)
        self.index.add_items(vectors, num_threads=1)
        self.index.set_ef(128)

    def ready(self) -> bool:
        return True

    def search(self, payload: bytes) -> bytes:
        query, k = pickle.loads(payload)
        unit = query / np.float32(np.sqrt(np.dot(query, query)))
        labels, distances = self.index.knn_query(unit, k=k)
        return pickle.dumps((labels[0], 1 - distances[0]), protocol=pickle.HIGHEST_PROTOCOL)


def timed(fan_out: Callable[[int], object], rounds: int, seconds: float) -> dict[str, Any]:
    """Warm-up, then ``rounds`` one-client rounds, then QPS with 8 client threads."""
    for i in range(200):
        fan_out(i)
    took = np.empty(rounds)
    cpu = time.process_time()
    for i in range(rounds):
        started = time.perf_counter()
        fan_out(i)
        took[i] = (time.perf_counter() - started) * 1000
    driver_cpu_ms = (time.process_time() - cpu) / rounds * 1000
    done, wall = run_clients(fan_out, 8, seconds)
    return {
        "round": pct(took),
        "driver_cpu_ms_per_round": driver_cpu_ms,
        "qps_8_clients": done / wall,
    }


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--docs", type=int, default=0, help="also time the HNSW walk floor")
    parser.add_argument("--seconds", type=float, default=20.0, help="QPS measurement window")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "hosts": args.hosts,
    }
    start_local(object_store_mb=1024 if args.docs else 300)
    echoes = [ray.remote(Echo).options(num_cpus=0).remote() for _ in range(args.hosts)]
    payload = b"x" * 2048

    def echo_round(_: int) -> None:
        refs = [a.echo.remote(payload) for a in echoes]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=30)
        ray.get(ready)

    result["echo"] = timed(echo_round, args.rounds, args.seconds)
    print("echo", json.dumps(result["echo"]))
    for actor in echoes:
        ray.kill(actor)
    if not args.docs:
        ray.shutdown()
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"ray-floor-{args.hosts}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        return

    print(f"generating {args.docs:,} documents")
    corpus = generate(args.docs, 300)
    qv = corpus.query_vectors.astype(np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        vectors = Path(scratch) / "vectors.npy"
        unit = corpus.vectors.astype(np.float32)
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        np.save(vectors, unit)
        del unit
        started = time.perf_counter()
        hosts = [
            ray.remote(HnswHost).options(num_cpus=0).remote(str(vectors), i, args.hosts)
            for i in range(args.hosts)
        ]
        ray.get([h.ready.remote() for h in hosts])
        print(f"  {args.hosts} indexes built in {time.perf_counter() - started:.0f} s")

        def walk_round(i: int) -> None:
            message = pickle.dumps((qv[i % len(qv)], DEPTH), protocol=pickle.HIGHEST_PROTOCOL)
            refs = [h.search.remote(message) for h in hosts]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=30)
            for answer in ray.get(ready):
                pickle.loads(answer)

        result["hnsw_walk"] = timed(walk_round, args.rounds // 4, args.seconds)
        print("hnsw walk", json.dumps(result["hnsw_walk"]))
        ray.shutdown()

        from ragkit import HybridStore, Record
        from ragkit.backends import LocalShard

        records = [
            Record(f"d{i}", t, {"bucket": int(corpus.buckets[i])}, corpus.vectors[i])
            for i, t in enumerate(corpus.texts)
        ]
        single = HybridStore(
            backend=LocalShard(Path(scratch) / "single"), embedder=FixedDimEmbedder(384)
        )
        print("ingesting into one LocalShard")
        ingest(single, records)
        row = measure(single, corpus.query_vectors, corpus.query_texts, 300, 8, args.seconds)
        single.close()
    result["single"] = row
    walk = result["hnsw_walk"]
    result["ratios"] = {
        "hnsw_walk_p50_over_single": walk["round"]["p50_ms"] / row["hybrid"]["p50_ms"],
        "hnsw_walk_p99_over_single": walk["round"]["p99_ms"] / row["hybrid"]["p99_ms"],
        "hnsw_walk_qps_over_single": walk["qps_8_clients"] / row["qps_8_clients"],
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ray-floor-{args.hosts}-{args.docs}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"], indent=2))


if __name__ == "__main__":
    main()
