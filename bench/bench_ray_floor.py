"""The floor Ray puts under a fan-out: one trivial call to each of H actors, nothing else.

    .venv/bin/python bench/bench_ray_floor.py --hosts 8        # about 1 minute

The same Ray setup as bench_sharded.py (a local instance on 127.0.0.1, ``num_cpus=2``, actors
with ``num_cpus=0``); each actor method returns its 2 kB argument. One "query" submits one
call to every actor and waits for all of them (``ray.wait``), as the router does. Reports the
p50 and p99 of that round and the driver's CPU per round. Whatever a sharded search over H
Ray hosts costs, it costs at least this. Results: ``bench/results/ray-floor-H.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _ray import start_local
from bench_local import RESULTS, pct


class Echo:
    def echo(self, payload: bytes) -> bytes:
        return payload


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    start_local(object_store_mb=300)
    actors = [ray.remote(Echo).options(num_cpus=0).remote() for _ in range(args.hosts)]
    payload = b"x" * 2048

    def fan_out() -> None:
        refs = [a.echo.remote(payload) for a in actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=30)
        ray.get(ready)

    for _ in range(200):  # warm-up
        fan_out()
    took = np.empty(args.rounds)
    cpu = time.process_time()
    for i in range(args.rounds):
        started = time.perf_counter()
        fan_out()
        took[i] = (time.perf_counter() - started) * 1000
    driver_cpu_ms = (time.process_time() - cpu) / args.rounds * 1000
    ray.shutdown()
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "hosts": args.hosts,
        "round": pct(took),
        "driver_cpu_ms_per_round": driver_cpu_ms,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"ray-floor-{args.hosts}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
