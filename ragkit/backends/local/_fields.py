"""Named text fields of a LocalShard and their BM25F scoring.

A shard built with ``text_fields=("title", ...)`` indexes each of those metadata fields (its
string, or the strings of a list, joined) in a lexical index of its own, row for row with
the shard's main index, which holds the record's text: the field ``"text"``.

A search with ``field_weights`` scores BM25F (Robertson, Zaragoza and Taylor, 2004): each
term's frequencies are normalized by their field's length and summed with the weights
before one saturation, ``tf' = sum_f w_f tf_f / (1 - b + b len_f / avglen_f)``, and the score
is ``sum_t idf(t) tf' (k1 + 1) / (tf' + k1)``. A term's document frequency counts the
records holding it in any weighted field, so ``{"text": 1.0}`` is exactly BM25; the query's
ceiling is BM25's (``idf (k1 + 1)`` per term), so a calibrated fusion keeps its scale.
Counts and field lengths are over the tenant's records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit.analysis import Analyzer
from ragkit.backends.local import _kernels as kernels
from ragkit.backends.local._lexical import LexicalHits, LexicalIndex
from ragkit.errors import InvalidInputError
from ragkit.schema import LexicalStats

#: the field that is the record's own text (the main lexical index)
TEXT_FIELD = "text"


def field_text(value: Any) -> str:
    """What a metadata value contributes to its text field: a string, or a list's strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(v for v in value if isinstance(v, str))
    return ""


class TextFields:
    """One lexical index per named text field (no positions: phrases use the main index)."""

    def __init__(self, names: Sequence[str], analyzer: Analyzer, k1: float, b: float) -> None:
        self.names = tuple(names)
        self.indexes = {
            name: LexicalIndex(analyzer, k1=k1, b=b, positions=False) for name in self.names
        }
        self._tf = self._total = np.zeros(0)

    def add(self, first_row: int, metadatas: Sequence[Mapping[str, Any]]) -> None:
        for name, index in self.indexes.items():
            index.add(first_row, [field_text(m.get(name)) for m in metadatas])

    def forget(self, rows: NDArray[np.int64]) -> None:
        """Account for killed ``rows`` (live until now) in each field's live length and count
        (their postings stay until a merge drops them)."""
        for index in self.indexes.values():
            lengths = index.doc_len.view
            index.total_length -= int(lengths[rows[rows < len(lengths)]].sum())
            index.live_count -= len(rows)

    def recount(self, alive: NDArray[np.bool_]) -> None:
        for index in self.indexes.values():
            index.recount(alive)

    def maybe_merge(self, alive: NDArray[np.bool_]) -> None:
        for index in self.indexes.values():
            index.maybe_merge(alive)

    def save(self, folder: Path, alive: NDArray[np.bool_]) -> None:
        for i, index in enumerate(self.indexes.values()):
            index.save(folder, alive, prefix=f"field{i}_")

    def load(self, folder: Path, alive: NDArray[np.bool_]) -> None:
        """(The checkpoint's manifest names its fields; ``ShardIndexes.load`` checks them.)"""
        for i, (name, index) in enumerate(self.indexes.items()):
            self.indexes[name] = LexicalIndex.load(
                folder, index.analyzer, alive, k1=index.k1, b=index.b, prefix=f"field{i}_",
                positions=False,
            )  # fmt: skip

    def check(self, weights: Mapping[str, float]) -> None:
        unknown = sorted(set(weights) - {TEXT_FIELD, *self.names})
        if unknown:
            raise InvalidInputError(
                f"field_weights names {unknown}, which this store does not index as text; "
                f"its text fields: {[TEXT_FIELD, *self.names]} (declare others with "
                "text_fields= when the store is opened)"
            )

    def search(
        self,
        main: LexicalIndex,
        terms: Sequence[str],
        weights: Mapping[str, float],
        allowed: NDArray[np.bool_],
        visible: NDArray[np.bool_],
        everything: bool,
        stats: LexicalStats | None,
        k: int,
    ) -> LexicalHits:
        """BM25F of ``terms`` over the rows ``allowed``: every matching row and its score,
        and the ``k`` best (as ``LexicalIndex.search`` gives them). Document counts and
        field lengths are those of the rows ``visible`` (the tenant's live records;
        ``everything``: every live record, whose counts the indexes keep); a term's document
        frequency counts the records holding it in any weighted field."""
        self.check(weights)
        n_rows = len(allowed)
        visible = visible[:n_rows]
        n_docs = main.live_count if everything else int(np.count_nonzero(visible))
        if n_docs == 0:
            return LexicalHits.empty(None)
        fields = [
            (self._index(main, name), weight, self._average(main, name, visible, everything, stats))
            for name, weight in weights.items()
            if weight > 0
        ]
        counted = Counter(terms)
        rows: list[NDArray[np.int64]] = []
        parts: list[NDArray[np.float64]] = []
        bounds = [0]  # (term t's postings, all its fields: bounds[t] to bounds[t + 1])
        for term in counted:
            size = bounds[-1]
            for index, weight, average in fields:
                held, freqs = index.term_postings(term)
                if average > 0 and len(held):  # (a field of no length holds no term)
                    keep = held < n_rows
                    held, freqs = held[keep], freqs[keep]
                    norm = 1.0 - index.b + index.b * index.doc_len.view[held] / average
                    rows.append(held)
                    parts.append(weight * freqs / norm)
                    size += len(held)
            bounds.append(size)
        tf, total = self._scratch(n_rows)
        matched, scores, top, top_scores, tied, ceiling = kernels.bm25f(
            np.concatenate(rows) if rows else np.empty(0, np.int64),
            np.concatenate(parts) if parts else np.empty(0),
            np.array(bounds, dtype=np.int64),
            np.array(list(counted.values()), dtype=np.float64),
            n_docs,
            main.k1,
            allowed,
            visible,
            tf,
            total,
            k,
        )
        return LexicalHits(top, top_scores, matched, scores, ceiling, tied)

    def _scratch(self, n_rows: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Zeroed accumulators of at least ``n_rows`` (the kernel zeroes what it touched;
        the shard's lock guards them, as it guards the lexical index's)."""
        if len(self._tf) < n_rows:
            size = max(n_rows, 2 * len(self._tf))
            self._tf, self._total = np.zeros(size), np.zeros(size)
        return self._tf, self._total

    def _index(self, main: LexicalIndex, name: str) -> LexicalIndex:
        return main if name == TEXT_FIELD else self.indexes[name]

    def _average(
        self,
        main: LexicalIndex,
        name: str,
        visible: NDArray[np.bool_],
        everything: bool,
        stats: LexicalStats | None,
    ) -> float:
        """The field's average length over the tenant's records: the main text's from the
        statistics BM25 uses; a named field's kept by its index (every live record), or
        summed over the ``visible`` rows."""
        index = main if name == TEXT_FIELD else self.indexes[name]
        if name == TEXT_FIELD and stats is not None:
            return stats.avg_length
        if name == TEXT_FIELD or everything:
            return index.total_length / index.live_count if index.live_count else 0.0
        count, total = kernels.visible_total(index.doc_len.view, visible)
        return total / count if count else 0.0
