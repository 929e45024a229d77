"""Corpus-wide BM25 statistics for a router, exact and cached by partition version.

Every partition is scored with the statistics of the tenant across the whole store: document
frequencies of the query's terms, document count and total length, summed over exactly one
replica of each partition (all in-sync replicas of a partition at one version hold the same
records). They are kept per partition and tenant with the version they were read at. A
partition's entries are dropped when its version moves (a write acknowledged through this
router, or a search answer reporting a newer version written elsewhere), so a query whose
terms are all known costs no statistics round; one with a new term or a changed partition
asks only the partitions concerned.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ragkit.backends.sharded.host import PartitionStats
from ragkit.schema import LexicalStats


@dataclass
class _Entry:
    version: int
    doc_count: int
    total_length: int
    doc_freqs: dict[str, int] = field(default_factory=dict)


class StatsCache:
    def __init__(self, max_terms_per_partition: int = 500_000) -> None:
        self._entries: dict[tuple[int, str | None], _Entry] = {}
        self._max_terms = max_terms_per_partition
        self._lock = threading.Lock()

    def missing(
        self, partitions: Iterable[int], tenant: str | None, terms: Sequence[str]
    ) -> list[int]:
        """Partitions whose entry for ``tenant`` lacks some of ``terms`` (or that have none)."""
        with self._lock:
            return [
                p
                for p in partitions
                if (entry := self._entries.get((p, tenant))) is None
                or any(t not in entry.doc_freqs for t in terms)
            ]

    def update(
        self, found: Mapping[int, PartitionStats], tenant: str | None, terms: Sequence[str]
    ) -> None:
        with self._lock:
            for p, stats in found.items():
                entry = self._entries.get((p, tenant))
                if entry is None or entry.version != stats.version:
                    entry = _Entry(stats.version, stats.doc_count, stats.total_length)
                    self._entries[(p, tenant)] = entry
                if len(entry.doc_freqs) > self._max_terms:
                    entry.doc_freqs.clear()
                for term in terms:  # absent terms are known too: df 0
                    entry.doc_freqs[term] = stats.doc_freqs.get(term, 0)

    def versions(self, partitions: Iterable[int], tenant: str | None) -> dict[int, int]:
        with self._lock:
            entries = self._entries
            return {p: e.version for p in partitions if (e := entries.get((p, tenant))) is not None}

    def moved(self, partition: int, version: int) -> None:
        """A partition is now at ``version``: its entries read at another version go."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if k[0] == partition]:
                if self._entries[key].version != version:
                    del self._entries[key]

    def combine(
        self, partitions: Iterable[int], tenant: str | None, terms: Sequence[str]
    ) -> LexicalStats:
        """The statistics of ``tenant`` over ``partitions`` (those with an entry)."""
        with self._lock:
            entries = [e for p in partitions if (e := self._entries.get((p, tenant))) is not None]
            freqs = {t: sum(e.doc_freqs.get(t, 0) for e in entries) for t in terms}
            return LexicalStats(
                doc_count=sum(e.doc_count for e in entries),
                total_length=sum(e.total_length for e in entries),
                doc_freqs={t: df for t, df in freqs.items() if df > 0},
            )
