"""ragkit's hybrid query path against a plain reference built from the field's parts.

    .venv/bin/python bench/bench_speed.py            # needs the bench extra (bm25s)

Both get the same SciFact passages and the same precomputed query vectors (embedding is
excluded from both) and return the top 10 of a hybrid search over 100 candidates per leg:

- reference: exact dense scores with one BLAS matrix-vector product (``D @ q``), BM25 top 100
  from ``bm25s`` (its default Lucene variant, English stop words, the same Snowball stemmer),
  relative-score fusion of the two lists in numpy;
- ragkit: ``HybridStore.search_by_vector(q, query=text, k=10)`` with the default settings on
  an embedded LocalShard (no query or result cache is involved: the vectors are given),
  hits with their records. The shard's row cache is on, as by default: after the warm-up
  pass every hit's text comes from memory, as the reference's ids do.
  ``--no-row-cache`` turns it off (``LocalShard(record_cache_mb=0)``): every hit is read
  from SQLite.

Queries are interleaved (each query runs on both before the next), 3 passes over the 300 test
queries after a warm-up pass. Each query also runs on ragkit with ``highlight=True``
(``ragkit_highlight``: the same hits with spans and snippets; ``highlight_p50_ratio``
against the plain search), right before or after the plain one, in turns. Writes
``bench/results/speed.json``.

    .venv/bin/python bench/bench_speed.py --stages   # ragkit alone, median time per stage

``--stages`` times ragkit's query alone, with each stage of the LocalShard's query path
(``ShardIndexes``: mask, dense candidates, BM25 candidates, fusion) wrapped in a timer; the
rest of the total is the store's request, validation, reading the hits and result objects.

    .venv/bin/python bench/bench_speed.py --after-embedding   # needs the local extra

``--after-embedding`` times ragkit's search as ``store.search(text)`` runs it: right after
the query's real all-MiniLM-L6-v2 embedding (not timed). Two stores side by side, query by
query: the default, whose exact scan reads the int8 codes, and the same passages with the
codes dropped, so the scan is the BLAS product. Writes ``bench/results/speed-embedded.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
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
from ragkit.backends import LocalShard
from ragkit.embeddings import HashingEmbedder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
CANDIDATES = 100


class Reference:
    """Exact numpy dense + bm25s + relative-score fusion."""

    def __init__(self, ids: list[str], texts: list[str], vectors: np.ndarray) -> None:
        import bm25s
        import Stemmer

        self.ids = np.array(ids, dtype=object)
        self.matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        self.stemmer = Stemmer.Stemmer("english")
        self.bm25 = bm25s.BM25()
        self.bm25.index(
            bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False),
            show_progress=False,
        )

    def search(self, text: str, vector: np.ndarray, k: int = 10) -> list[str]:
        import bm25s

        dense = self.matrix @ vector
        top_d = np.argpartition(-dense, CANDIDATES)[:CANDIDATES]
        tokens = bm25s.tokenize([text], stopwords="en", stemmer=self.stemmer, show_progress=False)
        docs, scores = self.bm25.retrieve(tokens, k=CANDIDATES, show_progress=False, n_threads=1)
        rows = np.concatenate([top_d, docs[0]])
        fused: dict[int, float] = {}
        for leg_rows, leg_scores in ((top_d, dense[top_d]), (docs[0], scores[0])):
            lo, hi = float(leg_scores.min()), float(leg_scores.max())
            norm = (leg_scores - lo) / (hi - lo) if hi > lo else np.full(len(leg_scores), 0.5)
            for row, value in zip(leg_rows.tolist(), (0.5 * norm).tolist()):
                fused[row] = fused.get(row, 0.0) + value
        del rows
        best = sorted(fused, key=fused.__getitem__, reverse=True)[:k]
        return list(self.ids[best])


STAGES = ("mask", "dense_candidates", "lexical_candidates", "ranked")


def stages(store: HybridStore, texts: list[str], query_vecs: np.ndarray) -> dict[str, float]:
    """Median microseconds per query of the whole search and of each ``ShardIndexes`` stage
    (3 passes after a warm-up pass)."""
    from ragkit.backends.local._indexes import ShardIndexes

    spent: dict[str, list[float]] = {name: [] for name in ("total", *STAGES)}

    def timed(name: str, method: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - started)

        return run

    originals = {name: getattr(ShardIndexes, name) for name in STAGES}
    for name, method in originals.items():
        setattr(ShardIndexes, name, timed(name, method))
    try:
        for _ in range(4):
            for text, vector in zip(texts, query_vecs):
                started = time.perf_counter()
                store.search_by_vector(vector, query=text, k=10)
                spent["total"].append(time.perf_counter() - started)
    finally:
        for name, method in originals.items():
            setattr(ShardIndexes, name, method)
    warm = len(texts)
    return {name: statistics.median(v[warm:]) * 1e6 for name, v in spent.items()}


def after_embedding(docs: list[Any], doc_vecs: np.ndarray, texts: list[str]) -> dict[str, Any]:
    """Median and p99 of each store's search (and its dense stage) right after embedding
    the query; 2 passes over the queries after a warm-up pass, the order alternating."""
    from ragkit.backends.local._indexes import ShardIndexes
    from ragkit.embeddings import LocalEmbedder

    embedder = LocalEmbedder()
    stores = {}
    for name in ("int8 codes (default)", "BLAS product"):
        store = HybridStore(
            backend=LocalShard(record_cache_mb=32), embedder=HashingEmbedder(dim=doc_vecs.shape[1])
        )
        store.upsert([Record(d.id, d.content, {}, doc_vecs[i]) for i, d in enumerate(docs)])
        if name == "BLAS product":  # without codes, the exact scan is the BLAS product
            dense = store.backend._ix.dense  # type: ignore[attr-defined]
            dense.codes = dense.steps = None
        stores[name] = store
    spent: dict[str, dict[str, list[float]]] = {n: {"search": [], "dense": []} for n in stores}
    original = ShardIndexes.dense_candidates
    current: list[str] = []

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[current[0]]["dense"].append(time.perf_counter() - started)

    ShardIndexes.dense_candidates = timed  # type: ignore[method-assign]
    try:
        for pass_ in range(3):
            for i, text in enumerate(texts):
                names = list(stores) if (i + pass_) % 2 == 0 else list(stores)[::-1]
                for name in names:
                    vector = embedder.embed_query(text)
                    current[:] = [name]
                    started = time.perf_counter()
                    stores[name].search_by_vector(vector, query=text, k=10)
                    spent[name]["search"].append(time.perf_counter() - started)
    finally:
        ShardIndexes.dense_candidates = original  # type: ignore[method-assign]
    warm = len(texts)
    result: dict[str, Any] = {"date": date.today().isoformat(), "queries": 2 * warm}
    for name, series in spent.items():
        result[name] = {
            f"{stage}_{stat}_ms": round(float(np.percentile(v[warm:], q)) * 1000, 3)
            for stage, v in series.items()
            for stat, q in (("p50", 50), ("p99", 99))
        }
    return result


def main() -> None:
    docs, doc_vecs, queries, query_vecs = scifact_vectors(DATA, RESULTS / "cache")
    if "--after-embedding" in sys.argv[1:]:
        result = after_embedding(docs, doc_vecs, list(queries.values()))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "speed-embedded.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    if "--stages" in sys.argv[1:]:
        store = HybridStore(embedder=HashingEmbedder(dim=doc_vecs.shape[1]))
        store.upsert([Record(d.id, d.content, {}, doc_vecs[i]) for i, d in enumerate(docs)])
        medians = stages(store, list(queries.values()), query_vecs)
        print(json.dumps({f"{k}_us": round(v) for k, v in medians.items()}, indent=2))
        return
    texts = list(queries.values())
    ids = [d.id for d in docs]
    reference = Reference(ids, [d.content for d in docs], doc_vecs)
    # The embedder is never called: every search passes its vector.
    row_cache = "--no-row-cache" not in sys.argv[1:]
    store = HybridStore(
        backend=LocalShard(record_cache_mb=32 if row_cache else 0),
        embedder=HashingEmbedder(dim=doc_vecs.shape[1]),
    )
    store.upsert([Record(d.id, d.content, {}, doc_vecs[i]) for i, d in enumerate(docs)])
    timings: dict[str, list[float]] = {"ragkit": [], "reference": [], "ragkit_highlight": []}
    overlap = []
    for pass_ in range(4):
        for i, (text, vector) in enumerate(zip(texts, query_vecs)):
            # ragkit with and without highlight=True back to back, in turns first (each
            # runs with the caches the other left), then the reference.
            ours = {}
            for highlight in (False, True) if (i + pass_) % 2 == 0 else (True, False):
                started = time.perf_counter()
                result = store.search_by_vector(vector, query=text, k=10, highlight=highlight)
                ours[highlight] = (time.perf_counter() - started, result.ids)
            assert ours[True][1] == ours[False][1]
            started = time.perf_counter()
            ref = reference.search(text, vector)
            ended = time.perf_counter()
            if pass_ == 0:  # warm-up
                overlap.append(len(set(ours[False][1]) & set(ref)) / 10)
                continue
            timings["ragkit"].append(ours[False][0] * 1000)
            timings["reference"].append((ended - started) * 1000)
            timings["ragkit_highlight"].append(ours[True][0] * 1000)
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "queries": len(timings["ragkit"]),
        "top10_overlap": statistics.mean(overlap),
        "row_cache": row_cache,
    }
    for name, values in timings.items():
        result[name] = {
            "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(np.mean(values)),
        }
    result["p50_ratio"] = result["ragkit"]["p50_ms"] / result["reference"]["p50_ms"]
    result["highlight_p50_ratio"] = (
        result["ragkit_highlight"]["p50_ms"] / result["ragkit"]["p50_ms"]
    )
    RESULTS.mkdir(exist_ok=True)
    name = "speed.json" if row_cache else "speed-no-row-cache.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
