"""Retrieval evaluation: BEIR datasets with metrics from ir-measures (pytrec_eval), and how
well scores separate on-topic from off-topic queries (``separation``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit.beir import read_qrels, read_queries
from ragkit.store import HybridStore


@dataclass(slots=True)
class EvalResult:
    mode: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    queries: int

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "ndcg@10": self.ndcg_at_10,
            "recall@100": self.recall_at_100,
            "mrr@10": self.mrr_at_10,
        }


def judged_run(
    store: HybridStore,
    data: Path,
    mode: str = "hybrid",
    *,
    split: str = "test",
    depth: int = 100,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """The qrels of ``split`` and the run ``store`` gives for its judged queries in ``mode``
    (top ``depth`` of each), ready for ir-measures; ``options`` are further search options."""
    qrels = read_qrels(data, split)
    queries = read_queries(data)
    qids = [q for q in qrels if q in queries]
    texts = [queries[q] for q in qids]
    run: dict[str, dict[str, float]] = {}
    batch = 64
    for start in range(0, len(qids), batch):
        found = store.search_batch(texts[start : start + batch], k=depth, mode=mode, **options)
        for qid, result in zip(qids[start : start + batch], found):
            # Rank order is what counts: descending synthetic scores avoid score ties.
            ranked = {hit.id: float(depth - i) for i, hit in enumerate(result)}
            # A query with no hits must still count (as zero), not drop out of the mean.
            run[qid] = ranked or {"ragkit:no-hit": 0.0}
        if progress is not None:
            progress(len(found))
    return qrels, run


def evaluate(
    store: HybridStore,
    data: Path,
    modes: Sequence[str] = ("hybrid", "dense", "lexical"),
    *,
    split: str = "test",
    depth: int = 100,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> list[EvalResult]:
    """Run every judged query of ``split`` through ``store`` in each mode and score it;
    ``options`` are further search options (``fusion``, ``alpha``, ...)."""
    import ir_measures
    from ir_measures import RR, R, nDCG

    results = []
    for mode in modes:
        qrels, run = judged_run(
            store, data, mode, split=split, depth=depth, progress=progress, **options
        )
        metrics = ir_measures.calc_aggregate([nDCG @ 10, R @ 100, RR @ 10], qrels, run)
        results.append(
            EvalResult(
                mode,
                float(metrics[nDCG @ 10]),
                float(metrics[R @ 100]),
                float(metrics[RR @ 10]),
                len(run),
            )
        )
    return results


def off_topic_queries(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` everyday questions (programming, travel, sport, money, cars, music, home repair,
    games, geography, baking) to probe a store with: few corpora are about all of these, so
    their best hits show what an irrelevant match scores. Deterministic for a seed."""
    from ragkit._offtopic import off_topic_questions

    return off_topic_questions(n, seed)


def roc_auc(
    positives: Sequence[float] | NDArray[np.floating],
    negatives: Sequence[float] | NDArray[np.floating],
) -> float:
    """The probability that a random positive scores above a random negative (ties count
    half): 1.0 separates perfectly, 0.5 is chance."""
    pos = np.sort(np.asarray(positives, dtype=np.float64))
    neg = np.sort(np.asarray(negatives, dtype=np.float64))
    if not len(pos) or not len(neg):
        raise ValueError("roc_auc needs at least one positive and one negative score")
    below = np.searchsorted(neg, pos, side="left")
    tied = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * tied).sum() / (len(pos) * len(neg)))


@dataclass(slots=True)
class Separation:
    """How well the best hit's score tells on-topic queries from off-topic ones."""

    auc: float
    on_topic: NDArray[np.float64]  # the top-1 score of each on-topic query (0: no hit)
    off_topic: NDArray[np.float64]

    def threshold(self, keep: float = 0.95) -> float:
        """The score that keeps ``keep`` of the on-topic queries' best hits."""
        return float(np.quantile(self.on_topic, 1.0 - keep))

    def rejected(self, threshold: float) -> float:
        """The share of off-topic queries whose best hit falls below ``threshold``."""
        return float((self.off_topic < threshold).mean())


def separation(
    store: HybridStore,
    on_topic: Sequence[str],
    off_topic: Sequence[str] | None = None,
    **options: Any,
) -> Separation:
    """Top-1 scores of ``on_topic`` queries (questions your corpus answers) against
    ``off_topic`` ones (default: ``off_topic_queries()``), and the ROC AUC between them.
    ``options`` are search options (``fusion``, ``alpha``, ...). Use it to choose a score
    threshold for your corpus: ``separation(store, questions).threshold(0.95)``."""
    probes = list(off_topic) if off_topic is not None else off_topic_queries()

    def top1(queries: Sequence[str]) -> NDArray[np.float64]:
        found = store.search_batch(list(queries), k=1, **options)
        return np.array([r.hits[0].score if r.hits else 0.0 for r in found])

    on, off = top1(on_topic), top1(probes)
    return Separation(roc_auc(on, off), on, off)
