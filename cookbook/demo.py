"""`make demo`: index the shipped demo corpus and answer a few hybrid queries with sources.

Run directly with ``python cookbook/demo.py``; the store lives in ``.demo-store/`` and is
reused on later runs (re-indexing the same ids replaces them, so the demo is idempotent).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rich.console import Console
from rich.panel import Panel

from ragkit import HybridStore
from ragkit.ingest.sources import read_source

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "demo_corpus.jsonl"
STORE = HERE.parent / ".demo-store"

QUERIES: list[tuple[str, dict[str, Any] | None, str]] = [
    ("what does error RK-4012 mean?", None, "an exact identifier"),
    ("my homemade loaf came out flat and dense", None, "a paraphrase"),
    ("how do I merge keyword and vector rankings?", None, "a concept question"),
    ("why is the sky blue in the daytime", None, "a plain question"),
    ("inventions that made computers practical", {"year": {"$lt": 1950}}, "a metadata filter"),
]


def leg(score: float | None, rank: int | None) -> str:
    return "[dim]-[/]" if score is None else f"{score:.3f} [dim]#{rank or '-'}[/]"


def main() -> None:
    console = Console()
    docs = list(read_source(CORPUS))
    started = time.perf_counter()
    with HybridStore(STORE) as store:
        store.add_texts([d.text for d in docs], [d.metadata for d in docs], [d.id for d in docs])
        console.print(
            f"[bold green]Indexed {store.count()} passages[/] "
            f"from {CORPUS.relative_to(HERE.parent)} "
            f"into {STORE.name}/ with {store.embedder.model_id} "
            f"in {time.perf_counter() - started:.1f}s\n"
        )
        for query, flt, why in QUERIES:
            result = store.search(query, k=3, filter=flt)
            note = why + (f"; filter {flt}" if flt else "")
            lines = []
            for rank, hit in enumerate(result, start=1):
                title = hit.metadata.get("title", "")
                body = hit.text.removeprefix(title).strip()
                snippet = body if len(body) < 180 else body[:177] + "..."
                lines.append(
                    f"[bold]{rank}. {title}[/]  [cyan]{hit.metadata.get('source', hit.id)}[/]\n"
                    f"   fused [bold]{hit.score:.3f}[/]"
                    f"   dense {leg(hit.dense_score, hit.dense_rank)}"
                    f"   BM25 {leg(hit.lexical_score, hit.lexical_rank)}\n"
                    f"   [dim]{snippet}[/]"
                )
            console.print(
                Panel(
                    "\n".join(lines),
                    title=f"[bold]{query}[/]",
                    subtitle=note,
                    title_align="left",
                    subtitle_align="right",
                )
            )


if __name__ == "__main__":
    main()
