"""What term positions cost the lexical index: size, build time and BM25 latency, measured
side by side against the same index without them (today's before positions came in).

    .venv/bin/python bench/bench_positions.py            # 200,000 synthetic documents
    .venv/bin/python bench/bench_positions.py --docs 20000

Both indexes (``LexicalIndex(positions=True)``, the LocalShard's, and ``positions=False``)
take the same synthetic passages (``_synthetic``: 50-150 words each) in batches of 4,096, as
a store writes them, and are merged and saved as a checkpoint saves them. Then 1,000 plain
four-word queries (top 100, the depth of a hybrid search's lexical leg) run on both in
turns, 3 passes after a warm-up pass; and, on the index with positions, two-word phrases
taken from the documents (``rows_with``: the rows holding the phrase, which a
``query_syntax="simple"`` search turns into a filter of both legs). Writes
``bench/results/positions.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _synthetic import generate
from bench_local import RESULTS

from ragkit.analysis import Analyzer
from ragkit.backends.local._lexical import LexicalIndex

BATCH = 4096


def build(texts: list[str], positions: bool) -> tuple[LexicalIndex, float, int]:
    """The index, seconds to build it, and bytes on disk once saved."""
    index = LexicalIndex(Analyzer(), positions=positions)
    alive = np.ones(len(texts), dtype=bool)
    started = time.perf_counter()
    for first in range(0, len(texts), BATCH):
        index.add(first, texts[first : first + BATCH])
        index.maybe_merge(alive)
    index.merge_all(alive)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        index.save(Path(folder), alive)
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
    return index, seconds, size


def main() -> None:
    n_docs = int(sys.argv[sys.argv.index("--docs") + 1]) if "--docs" in sys.argv else 200_000
    corpus = generate(n_docs, 1000)
    analyzer = Analyzer()
    built = {name: build(corpus.texts, name == "positions") for name in ("before", "positions")}
    queries = [analyzer.tokens(q) for q in corpus.query_texts]
    rng = np.random.default_rng(1)
    phrases = []
    for doc in rng.integers(0, n_docs, 300).tolist():
        tokens = analyzer.tokens(corpus.texts[doc])
        at = int(rng.integers(0, len(tokens) - 1))
        phrases.append(tokens[at : at + 2])
    spent: dict[str, list[float]] = {"before": [], "positions": [], "phrase": []}
    for pass_ in range(4):
        for i, terms in enumerate(queries):
            order = ("before", "positions") if (i + pass_) % 2 == 0 else ("positions", "before")
            for name in order:
                started = time.perf_counter()
                hits = built[name][0].search(terms, 100, None)
                if pass_:
                    spent[name].append(time.perf_counter() - started)
                assert len(hits.rows)  # (the query's words come from a document)
        for phrase in phrases:
            started = time.perf_counter()
            rows = built["positions"][0].rows_with(phrase, n_docs)
            if pass_:
                spent["phrase"].append(time.perf_counter() - started)
            assert rows.any()  # (taken from a document: it holds the phrase)
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "documents": n_docs,
    }
    for name in ("before", "positions"):
        _, seconds, size = built[name]
        result[name] = {
            "build_s": round(seconds, 2),
            "disk_mb": round(size / 2**20, 1),
            "bm25_p50_us": round(float(np.percentile(spent[name], 50)) * 1e6, 1),
            "bm25_p99_us": round(float(np.percentile(spent[name], 99)) * 1e6, 1),
        }
    result["phrase_rows_p50_us"] = round(float(np.percentile(spent["phrase"], 50)) * 1e6, 1)
    result["size_ratio"] = round(result["positions"]["disk_mb"] / result["before"]["disk_mb"], 2)
    result["bm25_p50_ratio"] = round(
        result["positions"]["bm25_p50_us"] / result["before"]["bm25_p50_us"], 3
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "positions.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
