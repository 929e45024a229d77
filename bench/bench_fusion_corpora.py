"""The fusion defaults on more than one corpus: SciFact and two judged corpora found on this
machine (``_found_corpora``: manual pages and Python docstrings, known-item questions).

    .venv/bin/python bench/bench_fusion_corpora.py           # alpha and the fusions
    .venv/bin/python bench/bench_fusion_corpora.py --bm25    # BM25's k1 and b

For each corpus: nDCG@10 of dense alone, BM25 alone, the calibrated fusion over alpha 0.3-0.7,
and relative score and RRF at alpha 0.5, with all-MiniLM-L6-v2 (vectors cached under
``bench/results/cache``). Writes ``bench/results/fusion-corpora.json``.

The rule, fixed before the first run: the default alpha is the grid value with the highest
unweighted mean nDCG@10 over the three corpora, a tie going to 0.5. The script also prints
each setting's mean difference to alpha 0.5, with a 95% paired bootstrap interval (queries
resampled within each corpus).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from _found_corpora import build
from bench_local import RESULTS

from ragkit import HybridStore, Record
from ragkit.backends.local import LocalShard
from ragkit.beir import BeirDoc, read_corpus
from ragkit.embeddings import LocalEmbedder
from ragkit.evaluation import judged_run

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7)
BM25_PAIRS = ((1.2, 0.75), (0.9, 0.4), (1.2, 0.4), (0.9, 0.75))


def corpus_vectors(
    name: str, data: Path, embedder: LocalEmbedder
) -> tuple[list[BeirDoc], np.ndarray]:
    """The corpus's documents and their vectors (title and body joined), cached."""
    docs = list(read_corpus(data))
    cache = RESULTS / "cache" / f"{name}_docs.npy"
    if cache.exists():
        return docs, np.load(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    vectors = embedder.embed_documents([d.content for d in docs])
    np.save(cache, vectors)
    return docs, vectors


def open_store(
    name: str, data: Path, embedder: LocalEmbedder, bm25: tuple[float, float] = (1.2, 0.75)
) -> HybridStore:
    docs, vectors = corpus_vectors(name, data, embedder)
    store = HybridStore(embedder=embedder, backend=LocalShard(bm25_k1=bm25[0], bm25_b=bm25[1]))
    store.upsert([Record(d.id, d.content, {}, vectors[i]) for i, d in enumerate(docs)])
    return store


def per_query(store: HybridStore, data: Path, mode: str, **options: Any) -> dict[str, float]:
    """nDCG@10 of each judged query (the run ``ragkit.evaluation.evaluate`` scores)."""
    import ir_measures
    from ir_measures import nDCG

    qrels, run = judged_run(store, data, mode, depth=10, **options)
    scores = dict.fromkeys(run, 0.0)
    for m in ir_measures.iter_calc([nDCG @ 10], qrels, run):
        scores[m.query_id] = float(m.value)
    return scores


def measure(store: HybridStore, data: Path) -> dict[str, dict[str, float]]:
    """Per-query nDCG@10 of each leg and fusion setting."""
    out = {mode: per_query(store, data, mode) for mode in ("dense", "lexical")}
    for alpha in ALPHAS:
        out[f"calibrated {alpha}"] = per_query(
            store, data, "hybrid", fusion="calibrated", alpha=alpha
        )
    for fusion in ("relative_score", "rrf"):
        out[fusion] = per_query(store, data, "hybrid", fusion=fusion, alpha=0.5)
    return out


def against_default(
    runs: dict[str, dict[str, dict[str, float]]], setting: str, rounds: int = 2000
) -> tuple[float, float, float]:
    """Mean over corpora of (``setting`` - alpha 0.5) in nDCG@10, with a 95% paired bootstrap
    interval (queries resampled within each corpus)."""
    rng = np.random.default_rng(0)
    diffs = []
    for corpus in runs.values():
        base, other = corpus["calibrated 0.5"], corpus[setting]
        diffs.append(np.array([other[q] - base[q] for q in base]))
    point = float(np.mean([d.mean() for d in diffs]))
    samples = np.mean(
        [d[rng.integers(0, len(d), (rounds, len(d)))].mean(axis=1) for d in diffs], axis=0
    )
    low, high = np.percentile(samples, [2.5, 97.5])
    return point, float(low), float(high)


def bm25_grid(corpora: dict[str, Path], embedder: LocalEmbedder) -> None:
    """BM25 alone and the default hybrid for Lucene's (1.2, 0.75), Anserini's (0.9, 0.4) and
    the two mixed pairs. Writes ``bench/results/fusion-corpora-bm25.json``."""
    result: dict[str, Any] = {"date": date.today().isoformat(), "pairs": {}}
    for k1, b in BM25_PAIRS:
        row: dict[str, dict[str, float]] = {}
        for name, data in corpora.items():
            store = open_store(name, data, embedder, (k1, b))
            row[name] = {
                mode: round(float(np.mean(list(per_query(store, data, mode).values()))), 4)
                for mode in ("lexical", "hybrid")
            }
            store.close()
        mean = round(float(np.mean([r["hybrid"] for r in row.values()])), 4)
        result["pairs"][f"k1={k1} b={b}"] = {"corpora": row, "mean_hybrid": mean}
        print(f"k1={k1} b={b}", row, "mean hybrid", mean, flush=True)
    (RESULTS / "fusion-corpora-bm25.json").write_text(json.dumps(result, indent=2) + "\n")


def three_corpora() -> dict[str, Path]:
    """SciFact and the two corpora ``_found_corpora`` builds (once) under bench/results."""
    return {
        "scifact": SCIFACT,
        "manpages": build("manpages", RESULTS / "corpora"),
        "docstrings": build("docstrings", RESULTS / "corpora"),
    }


def main() -> None:
    embedder = LocalEmbedder()
    corpora = three_corpora()
    if "--bm25" in sys.argv[1:]:
        bm25_grid(corpora, embedder)
        return
    runs: dict[str, dict[str, dict[str, float]]] = {}
    table: dict[str, dict[str, float]] = {}
    for name, data in corpora.items():
        store = open_store(name, data, embedder)
        runs[name] = measure(store, data)
        store.close()
        table[name] = {s: round(float(np.mean(list(q.values()))), 4) for s, q in runs[name].items()}
        print(name, len(runs[name]["dense"]), "queries", table[name], flush=True)
    means = {
        alpha: float(np.mean([table[c][f"calibrated {alpha}"] for c in table])) for alpha in ALPHAS
    }
    best = max(ALPHAS, key=lambda a: (round(means[a], 4), a == 0.5))
    versus = {
        setting: [round(x, 4) for x in against_default(runs, setting)]
        for setting in [f"calibrated {a}" for a in ALPHAS if a != 0.5] + ["relative_score", "rrf"]
    }
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "corpora": table,
        "queries": {name: len(r["dense"]) for name, r in runs.items()},
        "mean_by_alpha": {str(a): round(m, 4) for a, m in means.items()},
        "chosen_alpha": best,
        "mean_difference_to_alpha_0.5_with_95pct_interval": versus,
    }
    print("mean nDCG@10 by alpha", result["mean_by_alpha"], "-> alpha", best)
    for setting, (point, low, high) in versus.items():
        print(f"  {setting} - calibrated 0.5: {point:+.4f} [{low:+.4f}, {high:+.4f}]")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fusion-corpora.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
