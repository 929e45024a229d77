"""An in-process sharded store whose partitions answer by exact scan, searched in parallel.

    .venv/bin/python bench/bench_inprocess_sharded.py       # about 3 minutes

8 ``LocalHost`` hosts, 8 partitions, 64,000 synthetic documents (384-d, ``_synthetic.py``):
8,000 rows per partition, under the exact-scan threshold, so every partition's dense leg is
an exact scan. The hosts search their partitions in parallel threads. Three ways of scanning,
interleaved in one run, ``--passes`` times each:

- as shipped: the int8 codes, on each searching thread, no lock (since the ninth session);
- the BLAS product, one at a time per process (shipped from the seventh session until then);
- the BLAS products free to overlap (before the seventh session).

Hybrid top-10, query embedding excluded; p50/p99 from one client, QPS from 8 client threads.
Results: ``bench/results/inprocess-sharded.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _load import run_clients
from _synthetic import generate
from bench_local import RESULTS, FixedDimEmbedder, pct

from ragkit import HybridStore, Record
from ragkit.backends import ShardedStore
from ragkit.backends.local import _kernels
from ragkit.backends.sharded import LocalHost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=64_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    corpus = generate(args.docs, 300)
    records = [
        Record(f"d{i}", t, {"bucket": int(corpus.buckets[i])}, corpus.vectors[i])
        for i, t in enumerate(corpus.texts)
    ]
    hosts = [LocalHost(f"h{i}") for i in range(8)]
    router = ShardedStore(hosts, partitions=8, replicas=1, deadline_s=600, heal_interval_s=None)
    store = HybridStore(backend=router, embedder=FixedDimEmbedder(384))
    for start in range(0, len(records), 5000):
        store.upsert(records[start : start + 5000])

    def query(i: int) -> None:
        store.search_by_vector(
            corpus.query_vectors[i % 300], query=corpus.query_texts[i % 300], k=10
        )

    lock, coded_top = _kernels._ONE_PRODUCT_AT_A_TIME, _kernels.coded_top

    def blas_top(
        codes: Any, steps: Any, matrix: Any, q: Any, k: int, excluded: Any, slack: float
    ) -> Any:
        """The BLAS product's scan, leaving the codes unread."""
        return _kernels.exact_top(matrix, q, k, excluded, slack)

    configs = {
        "int8 codes (shipped)": (lock, coded_top),
        "BLAS, one product at a time": (lock, blas_top),
        "BLAS, products overlap": (contextlib.nullcontext(), blas_top),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for i in range(300):
        query(i)
    for _ in range(args.passes):
        for name, (guard, scan) in configs.items():
            _kernels._ONE_PRODUCT_AT_A_TIME = guard  # type: ignore[assignment]
            _kernels.coded_top = scan
            lat = []
            for i in range(300):
                started = time.perf_counter()
                query(i)
                lat.append((time.perf_counter() - started) * 1000)
            done, took = run_clients(query, 8, args.seconds)
            runs[name].append({"hybrid": pct(np.array(lat)), "qps_8_clients": done / took})
            print(name, json.dumps(runs[name][-1]), flush=True)
    _kernels._ONE_PRODUCT_AT_A_TIME, _kernels.coded_top = lock, coded_top
    store.close()
    result = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "docs": args.docs,
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inprocess-sharded.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
