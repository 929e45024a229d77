"""BM25 as sparse vectors, for engines that score sparse dot products with an IDF of their own
(Qdrant's IDF modifier): ragkit's analyzer gives the terms, each document term weighs
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``, a query term weighs its count, and
the engine multiplies by the IDF. A term's index is a 32-bit hash of it.

``avgdl`` is known when a document is written: ``Lengths`` keeps each tenant's document count
and total length, updated by every write, and a document keeps the average of its time until
its weights are rewritten (the adapter's ``reweight``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping

from ragkit.backends._engine import K1, B


def term_index(term: str) -> int:
    """A term's index in a sparse vector: the first 32 bits of its BLAKE2b hash."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big")


def _by_index(weights: Iterable[tuple[str, float]]) -> tuple[list[int], list[float]]:
    merged: dict[int, float] = {}
    for term, weight in weights:
        index = term_index(term)
        merged[index] = merged.get(index, 0.0) + weight  # a hash collision adds up
    return list(merged), list(merged.values())


def document_weights(tf: Mapping[str, int], avgdl: float) -> tuple[list[int], list[float]]:
    """(indices, values) of a document with term counts ``tf``."""
    dl = sum(tf.values())
    norm = K1 * (1 - B + B * dl / max(avgdl, 1.0))
    return _by_index((t, n * (K1 + 1) / (n + norm)) for t, n in tf.items())


def query_weights(terms: Counter[str]) -> tuple[list[int], list[float]]:
    """(indices, values) of a query: each term weighs its count."""
    return _by_index((t, float(n)) for t, n in terms.items())


class Lengths:
    """Each tenant's document count and total length in terms (JSON in the settings)."""

    def __init__(self, raw: str | None) -> None:
        self.by_tenant: dict[str, list[int]] = dict(json.loads(raw or "{}"))

    def add(self, tenant: str | None, length: int, sign: int = 1) -> None:
        stats = self.by_tenant.setdefault(tenant or "", [0, 0])
        stats[0] += sign
        stats[1] += sign * length

    def avgdl(self, tenant: str | None) -> float:
        docs, total = self.by_tenant.get(tenant or "", [0, 0])
        return total / docs if docs > 0 else 1.0

    def dumps(self) -> str:
        return json.dumps(self.by_tenant)
