"""Ingestion throughput: the model paths, and events from a Redis stream to searchable records
side by side with writing the same records directly.

    .venv/bin/python bench/bench_ingest.py --model-paths        # runtimes, both corpora
    .venv/bin/python bench/bench_ingest.py                      # streams, SciFact passages
    .venv/bin/python bench/bench_ingest.py --embed-docs 500     # a shorter embedding run

``--model-paths``: for each model path (PyTorch bf16, today's default on a CPU with native
bf16; PyTorch fp32; ONNX Runtime fp32 and int8, the graph exported from the shipped weights),
in its own process and one after the other: ragkit's ingest (``IngestPipeline``) chunks/s
against the runtime's own padded encode (length-sorted batches of 64) on a sample of the same
chunks, on SciFact (5,183 abstracts, one chunk each) and on the Python 3.11 documentation
(Debian's ``python3.11-doc``, installed when missing and possible, else skipped with a
message; ``--docs-files`` files sampled, 0 for all), peak RSS, cosine to the fp32 vectors, and
on SciFact nDCG@10 (hybrid, dense) and the text-to-hits p50 of the 300 test queries (query
embedding cache off). Results: ``bench/results/model_paths.json``.

A redis-server is started on 127.0.0.1 and a free port (stopped by its pid). Cases, all in
one run on the same passages:

- ``direct``: ``HybridStore.upsert`` in batches of 100 (the ceiling: no stream);
- ``stream, 1 consumer``: the events published while one in-process ``StreamConsumer``
  (batches of 100) applies them; timed from the first publish until the group has nothing
  pending or undelivered (every acknowledged event is searchable then);
- ``stream, 2 processes``: two ``ragkit consume`` processes on one ``shared=True`` store;
- each with precomputed vectors in the events (``vector`` field) and with the local
  embedder (all-MiniLM-L6-v2, bf16) embedding in the consumer (on ``--embed-docs``
  passages: embedding dominates).

Results: ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_local import RESULTS, scifact_vectors

from ragkit import HybridStore
from ragkit.embeddings import LocalEmbedder
from ragkit.embeddings.base import Embedder
from ragkit.ingest import StreamConsumer
from ragkit.schema import Record
from ragkit.testing.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def publish(client: Any, stream: str, docs: list[Any], vectors: np.ndarray | None) -> None:
    pipe = client.pipeline(transaction=False)
    for i, doc in enumerate(docs):
        fields: dict[str, Any] = {"op": "upsert", "id": doc.id, "text": doc.content}
        if vectors is not None:
            fields["vector"] = vectors[i].astype("<f4").tobytes()
        pipe.xadd(stream, fields)
        if i % 200 == 199:
            pipe.execute()
    pipe.execute()


def drained(client: Any, stream: str) -> bool:
    for group in client.xinfo_groups(stream):
        if group["name"] in (b"ragkit", "ragkit"):
            return int(group["pending"]) == 0 and int(group["lag"] or 0) == 0
    return False


def check_searchable(store: HybridStore, docs: list[Any]) -> float:
    """Share of a sample of passages found by their own title words (lexical top 10)."""
    sample = docs[:: max(1, len(docs) // 50)]
    found = sum(
        d.id in [h.id for h in store.search(d.content[:200], k=10, mode="lexical")] for d in sample
    )
    return found / len(sample)


def new_store(path: Path, embedder: Embedder) -> None:
    HybridStore(path, embedder=embedder).close()


def case_direct(
    path: Path, docs: list[Any], vectors: np.ndarray | None, embedder: Embedder
) -> dict[str, Any]:
    store = HybridStore(path, embedder=embedder)
    started = time.perf_counter()
    for start in range(0, len(docs), 100):
        batch = docs[start : start + 100]
        store.upsert(
            [
                Record(d.id, d.content, {}, None if vectors is None else vectors[start + i])
                for i, d in enumerate(batch)
            ]
        )
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "per_s": len(docs) / seconds,
        "found": check_searchable(store, docs),
    }
    store.close()
    return result


def case_stream_inprocess(
    path: Path, redis_url: str, docs: list[Any], vectors: np.ndarray | None, embedder: Embedder
) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    stream = f"bench-{time.monotonic_ns()}"
    store = HybridStore(path, embedder=embedder, shared=True)
    consumer = StreamConsumer(store, client, stream, block_ms=50, batch_size=100)
    started = time.perf_counter()
    producer = threading.Thread(target=publish, args=(client, stream, docs, vectors))
    producer.start()
    while True:
        consumer.run(until_idle_s=0.05)
        if not producer.is_alive() and drained(client, stream):
            break
    seconds = time.perf_counter() - started
    producer.join()
    result = {
        "seconds": seconds,
        "per_s": len(docs) / seconds,
        "found": check_searchable(store, docs),
        "records": store.count(),
    }
    store.close()
    return result


def case_stream_processes(
    path: Path, redis_url: str, docs: list[Any], vectors: np.ndarray | None, processes: int
) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    stream = f"bench-{time.monotonic_ns()}"
    client.xgroup_create(stream, "ragkit", id="0", mkstream=True)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ragkit.cli",
                "consume",
                "--stream",
                stream,
                "--store",
                str(path),
                "--redis",
                redis_url,
                "--consumer",
                f"c{i}",
                "--block-ms",
                "50",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(processes)
    ]
    time.sleep(8)  # the processes import ragkit and open the store before the clock starts
    started = time.perf_counter()
    publish(client, stream, docs, vectors)
    while not drained(client, stream):
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(60)
    store = HybridStore(path)
    result = {
        "seconds": seconds,
        "per_s": len(docs) / seconds,
        "found": check_searchable(store, docs),
        "records": store.count(),
        "processes": processes,
    }
    store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scifact", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--embed-docs", type=int, default=1000)
    parser.add_argument("--model-paths", action="store_true", help="compare the model paths")
    parser.add_argument("--docs-files", type=int, default=120, help="Python docs files (0: all)")
    parser.add_argument("--sample", type=int, default=1024, help="chunks for the padded encode")
    args = parser.parse_args()
    if args.model_paths:
        model_paths(args)
        return
    docs, doc_vecs, _, _ = scifact_vectors(args.scifact, RESULTS / "cache")
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores",
        "command": "bench/bench_ingest.py",
        "passages": len(docs),
        "embed_passages": args.embed_docs,
    }
    local = LocalEmbedder()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        redis_server = RedisServer(root)
        url = redis_server.url
        try:
            runs = {
                "precomputed, direct upsert": lambda p: case_direct(p, docs, doc_vecs, local),
                "precomputed, stream, 1 consumer": lambda p: case_stream_inprocess(
                    p, url, docs, doc_vecs, local
                ),
                "precomputed, stream, 2 consumer processes": lambda p: (
                    new_store(p, local),
                    case_stream_processes(p, url, docs, doc_vecs, 2),
                )[1],
            }
            few = docs[: args.embed_docs]
            runs |= {
                "local embedder, direct upsert": lambda p: case_direct(p, few, None, local),
                "local embedder, stream, 1 consumer": lambda p: case_stream_inprocess(
                    p, url, few, None, local
                ),
            }
            for i, (name, run) in enumerate(runs.items()):
                results[name] = run(root / f"s{i}")
                print(
                    name,
                    json.dumps(
                        {
                            k: round(v, 3) if isinstance(v, float) else v
                            for k, v in results[name].items()
                        }
                    ),
                    flush=True,
                )
        finally:
            redis_server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(results, indent=2))


def model_paths(args: argparse.Namespace) -> None:
    import platform

    from _model_paths import compare, python_docs_available

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{cpu}, {os.cpu_count()} cores",
        "command": "bench/bench_ingest.py --model-paths",
    }
    corpora = ["scifact"]
    if python_docs_available():
        corpora.append("python-docs")
    else:
        print("python3.11-doc is not installed and cannot be: the Python docs corpus is skipped")
    for corpus in corpora:
        rows = compare(corpus, args.scifact, args.docs_files, args.sample)
        results[corpus] = rows
        print(f"\n{corpus} ({rows[0]['chunks']} chunks), {results['machine']}")
        for row in rows:
            print(
                "  ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items()
                    if k not in ("corpus",)
                ),
                flush=True,
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "model_paths.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
