"""The BM25 leg of a LocalShard: a segmented inverted index in numpy.

Why not tantivy: a sharded store must score every shard with the same global statistics
(document frequencies, document count, average length) and apply a metadata pre-filter that
lives outside the text index. Tantivy's Python bindings expose neither, while scoring from our
own postings with query-time IDF gives both, and IDF computed at query time means adds and
deletes never force a rebuild.

Layout: each write batch becomes an immutable segment in CSR form (term ids ascending, then
rows ascending). Segments merge logarithmically (like Lucene's tiered merging), so a query
touches O(log n) segments; dead rows are dropped when segments merge.

Positions: each posting's positions (the term's places among the row's indexed terms, stop
words not counted) follow the postings in one flat array, ``tf`` of them per posting, so a
phrase is checked exactly (``rows_with``). A plain BM25 search never reads them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ragkit.analysis import Analyzer
from ragkit.backends.local import _kernels as kernels
from ragkit.backends.local._arrays import GrowableArray
from ragkit.schema import LexicalStats

_MEMO_LIMIT = 2_000_000
_NO_POSITIONS = np.empty(0, np.int32)


@dataclass(slots=True)
class _Segment:
    term_ids: NDArray[np.int64]  # unique, ascending
    offsets: NDArray[np.int64]  # len(term_ids) + 1
    rows: NDArray[np.int32]
    tfs: NDArray[np.float32]
    positions: NDArray[np.int32]  # tf per posting, in posting order, ascending per posting
    # Each posting's BM25 factor tf (k1 + 1) / (tf + norm(row)) for one average length, kept
    # term by term as searches first need them: a search computes the factors of its own
    # terms' postings anyway, so keeping them costs one scatter, and no search ever pays
    # for the whole segment (at 1M records, computing every posting's factor at once was a
    # 1.8 s stall in one search). A write that changes the average length forgets them.
    _avg: float | None = None
    _factors: NDArray[np.float64] | None = None  # per posting, valid where _ready
    _ready: NDArray[np.bool_] | None = None  # per term position

    _starts: NDArray[np.int64] | None = None  # where each posting's positions start

    @property
    def size(self) -> int:
        return len(self.rows)

    def position_starts(self) -> NDArray[np.int64]:
        if self._starts is None:
            counts = self.tfs.astype(np.int64)
            self._starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        return self._starts

    def span(self, tid: int) -> tuple[int, int]:
        """Where term ``tid``'s postings are (``lo == hi``: the segment lacks it)."""
        at = int(np.searchsorted(self.term_ids, tid))
        if at == len(self.term_ids) or self.term_ids[at] != tid:
            return 0, 0
        return int(self.offsets[at]), int(self.offsets[at + 1])

    def postings(self, tid: int) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """The rows holding term ``tid`` and, for each occurrence, ``row << 32 | position``
        (ascending: rows ascending, positions ascending within a row)."""
        lo, hi = self.span(tid)
        if lo == hi:
            return np.empty(0, np.int32), np.empty(0, np.int64)
        rows, tfs = self.rows[lo:hi], self.tfs[lo:hi].astype(np.int64)
        first = int(self.position_starts()[lo]) if hi > lo else 0
        places = self.positions[first : first + int(tfs.sum())].astype(np.int64)
        return rows, (np.repeat(rows.astype(np.int64), tfs) << 32) | places

    def expanded_terms(self) -> NDArray[np.int64]:
        return np.repeat(self.term_ids, np.diff(self.offsets))

    def factor_cache(self, avg_len: float) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Each posting's kept BM25 factor for ``avg_len`` and, per term position, whether
        its postings' factors are computed (``kernels.bm25_segment`` fills them in)."""
        if self._avg != avg_len or self._ready is None or self._factors is None:
            self._avg = avg_len
            self._ready = np.zeros(len(self.term_ids), dtype=bool)
            if self._factors is None:
                self._factors = np.empty(len(self.rows))  # pages are touched as filled
        return self._factors, self._ready


def _segment_from_pairs(
    terms: NDArray[np.int64],
    rows: NDArray[np.int32],
    tfs: NDArray[np.float32],
    positions: NDArray[np.int32],
) -> _Segment:
    """Build a segment from postings already sorted by (term, row), with their positions."""
    term_ids, starts = np.unique(terms, return_index=True)
    offsets = np.append(starts, len(terms)).astype(np.int64)
    return _Segment(term_ids.astype(np.int64), offsets, rows, tfs, positions)


def _gather(
    positions: NDArray[np.int32], starts: NDArray[np.int64], counts: NDArray[np.int64]
) -> NDArray[np.int32]:
    """The positions of the postings that start at ``starts`` (``counts`` each), in order."""
    if not len(counts):
        return np.empty(0, np.int32)
    ends = np.cumsum(counts)
    shift = np.repeat(starts - (ends - counts), counts)
    out: NDArray[np.int32] = positions[np.arange(int(ends[-1]), dtype=np.int64) + shift]
    return out


def _merge(segments: Sequence[_Segment], alive: NDArray[np.bool_]) -> _Segment:
    terms = np.concatenate([s.expanded_terms() for s in segments])
    rows = np.concatenate([s.rows for s in segments])
    tfs = np.concatenate([s.tfs for s in segments])
    keep = alive[rows]
    terms, rows, tfs = terms[keep], rows[keep], tfs[keep]
    # Segments are in row order, so a stable sort by term keeps rows ascending per term.
    order = np.argsort(terms, kind="stable")
    kept = _NO_POSITIONS
    if any(len(s.positions) for s in segments):
        positions = np.concatenate([s.positions for s in segments])
        sizes = np.cumsum([0] + [len(s.positions) for s in segments[:-1]])
        starts = np.concatenate([s.position_starts() + at for s, at in zip(segments, sizes)])
        kept = _gather(positions, starts[keep][order], tfs[order].astype(np.int64))
    return _segment_from_pairs(terms[order], rows[order], tfs[order], kept)


@dataclass(frozen=True, slots=True)
class LexicalHits:
    """A BM25 search: the top rows best first, every matching row's score (``matched``
    ascending), the query's ceiling: the score a record would get with every query term
    repeated without bound, the most any record can score (``None`` when there are no
    records), and whether two top rows score the same (then only their ids order them)."""

    rows: NDArray[np.int64]
    scores: NDArray[np.float32]
    matched: NDArray[np.int64]
    matched_scores: NDArray[np.float64]
    ceiling: float | None
    tied: bool = False

    @staticmethod
    def empty(ceiling: float | None) -> LexicalHits:
        none = np.empty(0, dtype=np.int64)
        return LexicalHits(none, np.empty(0, np.float32), none, np.empty(0), ceiling)

    def scores_of(self, rows: NDArray[np.int64]) -> NDArray[np.float32]:
        """BM25 of any rows (0 for rows matching no query term)."""
        return kernels.lookup(self.matched, self.matched_scores, rows)


class LexicalIndex:
    """BM25 (Lucene's IDF and length normalization) over rows numbered by the shard."""

    def __init__(
        self, analyzer: Analyzer, *, k1: float = 1.2, b: float = 0.75, positions: bool = True
    ) -> None:
        self.analyzer = analyzer
        self.k1 = k1
        self.b = b
        #: keep term positions (phrases); without them, segments hold none
        self.positions = positions
        self.vocab: dict[str, int] = {}
        self.doc_freq = GrowableArray(np.int64)  # live records per term id
        self.doc_len = GrowableArray(np.float32)  # analyzed length per row
        self.live_count = 0
        self.total_length = 0
        self.segments: list[_Segment] = []
        self._raw_to_tid: dict[str, int] = {}
        self._acc = np.zeros(0)
        self._touched = np.empty(0, dtype=np.int64)

    # ---- writes -------------------------------------------------------------------------

    def _term_ids(self, text: str) -> list[int]:
        """Term ids of ``text`` (-1 for stop words), creating ids for new terms.

        Memoized per surface token: one dict lookup per token instead of analyzing each
        token again (ingest spends most of its Python time here).
        """
        raws = self.analyzer.raw_tokens(text)
        memo = self._raw_to_tid
        found: list[int | None] = list(map(memo.get, raws))
        if None not in found:
            return found  # type: ignore[return-value]  # no None left
        ids: list[int] = []
        for raw, tid in zip(raws, found):
            if tid is None:
                term = self.analyzer.term(raw)
                tid = -1 if term is None else self.vocab.setdefault(term, len(self.vocab))
                if len(memo) < _MEMO_LIMIT:
                    memo[raw] = tid
            ids.append(tid)
        return ids

    def add(self, first_row: int, texts: Sequence[str]) -> None:
        """Index ``texts`` as rows ``first_row, first_row + 1, ...`` (rows are appended)."""
        term_list: list[int] = []
        raw_lengths = np.empty(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = self._term_ids(text)
            raw_lengths[i] = len(ids)
            term_list.extend(ids)
        terms_all = np.asarray(term_list, dtype=np.int64)
        rows_all = np.repeat(
            np.arange(first_row, first_row + len(texts), dtype=np.int64), raw_lengths
        )
        indexed = terms_all >= 0
        terms_all, rows_all = terms_all[indexed], rows_all[indexed]
        lengths = np.bincount(rows_all - first_row, minlength=len(texts)).astype(np.float32)
        # Each indexed token's place among its row's indexed tokens.
        row_starts = np.concatenate(([0], np.cumsum(lengths.astype(np.int64))[:-1]))
        places = np.arange(len(terms_all), dtype=np.int64) - row_starts[rows_all - first_row]
        self.doc_len.pad_to(first_row, 0.0)
        self.doc_len.extend(lengths)
        self.live_count += len(texts)
        self.total_length += int(lengths.sum())
        self.doc_freq.pad_to(len(self.vocab), 0)
        if not len(terms_all):
            return
        keys = (terms_all << 32) | rows_all
        order = np.argsort(keys, kind="stable")  # (stable: positions ascending per posting)
        keys = keys[order]
        firsts = np.flatnonzero(np.diff(keys, prepend=-1))
        counts = np.diff(np.append(firsts, len(keys)))
        unique_keys = keys[firsts]
        terms = unique_keys >> 32
        rows = (unique_keys & 0xFFFFFFFF).astype(np.int32)
        self.doc_freq.view[:] += np.bincount(terms, minlength=len(self.vocab))
        kept = places[order].astype(np.int32) if self.positions else _NO_POSITIONS
        self.segments.append(_segment_from_pairs(terms, rows, counts.astype(np.float32), kept))

    def remove(self, texts: Sequence[str]) -> None:
        """Account for deleted rows (their postings stay until a merge drops them)."""
        vocab = self.vocab
        df = self.doc_freq.view
        for text in texts:
            tokens = self.analyzer.tokens(text)
            self.total_length -= len(tokens)
            for term in set(tokens):
                df[vocab[term]] -= 1
        self.live_count -= len(texts)

    def recount(self, alive: NDArray[np.bool_]) -> None:
        """Recompute the live statistics from the postings (after replaying deletions)."""
        self.doc_freq.pad_to(len(self.vocab), 0)
        df = np.zeros(len(self.vocab), dtype=np.int64)
        for seg in self.segments:
            live = alive[seg.rows]
            df += np.bincount(seg.expanded_terms()[live], minlength=len(self.vocab))
        self.doc_freq.view[:] = df
        lengths = self.doc_len.view[: len(alive)]
        self.live_count = int(alive[: len(lengths)].sum())
        self.total_length = int(lengths[alive[: len(lengths)]].sum())

    def maybe_merge(self, alive: NDArray[np.bool_], factor: int = 4) -> None:
        """Merge the newest segments while the newer one is at least 1/factor of the older."""
        segs = self.segments
        while len(segs) > 1 and segs[-1].size * factor >= segs[-2].size:
            merged = _merge(segs[-2:], alive)
            segs[-2:] = [merged]

    def merge_all(self, alive: NDArray[np.bool_]) -> None:
        if len(self.segments) > 1 or (self.segments and not alive[self.segments[0].rows].all()):
            self.segments = [_merge(self.segments, alive)]

    # ---- reads --------------------------------------------------------------------------

    def doc_freqs(self, terms: Sequence[str], scope: NDArray[np.bool_]) -> dict[str, int]:
        """Document frequencies of ``terms`` among the rows in ``scope`` (live rows only)."""
        freqs: dict[str, int] = {}
        for term in set(terms):
            tid = self.vocab.get(term)
            if tid is None:
                continue
            count = 0
            for seg in self.segments:
                lo, hi = seg.span(tid)
                count += int(scope[seg.rows[lo:hi]].sum())
            if count:
                freqs[term] = count
        return freqs

    def term_postings(self, term: str) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Every row holding ``term`` (dead ones too) and its frequency there."""
        tid = self.vocab.get(term)
        rows: list[NDArray[np.int32]] = []
        tfs: list[NDArray[np.float32]] = []
        if tid is not None:
            for seg in self.segments:
                lo, hi = seg.span(tid)
                rows.append(seg.rows[lo:hi])
                tfs.append(seg.tfs[lo:hi])
        if not rows:
            return np.empty(0, np.int64), np.empty(0)
        return np.concatenate(rows).astype(np.int64), np.concatenate(tfs).astype(np.float64)

    def rows_with(self, phrase: Sequence[str], n_rows: int) -> NDArray[np.bool_]:
        """A mark per row (``n_rows`` of them) for the rows holding ``phrase``: its analyzed
        terms at consecutive positions (one term: the rows holding it). Dead rows may be
        marked; the caller masks them."""
        out = np.zeros(n_rows, dtype=bool)
        tids = [self.vocab.get(term, -1) for term in phrase]
        if -1 in tids:
            return out
        for seg in self.segments:
            if len(tids) == 1:
                rows, _ = seg.postings(tids[0])
                out[rows] = True
                continue
            _, starts = seg.postings(tids[0])
            for offset, tid in enumerate(tids[1:], start=1):
                if not len(starts):
                    break
                _, places = seg.postings(tid)
                # (sorted both: a binary search per candidate start)
                at = np.searchsorted(places, starts + offset)
                hit = at < len(places)
                hit[hit] = places[at[hit]] == starts[hit] + offset
                starts = starts[hit]
            out[(starts >> 32).astype(np.int64)] = True
        return out

    def stats(self, terms: Sequence[str]) -> LexicalStats:
        df = self.doc_freq.view
        freqs = {t: int(df[self.vocab[t]]) for t in set(terms) if t in self.vocab}
        return LexicalStats(self.live_count, self.total_length, freqs)

    def search(
        self,
        terms: Sequence[str],
        k: int,
        mask: NDArray[np.bool_] | None,
        stats: LexicalStats | None = None,
    ) -> LexicalHits:
        """The ``k`` best rows by BM25 among rows where ``mask`` is true (``None``: every row
        is live and allowed) plus ties with the k-th, best first (the shard orders equal
        scores by id), every matching row's score, and the query's BM25 ceiling."""
        if stats is None:
            n_docs, avg_len = (
                self.live_count,
                (self.total_length / self.live_count if self.live_count else 0.0),
            )
        else:
            n_docs, avg_len = stats.doc_count, stats.avg_length
        get = self.vocab.get
        tids = np.fromiter([get(t, -1) for t in terms], np.int64, len(terms))
        given = (
            kernels.NO_ROWS
            if stats is None
            else np.fromiter([stats.doc_freqs.get(t, 0) for t in terms], np.int64, len(terms))
        )
        query_tids, query_w, ceiling = kernels.query_terms(
            tids, given, self.doc_freq.view, n_docs, self.k1
        )
        if not len(query_tids) or avg_len <= 0:
            return LexicalHits.empty(ceiling if n_docs > 0 else None)
        doc_len = self.doc_len.view
        n_rows = len(doc_len) if mask is None else len(mask)
        acc, touched = self._scratch(n_rows)
        n_touched = 0
        for seg in self.segments:
            factors, ready = seg.factor_cache(avg_len)
            n_touched = kernels.bm25_segment(
                seg.term_ids, seg.offsets, seg.rows, seg.tfs, factors, ready,
                query_tids, query_w, avg_len, self.k1, self.b, doc_len,
                kernels.NO_MASK if mask is None else mask, acc, touched, n_touched,
            )  # fmt: skip
        if not n_touched:
            return LexicalHits.empty(ceiling if n_docs > 0 else None)
        hits, scores, top, top_scores, tied = kernels.matched_top(
            acc, touched, n_touched, k, ceiling
        )
        return LexicalHits(top, top_scores, hits, scores, ceiling, tied)

    def _scratch(self, n_rows: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """A zeroed accumulator and a touched-row list for ``n_rows`` rows, kept between
        searches (callers hold the shard's lock; ``matched_top`` zeroes what it used)."""
        n_rows = max(n_rows, len(self.doc_len))
        if len(self._acc) < n_rows:
            size = max(n_rows, 2 * len(self._acc))
            self._acc = np.zeros(size)
            self._touched = np.empty(size + 1, dtype=np.int64)  # + 1: see bm25_segment
        return self._acc, self._touched

    # ---- persistence (numpy arrays + JSON; never pickle) --------------------------------

    def save(self, folder: Path, alive: NDArray[np.bool_], prefix: str = "lexical_") -> None:
        self.merge_all(alive)
        seg = (
            self.segments[0]
            if self.segments
            else _segment_from_pairs(
                np.empty(0, np.int64),
                np.empty(0, np.int32),
                np.empty(0, np.float32),
                np.empty(0, np.int32),
            )
        )
        for name, array in (
            ("term_ids", seg.term_ids),
            ("offsets", seg.offsets),
            ("rows", seg.rows),
            ("tfs", seg.tfs),
            ("positions", seg.positions),
            ("doc_len", self.doc_len.view),
        ):
            if name != "positions" or self.positions:
                np.save(folder / f"{prefix}{name}.npy", array, allow_pickle=False)
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        (folder / f"{prefix}vocab.json").write_text(json.dumps(terms, ensure_ascii=False))

    @classmethod
    def load(
        cls,
        folder: Path,
        analyzer: Analyzer,
        alive: NDArray[np.bool_],
        *,
        k1: float,
        b: float,
        prefix: str = "lexical_",
        positions: bool = True,
    ) -> LexicalIndex:
        index = cls(analyzer, k1=k1, b=b, positions=positions)
        names = ("term_ids", "offsets", "rows", "tfs", "doc_len") + (
            ("positions",) if positions else ()
        )
        arrays = {
            name: np.load(folder / f"{prefix}{name}.npy", allow_pickle=False) for name in names
        }
        arrays.setdefault("positions", _NO_POSITIONS)
        terms = json.loads((folder / f"{prefix}vocab.json").read_text())
        index.vocab = {term: i for i, term in enumerate(terms)}
        index.doc_len = GrowableArray.wrap(arrays["doc_len"])
        if len(arrays["rows"]):
            index.segments = [
                _Segment(
                    arrays["term_ids"],
                    arrays["offsets"],
                    arrays["rows"],
                    arrays["tfs"],
                    arrays["positions"],
                )
            ]
        index.recount(alive)
        return index
