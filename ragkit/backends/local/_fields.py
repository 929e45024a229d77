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

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit.analysis import Analyzer
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

    def add(self, first_row: int, metadatas: Sequence[Mapping[str, Any]]) -> None:
        for name, index in self.indexes.items():
            index.add(first_row, [field_text(m.get(name)) for m in metadatas])

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
        stats: LexicalStats | None,
    ) -> LexicalHits:
        """BM25F of ``terms`` over the rows ``allowed``: every matching row and its score,
        unordered (the shard orders them), with the query's ceiling. Document counts and
        field lengths are those of the rows ``visible`` (the tenant's live records); a
        term's document frequency counts the records holding it in any weighted field."""
        self.check(weights)
        k1 = main.k1
        n_rows = len(allowed)
        n_docs = int(visible.sum())
        if n_docs == 0:
            return LexicalHits.empty(None)
        fields = [
            (self._index(main, name), weight, self._average(main, name, visible, stats))
            for name, weight in weights.items()
            if weight > 0
        ]
        total = np.zeros(n_rows)
        ceiling = 0.0
        for term, repeats in Counter(terms).items():
            postings = []
            for index, weight, average in fields:
                rows, freqs = index.term_postings(term)
                keep = rows < n_rows
                rows, freqs = rows[keep], freqs[keep]
                keep = visible[rows]
                postings.append((index, weight, average, rows[keep], freqs[keep]))
            df = len(np.unique(np.concatenate([p[3] for p in postings]))) if postings else 0
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            ceiling += repeats * idf * (k1 + 1.0)  # tf' -> infinity: the most a term adds
            if not df:
                continue
            tf = np.zeros(n_rows)
            for index, weight, average, rows, freqs in postings:
                if average > 0 and len(rows):
                    norm = 1.0 - index.b + index.b * index.doc_len.view[rows] / average
                    np.add.at(tf, rows, weight * freqs / norm)
            tf[~allowed] = 0.0
            total += repeats * idf * tf * (k1 + 1.0) / (tf + k1)
        matched = np.flatnonzero(total > 0).astype(np.int64)
        scores = total[matched]
        return LexicalHits(matched, scores.astype(np.float32), matched, scores, ceiling, tied=True)

    def _index(self, main: LexicalIndex, name: str) -> LexicalIndex:
        return main if name == TEXT_FIELD else self.indexes[name]

    def _average(
        self,
        main: LexicalIndex,
        name: str,
        visible: NDArray[np.bool_],
        stats: LexicalStats | None,
    ) -> float:
        """The field's average length over the tenant's records: the main text's from the
        statistics BM25 uses; a named field's over the ``visible`` rows."""
        if name == TEXT_FIELD:
            if stats is not None:
                return stats.avg_length
            return main.total_length / main.live_count if main.live_count else 0.0
        lengths = self.indexes[name].doc_len.view[: len(visible)]
        count = int(visible.sum())
        return float(lengths[visible[: len(lengths)]].sum()) / count if count else 0.0
