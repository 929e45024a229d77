"""Soak: mixed ingest, delete and search against a sharded store at a fixed rate.

    .venv/bin/python bench/soak.py                        # 10 minutes, 40 operations/s
    .venv/bin/python bench/soak.py --gc-freeze            # the same, imported code frozen
    .venv/bin/python bench/soak.py --minutes 1 --rate 20  # a quick look

A sharded store on disk (4 in-process hosts, 8 partitions, 2 replicas; ``--ray`` for Ray
hosts) receives an open-loop stream of operations at ``--rate`` per second from 4 worker
threads: 60% hybrid searches, 30% ingests of 10 records, 10% deletes of 5 records. Every
acknowledged write is remembered; every 15 s (``--check-every``) a sample is checked
(acknowledged records present, every deleted one absent, a fresh record found by search), and
at the end everything is. Per minute: operations, errors, p50/p99 latency of searches and
writes, the checks and their time, records, RSS, and the CPU the process used (in cores).
Results: ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import random
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psutil

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, str(Path(__file__).parent))

from _ray import start_local
from bench_local import RESULTS

from ragkit import HybridStore
from ragkit.backends import ShardedStore
from ragkit.backends.sharded import LocalHost
from ragkit.embeddings import HashingEmbedder

WORDS = [f"w{i}" for i in range(2000)]


class Soak:
    def __init__(self, store: HybridStore, seed: int = 0) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.live: dict[str, str] = {}  # acknowledged id -> its unique token
        self.deleted: set[str] = set()
        self.next_id = 0
        self.errors: list[str] = []
        self.samples: list[tuple[float, str, float]] = []  # (time, kind, ms)

    def text(self, token: str) -> str:
        return " ".join([token, *self.rng.choices(WORDS, k=20)])

    def ingest(self) -> None:
        with self.lock:
            start = self.next_id
            self.next_id += 10
        ids = [f"r{i}" for i in range(start, start + 10)]
        tokens = [f"uniq{i}q" for i in range(start, start + 10)]
        self.store.add_texts([self.text(t) for t in tokens], ids=ids)
        with self.lock:
            self.live.update(zip(ids, tokens))

    def delete(self) -> None:
        with self.lock:
            if len(self.live) < 50:
                return
            victims = self.rng.sample(sorted(self.live), 5)
            for rid in victims:  # no reader may expect them any more
                del self.live[rid]
        self.store.delete(victims)
        with self.lock:
            self.deleted.update(victims)

    def search(self) -> None:
        with self.lock:
            gone_before = set(self.deleted)  # acknowledged before this search began
        result = self.store.search(" ".join(self.rng.choices(WORDS, k=3)), k=10)
        bad = gone_before & set(result.ids)
        if bad or result.partial:
            self.errors.append(f"search returned deleted {sorted(bad)} partial={result.partial}")

    def check(self, sample: int | None = 200) -> None:
        with self.lock:
            live = dict(self.live)
            deleted = sorted(self.deleted)
        ids = (
            sorted(live)
            if sample is None
            else self.rng.sample(sorted(live), min(sample, len(live)))
        )
        for start in range(0, len(ids), 2000):
            chunk = ids[start : start + 2000]
            found = {r.id for r in self.store.get(chunk)}
            lost = [i for i in chunk if i not in found and i in self.live]  # still live now
            if lost:
                self.errors.append(f"lost acknowledged records {lost[:5]}")
        for start in range(0, len(deleted), 2000):
            back = self.store.get(deleted[start : start + 2000])
            if back:
                self.errors.append(f"deleted records came back: {[r.id for r in back][:5]}")
        if ids:
            rid = ids[-1]
            result = self.store.search(live[rid], k=5, mode="lexical")
            if rid in result.ids or rid not in self.live:
                return
            self.errors.append(
                f"{rid} not found by its token (partial={result.partial}, "
                f"missing={result.missing_shards}, got {result.ids})"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=40.0, help="operations per second")
    parser.add_argument("--ray", action="store_true", help="Ray hosts instead of in-process")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() once the store is open: full collections skip what exists by then",
    )
    parser.add_argument(
        "--check-every",
        type=float,
        default=15.0,
        help="seconds between sampled consistency checks (0: only the final, full one)",
    )
    args = parser.parse_args()
    me = psutil.Process()
    with tempfile.TemporaryDirectory() as scratch:
        if args.ray:
            from ragkit.backends.sharded.ray import RayHost

            start_local(object_store_mb=512)
            hosts: list[Any] = [RayHost(f"h{i}", Path(scratch) / f"h{i}") for i in range(4)]
        else:
            hosts = [LocalHost(f"h{i}", str(Path(scratch) / f"h{i}")) for i in range(4)]
        router = ShardedStore(
            hosts, partitions=8, replicas=2, state_path=str(Path(scratch) / "state.json")
        )
        store = HybridStore(backend=router, embedder=HashingEmbedder(dim=64))
        soak = Soak(store)
        for _ in range(20):
            soak.ingest()
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        rss0 = me.memory_info().rss
        work: queue.Queue[tuple[float, str] | None] = queue.Queue(maxsize=1000)

        def worker() -> None:
            while (item := work.get()) is not None:
                _, kind = item
                started = time.perf_counter()
                try:
                    getattr(soak, kind)()
                except Exception as exc:  # every failure is a finding
                    soak.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                soak.samples.append(
                    (time.monotonic(), kind, (time.perf_counter() - started) * 1000)
                )

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        began = time.monotonic()
        cpu_before = sum(me.cpu_times()[:2])
        end = began + args.minutes * 60
        stop = threading.Event()

        def checker() -> None:  # off the dispatching thread: the open loop never waits on it
            while args.check_every > 0 and not stop.wait(args.check_every):
                started = time.perf_counter()
                soak.check()
                soak.samples.append(
                    (time.monotonic(), "check", (time.perf_counter() - started) * 1000)
                )

        checking = threading.Thread(target=checker)
        checking.start()
        rng = random.Random(1)
        minutes: list[dict[str, Any]] = []
        tick = 0
        while (now := time.monotonic()) < end:
            due = began + tick / args.rate
            if due > now:
                time.sleep(due - now)
            kind = rng.choices(["search", "ingest", "delete"], weights=[6, 3, 1])[0]
            work.put((due, kind))
            tick += 1
            if time.monotonic() - began >= 60 * (len(minutes) + 1):
                minutes.append(summary(soak, began, len(minutes), me.memory_info().rss - rss0))
                cpu = sum(me.cpu_times()[:2])
                minutes[-1]["cpu_cores"] = round((cpu - cpu_before) / 60, 2)  # of 2
                cpu_before = cpu
                print(json.dumps(minutes[-1]), flush=True)
        stop.set()
        checking.join()
        for _ in threads:
            work.put(None)
        for t in threads:
            t.join()
        soak.check(sample=None)
        result = {
            "date": date.today().isoformat(),
            "machine": f"{os.cpu_count()} cores",
            "command": " ".join(sys.argv),
            "hosting": "ray" if args.ray else "in-process",
            "minutes": minutes,
            "operations": sum(1 for _, kind, _ in soak.samples if kind != "check"),
            "errors": soak.errors[:20],
            "error_count": len(soak.errors),
            "records": store.count(),
            "acknowledged_live": len(soak.live),
            "deleted": len(soak.deleted),
            "rss_growth_mb": round((me.memory_info().rss - rss0) / 2**20),
        }
        store.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "minutes"}, indent=2))


def summary(soak: Soak, began: float, minute: int, rss_growth: int) -> dict[str, Any]:
    lo, hi = began + 60 * minute, began + 60 * (minute + 1)
    window = [(kind, ms) for t, kind, ms in soak.samples if lo <= t < hi]
    ops = sum(1 for kind, _ in window if kind != "check")
    out: dict[str, Any] = {"minute": minute + 1, "operations": ops}
    for group, kinds in (("search", {"search"}), ("write", {"ingest", "delete"})):
        ms = np.array([m for k, m in window if k in kinds]) if window else np.zeros(0)
        out[f"{group}_p50_ms"] = round(float(np.percentile(ms, 50)), 2) if len(ms) else None
        out[f"{group}_p99_ms"] = round(float(np.percentile(ms, 99)), 2) if len(ms) else None
    checks = [ms for k, ms in window if k == "check"]
    out["checks"] = len(checks)
    out["check_ms"] = round(sum(checks))
    out["errors"] = len(soak.errors)
    out["records"] = len(soak.live)
    out["rss_growth_mb"] = round(rss_growth / 2**20)
    return out


if __name__ == "__main__":
    main()
