"""Retrieval evaluation on BEIR datasets, with metrics from ir-measures (pytrec_eval)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def evaluate(
    store: HybridStore,
    data: Path,
    modes: Sequence[str] = ("hybrid", "dense", "lexical"),
    *,
    split: str = "test",
    depth: int = 100,
    progress: Callable[[int], None] | None = None,
) -> list[EvalResult]:
    """Run every judged query of ``split`` through ``store`` in each mode and score it."""
    import ir_measures
    from ir_measures import RR, R, nDCG

    qrels = read_qrels(data, split)
    queries = read_queries(data)
    qids = [q for q in qrels if q in queries]
    texts = [queries[q] for q in qids]
    results = []
    for mode in modes:
        run: dict[str, dict[str, float]] = {}
        batch = 64
        for start in range(0, len(qids), batch):
            found = store.search_batch(texts[start : start + batch], k=depth, mode=mode)
            for qid, result in zip(qids[start : start + batch], found):
                # Rank order is what counts: descending synthetic scores avoid score ties.
                ranked = {hit.id: float(depth - i) for i, hit in enumerate(result)}
                # A query with no hits must still count (as zero), not drop out of the mean.
                run[qid] = ranked or {"ragkit:no-hit": 0.0}
            if progress is not None:
                progress(len(found))
        metrics = ir_measures.calc_aggregate([nDCG @ 10, R @ 100, RR @ 10], qrels, run)
        results.append(
            EvalResult(
                mode,
                float(metrics[nDCG @ 10]),
                float(metrics[R @ 100]),
                float(metrics[RR @ 10]),
                len(qids),
            )
        )
    return results
