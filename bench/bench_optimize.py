"""Opening a store full of dead rows, before and after compaction (reliability, case 10).

    .venv/bin/python bench/bench_optimize.py            # --live 300 --dead 87000

Builds a LocalShard directory where ``live`` records were each rewritten until ``dead`` index
rows are stale (automatic compaction off, as before it existed), then times opening it
(median of 5), runs ``optimize()``, and times opening again. Results in
``bench/results/optimize.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from ragkit import HybridStore
from ragkit.backends import LocalShard
from ragkit.backends.local import _checkpoints as shard_module
from ragkit.embeddings import HashingEmbedder

RESULTS = Path(__file__).parent / "results"
EMBEDDER = HashingEmbedder(dim=384)


def time_open(path: Path, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        shard = LocalShard(path, create=False)
        times.append(time.perf_counter() - started)
        shard._release()  # close() would compact: measure the open alone
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=300)
    parser.add_argument("--dead", type=int, default=87_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "kb"
        shard_module.AUTO_OPTIMIZE_DEAD_ROWS = 10**12  # the store as it was before compaction
        store = HybridStore(backend=LocalShard(path), embedder=EMBEDDER)
        rounds = args.dead // args.live + 1
        for version in range(rounds):
            store.add_texts(
                [f"record {i} about topic{i % 13}, version {version}" for i in range(args.live)],
                ids=[f"r{i}" for i in range(args.live)],
            )
        rows = store.backend.info()["rows"]  # type: ignore[attr-defined]
        store.backend.checkpoint()
        store.backend._release()  # type: ignore[attr-defined]
        before = time_open(path)
        shard = LocalShard(path, create=False)
        started = time.perf_counter()
        dropped = shard.optimize()
        optimize_ms = (time.perf_counter() - started) * 1000
        shard.close()
        after = time_open(path)
    result = {
        "date": date.today().isoformat(),
        "live": args.live,
        "index_rows_before": rows,
        "dropped": dropped,
        "open_ms_before": round(before, 1),
        "optimize_ms": round(optimize_ms, 1),
        "open_ms_after": round(after, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "optimize.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
