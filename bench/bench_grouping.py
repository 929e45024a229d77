"""Documents, not fragments: SciFact split into chunks of about three sentences, searched
with ``group_by="source"``, against indexing whole documents, in one run.

    .venv/bin/python bench/bench_grouping.py

Every SciFact abstract is cut into chunks of three sentences (the last one may be shorter),
each a record with ``source`` = the document's id and ``chunk`` = its place, written once
with the title on every chunk (as a chunker that carries a document's title does) and once
without. A query's documents are the groups of ``store.search(q, k=10,
group_by="source")`` (each group's score: its best chunk's), scored with nDCG@10 against
the document qrels; beside it the same store's plain chunk search with duplicates of a
document dropped, and the whole-document store (today's setting). Hybrid (the default
calibrated fusion), dense and BM25 alone, each. Chunk vectors are cached under
``bench/results/cache``. Writes ``bench/results/grouping.json``.
"""

from __future__ import annotations

import json
import os
import re
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
from ragkit.beir import read_qrels
from ragkit.embeddings import HashingEmbedder, LocalEmbedder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
PER_CHUNK = 3


def chunks(docs: list[Any], titled: bool) -> list[tuple[str, str, int, str]]:
    """(id, source, position, text) of every chunk."""
    out = []
    for doc in docs:
        sentences = [s for s in SENTENCE.split(doc.text.strip()) if s.strip()] or [doc.title]
        for i in range(0, len(sentences), PER_CHUNK):
            body = " ".join(sentences[i : i + PER_CHUNK])
            text = f"{doc.title}\n{body}" if titled and doc.title else body
            out.append((f"{doc.id}#{i // PER_CHUNK}", doc.id, i // PER_CHUNK, text))
    return out


def chunk_store(docs: list[Any], titled: bool) -> HybridStore:
    rows = chunks(docs, titled)
    cache = RESULTS / "cache" / f"scifact_chunks{'_titled' if titled else ''}.npy"
    if cache.exists():
        vectors = np.load(cache)
    else:
        started = time.perf_counter()
        vectors = LocalEmbedder().embed_documents([text for *_, text in rows])
        print(f"  embedded {len(rows)} chunks in {time.perf_counter() - started:.0f}s")
        np.save(cache, vectors)
    store = HybridStore(backend=LocalShard(), embedder=HashingEmbedder(dim=vectors.shape[1]))
    store.upsert(
        [
            Record(rid, text, {"source": source, "chunk": position}, vectors[i])
            for i, (rid, source, position, text) in enumerate(rows)
        ]
    )
    return store


def ndcg10(qrels: dict[str, dict[str, int]], run: dict[str, list[str]]) -> float:
    import ir_measures
    from ir_measures import nDCG

    scored = {q: {d: float(10 - i) for i, d in enumerate(ds[:10])} or {"none": 0.0}
              for q, ds in run.items()}  # fmt: skip
    return float(ir_measures.calc_aggregate([nDCG @ 10], qrels, scored)[nDCG @ 10])


def main() -> None:
    docs, doc_vecs, queries, query_vecs = scifact_vectors(DATA, RESULTS / "cache")
    qrels = read_qrels(DATA)
    qids, texts = list(queries), list(queries.values())
    whole = HybridStore(backend=LocalShard(), embedder=HashingEmbedder(dim=doc_vecs.shape[1]))
    whole.upsert([Record(d.id, d.content, {}, doc_vecs[i]) for i, d in enumerate(docs)])
    result: dict[str, Any] = {"date": date.today().isoformat(), "queries": len(qids)}
    stores = {"whole documents": whole}
    for titled in (True, False):
        stores["chunks, title on each" if titled else "chunks, no title"] = chunk_store(
            docs, titled
        )
    result["chunks"] = {name: s.count() for name, s in stores.items()}
    for mode in ("hybrid", "dense", "lexical"):
        row: dict[str, float] = {}
        for name, store in stores.items():
            grouped: dict[str, list[str]] = {}
            flat: dict[str, list[str]] = {}
            for qid, text, vector in zip(qids, texts, query_vecs):
                if name == "whole documents":
                    found = store.search_by_vector(vector, query=text, k=10, mode=mode)
                    grouped[qid] = found.ids
                    continue
                found = store.search_by_vector(
                    vector, query=text, k=10, mode=mode, group_by="source"
                )
                grouped[qid] = [str(g.key) for g in found.groups or ()]
                hits = store.search_by_vector(vector, query=text, k=100, mode=mode)
                flat[qid] = list(dict.fromkeys(h.metadata["source"] for h in hits))
            key = name if name == "whole documents" else f"{name}, group_by"
            row[key] = round(ndcg10(qrels, grouped), 4)
            if flat:
                row[f"{name}, top 100 chunks deduplicated"] = round(ndcg10(qrels, flat), 4)
        result[mode] = row
        print(mode, json.dumps(row, indent=2), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "grouping.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
