"""Titles as a text field of their own (BM25F) against the joined text, on five corpora.

    RAGKIT_CLASSIC_CORPORA=<folder> .venv/bin/python bench/bench_fields.py

Corpora: SciFact, CISI and Cranfield (``_classic_corpora``: the original files, from a folder
outside the repository), and the two judged corpora ``_found_corpora`` builds from
documentation on this machine (manual pages, docstrings). Each record's text is the title and
body joined (the dense leg embeds it; vectors cached under ``bench/results/cache`` as
``bench_fusion_corpora.py`` caches them), and its title is also a text field
(``LocalShard(text_fields=["title"])``). Settings: the joined text alone
(``field_weights={"text": 1}``, which is plain BM25) and ``field_weights={"text": 1,
"title": w}`` for w in 0.5, 1, 2; BM25 alone and the default hybrid. For each corpus,
nDCG@10 and each setting's difference to the joined text with a 95% paired bootstrap
interval (queries resampled). Writes ``bench/results/fields.json``.

Two readings of "not worse", both printed and written:

- ``point`` (this script's rule, fixed before the first run): a setting's hybrid nDCG@10
  is not below the joined text's on any of SciFact, CISI and Cranfield;
- ``interval`` (the issue's paired bootstrap): on none of the three does the interval of
  the setting's difference to the joined text lie below zero, and the joined text is worse
  than a setting where that setting's interval lies above zero.

Of the settings a reading keeps, the best mean over the three. The two found corpora are
reported beside them (they were the stand-ins before CISI and Cranfield were at hand) and
do not enter either reading.

    .venv/bin/python bench/bench_fields.py --latency [--docs N]

What the title field costs a lexical search: 200,000 synthetic passages (``_synthetic``;
the title: a passage's first eight words) in two LocalShards, one without text fields
(plain BM25) and one indexing ``title`` (its default: ``TITLE_FIELD_WEIGHTS``, BM25F), 1,000
four-word queries, top 10, in turns, 3 passes after a warm-up pass. Writes
``bench/results/fields-latency.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import _classic_corpora
from bench_fusion_corpora import corpus_vectors, per_query, three_corpora
from bench_local import RESULTS

from ragkit import HybridStore, Record
from ragkit.backends.local import LocalShard
from ragkit.embeddings import LocalEmbedder

WEIGHTS = (0.5, 1.0, 2.0)
#: the corpora the rule is decided on (the issue's three)
DECIDING = ("scifact", "cisi", "cranfield")


def open_store(name: str, data: Path, embedder: LocalEmbedder) -> HybridStore:
    docs, vectors = corpus_vectors(name, data, embedder)
    store = HybridStore(embedder=embedder, backend=LocalShard(text_fields=["title"]))
    store.upsert(
        [
            Record(d.id, d.content, {"title": d.title} if d.title else {}, vectors[i])
            for i, d in enumerate(docs)
        ]
    )
    return store


def interval(base: dict[str, float], other: dict[str, float]) -> list[float]:
    """Mean of (other - base) over queries, with a 95% paired bootstrap interval."""
    diff = np.array([other[q] - base[q] for q in base])
    rng = np.random.default_rng(0)
    samples = diff[rng.integers(0, len(diff), (2000, len(diff)))].mean(axis=1)
    low, high = np.percentile(samples, [2.5, 97.5])
    return [round(float(diff.mean()), 4), round(float(low), 4), round(float(high), 4)]


def latency(n_docs: int) -> None:
    from _synthetic import generate

    from ragkit.embeddings import HashingEmbedder

    corpus = generate(n_docs, 1000)
    stores = {
        name: HybridStore(
            embedder=HashingEmbedder(dim=16),
            backend=LocalShard(dense=False, text_fields=fields),
        )
        for name, fields in (("bm25", []), ("title_field", ["title"]))
    }
    started = {}
    for name, store in stores.items():
        started[name] = time.perf_counter()
        for first in range(0, n_docs, 4096):
            rows = range(first, min(n_docs, first + 4096))
            store.backend.upsert(
                [
                    Record(
                        str(i), corpus.texts[i], {"title": " ".join(corpus.texts[i].split()[:8])}
                    )
                    for i in rows
                ]
            )
        started[name] = time.perf_counter() - started[name]
    spent: dict[str, list[float]] = {name: [] for name in stores}
    for pass_ in range(4):
        for i, text in enumerate(corpus.query_texts):
            for name in list(stores) if (i + pass_) % 2 == 0 else list(stores)[::-1]:
                began = time.perf_counter()
                stores[name].search(text, k=10, mode="lexical")
                if pass_:
                    spent[name].append(time.perf_counter() - began)
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "documents": n_docs,
    }
    for name, values in spent.items():
        result[name] = {
            "build_s": round(started[name], 1),
            "lexical_p50_us": round(float(np.percentile(values, 50)) * 1e6, 1),
            "lexical_p99_us": round(float(np.percentile(values, 99)) * 1e6, 1),
        }
    result["p50_ratio"] = round(
        result["title_field"]["lexical_p50_us"] / result["bm25"]["lexical_p50_us"], 2
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fields-latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def main() -> None:
    if "--latency" in sys.argv[1:]:
        docs = int(sys.argv[sys.argv.index("--docs") + 1]) if "--docs" in sys.argv else 200_000
        latency(docs)
        return
    embedder = LocalEmbedder()
    found = three_corpora()
    corpora = {
        "scifact": found.pop("scifact"),
        **{
            name: _classic_corpora.build(name, RESULTS / "corpora")
            for name in ("cisi", "cranfield")
        },
        **found,
    }
    result: dict[str, Any] = {"date": date.today().isoformat(), "corpora": {}}
    for name, data in corpora.items():
        store = open_store(name, data, embedder)
        table: dict[str, Any] = {}
        for mode in ("lexical", "hybrid"):
            base = per_query(store, data, mode, field_weights={"text": 1.0})
            row: dict[str, Any] = {"joined text": round(float(np.mean(list(base.values()))), 4)}
            for w in WEIGHTS:
                runs = per_query(store, data, mode, field_weights={"text": 1.0, "title": w})
                row[f"title field {w}"] = {
                    "ndcg10": round(float(np.mean(list(runs.values()))), 4),
                    "minus_joined_95pct": interval(base, runs),
                }
            table[mode] = row
        store.close()
        result["corpora"][name] = table
        print(name, json.dumps(table, indent=2), flush=True)
    result["deciding"] = list(DECIDING)
    result["readings"] = readings(result["corpora"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fields.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["readings"], indent=2))


def readings(corpora: dict[str, Any]) -> dict[str, Any]:
    """Which title weights each reading of "not worse on any of the three" keeps (hybrid)."""
    rows = {w: [corpora[c]["hybrid"][f"title field {w}"] for c in DECIDING] for w in WEIGHTS}
    point = [w for w in WEIGHTS if all(r["minus_joined_95pct"][0] >= 0 for r in rows[w])]
    interval = [w for w in WEIGHTS if all(r["minus_joined_95pct"][2] >= 0 for r in rows[w])]
    joined_worse_on = [
        c
        for i, c in enumerate(DECIDING)
        if any(rows[w][i]["minus_joined_95pct"][1] > 0 for w in WEIGHTS)
    ]

    def best(kept: list[float]) -> float | None:
        means = {w: float(np.mean([r["minus_joined_95pct"][0] for r in rows[w]])) for w in kept}
        return max(means, key=lambda w: means[w]) if means else None

    return {
        "point": {"not_worse_on_any": point, "best": best(point)},
        "interval": {
            "not_worse_on_any": interval,
            "best": best(interval),
            "joined_text_worse_on": joined_worse_on,
        },
    }


if __name__ == "__main__":
    main()
