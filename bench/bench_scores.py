"""Do scores mean something? Quality and separation of each fusion on SciFact.

    .venv/bin/python bench/bench_scores.py

For each fusion (calibrated, relative score, RRF, DBSF) with alpha 0.5: SciFact hybrid
nDCG@10 over the 300 test queries, and the ROC AUC of the top-1 score of those queries
against the top-1 score of 300 off-topic questions (``ragkit.evaluation.off_topic_queries``).
Then the calibrated fusion over alpha 0.3-0.7, and the score threshold that keeps 95% of the
on-topic queries with the share of off-topic queries it rejects. Real all-MiniLM-L6-v2
embeddings (passages cached by bench_local.py). Writes ``bench/results/scores.json``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from bench_local import RESULTS, scifact_vectors

from ragkit import HybridStore, Record
from ragkit.embeddings import LocalEmbedder
from ragkit.evaluation import evaluate, off_topic_queries, separation

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def measure(store: HybridStore, on_topic: list[str], **options: Any) -> dict[str, Any]:
    (quality,) = evaluate(store, DATA, ["hybrid"], **options)
    split = separation(store, on_topic, **options)
    threshold = split.threshold(0.95)
    at = {
        str(t): {
            "on_topic_kept": round(float((split.on_topic >= t).mean()), 4),
            "off_topic_rejected": round(split.rejected(t), 4),
        }
        for t in (0.2, 0.25, 0.3)
    }
    return {
        "at_threshold": at,
        "ndcg@10": round(quality.ndcg_at_10, 4),
        "auc": round(split.auc, 4),
        "threshold_keeping_95pct": round(threshold, 4),
        "off_topic_rejected": round(split.rejected(threshold), 4),
        "on_topic_top1_median": round(float(sorted(split.on_topic)[len(split.on_topic) // 2]), 4),
        "off_topic_top1_max": round(float(split.off_topic.max()), 4),
    }


def main() -> None:
    docs, doc_vecs, queries, _ = scifact_vectors(DATA, RESULTS / "cache")
    store = HybridStore(embedder=LocalEmbedder())
    store.upsert([Record(d.id, d.content, {}, doc_vecs[i]) for i, d in enumerate(docs)])
    on_topic = list(queries.values())
    store.search_batch(on_topic + off_topic_queries(), k=1)  # embed every query once (cached)
    result: dict[str, Any] = {"date": date.today().isoformat(), "fusions": {}, "alpha": {}}
    for fusion in ("calibrated", "relative_score", "rrf", "dbsf"):
        result["fusions"][fusion] = measure(store, on_topic, fusion=fusion)
        print(fusion, result["fusions"][fusion], flush=True)
    for alpha in (0.3, 0.4, 0.5, 0.6, 0.7):
        result["alpha"][str(alpha)] = measure(store, on_topic, fusion="calibrated", alpha=alpha)
        print("calibrated alpha", alpha, result["alpha"][str(alpha)], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scores.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
