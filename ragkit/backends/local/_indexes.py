"""The derived indexes of a LocalShard: rows, dense vectors, BM25 postings, metadata columns.

Everything here can be rebuilt from the SQLite record log; it is checkpointed to a directory
with the log ``seq`` it covers and brought up to date by replaying what follows (``shard.py``
drives that). Callers hold the shard's lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ragkit._rowids import RowIds, RowScores
from ragkit.analysis import Analyzer
from ragkit.backends.local import _kernels as kernels
from ragkit.backends.local._arrays import GrowableArray
from ragkit.backends.local._columns import MetadataColumns
from ragkit.backends.local._dense import DenseIndex
from ragkit.backends.local._fields import TextFields
from ragkit.backends.local._lexical import LexicalHits, LexicalIndex
from ragkit.backends.local._records import RecordLog, Removed, StoredRow
from ragkit.backends.local._rows import RowTable
from ragkit.errors import StoreError
from ragkit.filters import Filter
from ragkit.fusion import Fused, ranked_by_score
from ragkit.query_syntax import ParsedQuery
from ragkit.schema import Leg, LexicalStats

FORMAT = 2  # 2: term positions in the lexical index
_PARALLEL_ADD_MIN = 256


class Mask:
    """The rows a request may see."""

    __slots__ = ("allowed", "count", "unrestricted")

    def __init__(self, allowed: NDArray[np.bool_], count: int, unrestricted: bool) -> None:
        self.allowed = allowed
        self.count = count
        self.unrestricted = unrestricted  # only "not deleted": the HNSW graph skips those itself


NO_ROWS = kernels.NO_ROWS  # (one empty row list for the shard and its kernels)


def _ties_by_id(
    rows: NDArray[np.int64], scores: NDArray[np.float32], ids: list[str], k: int
) -> NDArray[np.int64]:
    """The first ``k`` positions of ``rows`` (best first by score) with each run of equal
    scores in record-id order: only the runs that reach into the first ``k`` compare ids
    (sorting every row by (score, id) compared a hundred strings per query)."""
    order = np.arange(len(rows))
    starts = np.flatnonzero(np.diff(scores, prepend=np.nan, append=np.nan) != 0)
    for start, end in zip(starts[:-1].tolist(), starts[1:].tolist()):
        if start >= k:
            break
        if end - start > 1:
            run = rows[start:end].tolist()
            order[start:end] = sorted(range(start, end), key=lambda i: ids[run[i - start]])
    return order[:k]


def _missing(rows: NDArray[np.int64], present: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """``rows`` not in ``present``, once each (a mark per row: faster than numpy's set
    routines, which sort, on the hundred-odd candidates of a query)."""
    if not len(rows):
        return NO_ROWS
    seen = np.zeros(n, dtype=bool)
    seen[present] = True
    out = rows[~seen[rows]]
    if len(out) > 1:
        out = np.unique(out)
    return out.astype(np.int64, copy=False)


class DenseHits(NamedTuple):
    """A dense search: the unit query (``None`` when the shard holds no vectors yet) and
    the candidate rows, best first."""

    unit: NDArray[np.float32] | None
    rows: NDArray[np.int64]
    scores: NDArray[np.float32]


class ShardIndexes:
    def __init__(
        self,
        analyzer: Analyzer,
        *,
        dense_args: dict[str, Any] | None,
        bm25: tuple[float, float],
        indexer: ThreadPoolExecutor,
        text_fields: Sequence[str] = (),
    ) -> None:
        self.analyzer = analyzer
        self.dense_args = dense_args
        self.bm25 = bm25
        self.indexer = indexer
        self.rows = RowTable()
        self.dense: DenseIndex | None = None
        self.lexical = LexicalIndex(analyzer, k1=bm25[0], b=bm25[1])
        self.fields = TextFields(text_fields, analyzer, *bm25)
        self.columns = MetadataColumns()
        # Live records and their analyzed length per tenant code: BM25 statistics are per
        # tenant, so one tenant's scores never depend on (or reveal) another tenant's text.
        self.tenant_docs = GrowableArray(np.int64)
        self.tenant_length = GrowableArray(np.float64)
        self.seq = 0  # the log seq these indexes cover
        self._slot = np.zeros(0, dtype=np.int32)

    # ---- applying writes -----------------------------------------------------------------

    def append(self, rows: Sequence[StoredRow]) -> None:
        if not rows:
            return
        first = self.rows.append(
            [r.doc for r in rows], [r.id for r in rows], [r.tenant for r in rows]
        )
        alive = self.rows.alive.view
        dense_done = None
        if self.dense_args is not None:  # a shard without vectors has no dense leg
            vectors = np.vstack([np.frombuffer(r.vector, dtype=np.float32) for r in rows])
            if self.dense is None:
                self.dense = DenseIndex(vectors.shape[1], **self.dense_args)
            unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            # hnswlib releases the GIL while inserting, so the graph grows in a worker thread
            # while this thread tokenizes (ingest is about a third faster on 2 cores).
            if len(rows) >= _PARALLEL_ADD_MIN:
                dense_done = self.indexer.submit(self.dense.add, first, unit, alive)
            else:
                self.dense.add(first, unit, alive)
        metadatas = [json.loads(r.metadata) for r in rows]
        self.columns.add(first, metadatas)
        self.lexical.add(first, [r.text for r in rows])
        self.lexical.maybe_merge(alive)
        if self.fields.names:
            self.fields.add(first, metadatas)
            self.fields.maybe_merge(alive)
        self._count_tenants(np.arange(first, first + len(rows)), 1)
        if dense_done is not None:
            dense_done.result()

    def remove(self, removed: Sequence[Removed]) -> None:
        self._kill([r.doc for r in removed])
        self.lexical.remove([r.text for r in removed])

    def _kill(self, docs: Sequence[int]) -> None:
        if not docs:
            return
        rows = self.rows.rows_of(docs)
        rows = rows[self.rows.alive.view[rows]]
        self._count_tenants(rows, -1)
        self.fields.forget(rows)
        self.rows.kill(rows)
        if self.dense is not None:
            self.dense.remove(rows)

    def _count_tenants(self, rows: NDArray[np.int64], sign: int) -> None:
        n = len(self.rows.tenants)
        self.tenant_docs.pad_to(n, 0)
        self.tenant_length.pad_to(n, 0.0)
        codes = self.rows.tenant_codes.view[rows]
        np.add.at(self.tenant_docs.view, codes, sign)
        np.add.at(self.tenant_length.view, codes, sign * self.lexical.doc_len.view[rows])

    def recount_tenants(self) -> None:
        alive = self.rows.alive.view
        codes = self.rows.tenant_codes.view[alive]
        lengths = self.lexical.doc_len.view[: len(alive)][alive]
        n = len(self.rows.tenants)
        self.tenant_docs = GrowableArray.wrap(np.bincount(codes, minlength=n).astype(np.int64))
        self.tenant_length = GrowableArray.wrap(np.bincount(codes, lengths, minlength=n))

    def replay(self, log: RecordLog, since: int | None = None) -> None:
        """Bring the indexes from their checkpoint (or from log position ``since``, up to
        which they already hold every write) up to the log."""
        start = self.seq if since is None else since
        dead = log.deleted_docs_after(start)
        self._kill(dead)
        for batch in log.rows_after(start):
            self.append(batch)
        if dead:
            self.lexical.recount(self.rows.alive.view)
            self.fields.recount(self.rows.alive.view)
            self.recount_tenants()

    # ---- reads ---------------------------------------------------------------------------

    def mask(
        self, flt: Filter | None, tenant: str | None, required: ParsedQuery | None = None
    ) -> Mask:
        """The rows of ``tenant`` passing ``flt`` and holding the phrases and terms a
        simple-syntax query requires (and none it excludes)."""
        if required is not None and required.constrains:
            base = self.mask(flt, tenant)
            allowed = base.allowed & self._holding(required, len(base.allowed))
            return Mask(allowed, int(allowed.sum()), False)
        visible, everything = self.rows.visible(tenant)
        if flt is None:
            if everything:
                return Mask(visible, self.lexical.live_count, True)
            return Mask(visible, int(visible.sum()), False)
        allowed = visible & self.columns.mask(flt, len(visible))
        return Mask(allowed, int(allowed.sum()), False)

    def _holding(self, query: ParsedQuery, n: int) -> NDArray[np.bool_]:
        out = np.ones(n, dtype=bool)
        for alternatives in query.required:
            either = np.zeros(n, dtype=bool)
            for phrase in alternatives:
                either |= self.lexical.rows_with(phrase, n)
            out &= either
        for phrase in query.excluded:
            out &= ~self.lexical.rows_with(phrase, n)
        return out

    def lexical_stats(self, terms: Sequence[str], tenant: str | None) -> LexicalStats:
        """BM25 statistics of ``tenant``'s live records for ``terms``."""
        code = self.rows.tenants.get(tenant)
        if code is None:
            return LexicalStats(0, 0, {})
        if len(self.rows.tenants) == 1:  # one tenant: its statistics are the shard's
            return self.lexical.stats(terms)
        visible, _ = self.rows.visible(tenant)
        return LexicalStats(
            int(self.tenant_docs.view[code]),
            round(float(self.tenant_length.view[code])),
            self.lexical.doc_freqs(terms, visible),
        )

    def dense_candidates(self, query: NDArray[np.float32], k: int, mask: Mask) -> DenseHits:
        if self.dense is None:
            return DenseHits(None, NO_ROWS, np.empty(0, np.float32))
        unit = query / np.float32(np.sqrt(np.dot(query, query)))
        rows, scores, settled = self.dense.search(
            unit, k, mask.allowed, mask.count, mask.unrestricted
        )
        if settled:
            return DenseHits(unit, rows, scores)
        return DenseHits(unit, *self._ordered(rows, scores, k))

    def lexical_candidates(
        self,
        text: str,
        k: int,
        mask: Mask,
        tenant: str | None,
        stats: LexicalStats | None,
        field_weights: Mapping[str, float] | None = None,
    ) -> tuple[LexicalHits, NDArray[np.int64], NDArray[np.float32]]:
        terms = self.analyzer.tokens(text)
        if stats is not None:
            stats = self._not_behind(stats, terms, tenant)
        elif len(self.rows.tenants) != 1 or tenant not in self.rows.tenants:
            stats = self.lexical_stats(terms, tenant)
        # else: the shard's own statistics are the tenant's, and the search reads them as is
        if field_weights is not None:  # BM25F over the text fields (``_fields``)
            visible, everything = self.rows.visible(tenant)
            hits = self.fields.search(
                self.lexical, terms, field_weights, mask.allowed, visible, everything, stats, k
            )
        else:
            everything = mask.unrestricted and mask.count == len(mask.allowed)  # no dead rows
            hits = self.lexical.search(terms, k, None if everything else mask.allowed, stats)
        if not hits.tied:  # best first already, and nothing to order by id
            return hits, hits.rows, hits.scores
        return (hits, *self._ordered(hits.rows, hits.scores, k))

    def _not_behind(
        self, stats: LexicalStats, terms: Sequence[str], tenant: str | None
    ) -> LexicalStats:
        """Corpus statistics from a router, never behind this shard on a term it holds.

        A router retries a search whose statistics a concurrent write made stale, but under a
        steady stream of writes it answers with the last ones it read; a term written since
        then has no document frequency there and would score nothing. Exact statistics
        always count at least this shard's documents, so this changes nothing when they are
        exact, and keeps a just-written record findable when they are not.
        """
        unseen = [t for t in dict.fromkeys(terms) if not stats.doc_freqs.get(t)]
        if not unseen:
            return stats
        local = self.lexical_stats(unseen, tenant)
        held = {t: df for t, df in local.doc_freqs.items() if df > 0}
        if not held:
            return stats
        return LexicalStats(
            max(stats.doc_count, local.doc_count),
            max(stats.total_length, local.total_length),
            {**stats.doc_freqs, **held},
        )

    def legs(
        self,
        dense: DenseHits | None,
        lexical: tuple[LexicalHits, NDArray[np.int64], NDArray[np.float32]] | None,
        *,
        fill: bool,
        also: NDArray[np.int64] = NO_ROWS,
    ) -> tuple[Leg | None, Leg | None]:
        """The candidates as legs of record ids. With ``fill``, each leg also scores the
        candidates it did not return among the other leg's and the rows in ``also``
        (``Leg.extra``), so fusion can score every candidate on both legs."""
        names = self.rows.ids
        n = len(names)
        dense_rows = NO_ROWS if dense is None else dense.rows
        lexical_rows = NO_ROWS if lexical is None else lexical[1]
        dense_leg = lexical_leg = None
        if dense is not None:
            extra: Mapping[str, float] = {}
            if fill and dense.unit is not None and self.dense is not None:
                only = _missing(np.concatenate([lexical_rows, also]), dense_rows, n)
                extra = RowScores(names, only, self.dense.scores_of(dense.unit, only))
            dense_leg = Leg(RowIds(names, dense_rows), dense.scores, ceiling=1.0, extra=extra)
        if lexical is not None:
            hits, _, scores = lexical
            extra = {}
            if fill:
                only = _missing(np.concatenate([dense_rows, also]), lexical_rows, n)
                extra = RowScores(names, only, hits.scores_of(only))
            lexical_leg = Leg(
                RowIds(names, lexical_rows), scores, ceiling=hits.ceiling, extra=extra
            )
        return dense_leg, lexical_leg

    def ranked(
        self,
        dense: DenseHits,
        lexical: tuple[LexicalHits, NDArray[np.int64], NDArray[np.float32]],
        alpha: float,
        k: int,
    ) -> Fused:
        """The calibrated fusion of both legs, best first: its top ``k`` (and any records tied
        with the k-th) in the order, with the scores, leg scores and leg ranks that
        ``fuse_calibrated`` gives over ``legs(..., fill=True)``.

        Every candidate is a row of this shard, so the union is a mark per row and each
        leg's score of any row is an array read: no ids, no mappings, no full sort.
        """
        assert dense.unit is not None and self.dense is not None
        hits, lexical_rows, _ = lexical
        rows, scores, leg_scores, leg_ranks, tied = kernels.ranked_calibrated(
            dense.rows, dense.scores, lexical_rows, hits.matched, hits.matched_scores,
            np.nan if hits.ceiling is None else hits.ceiling,
            self.dense.matrix.view, dense.unit, alpha, self._slots(), k,
        )  # fmt: skip
        fused = Fused(RowIds(self.rows.ids, rows), scores, leg_scores, leg_ranks)
        return ranked_by_score(fused) if tied else fused

    def _slots(self) -> NDArray[np.int32]:
        """A zeroed mark per row for ``kernels.ranked_calibrated`` (kept between searches;
        the caller holds the shard's lock and the kernel leaves it zeroed)."""
        if len(self._slot) < len(self.rows.ids):
            self._slot = np.zeros(max(len(self.rows.ids), 2 * len(self._slot)), dtype=np.int32)
        return self._slot

    def _ordered(
        self, rows: NDArray[np.int64], scores: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Best first, at most ``k``; equal scores ordered by record id, the order every
        backend and the sharded router agree on."""
        rows, scores, tied = kernels.best_first(rows, scores.astype(np.float32, copy=False), k)
        if tied:
            order = _ties_by_id(rows, scores, self.rows.ids, k)
            rows, scores = rows[order], scores[order]
        return rows, scores

    # ---- checkpoints ---------------------------------------------------------------------

    def save(self, folder: Path, seq: int) -> None:
        alive = self.rows.alive.view
        self.rows.save(folder)
        if self.dense is not None:
            self.dense.save(folder)
        self.lexical.save(folder, alive)
        if self.fields.names:
            self.fields.save(folder, alive)
        manifest = {
            "format": FORMAT,
            "fields": list(self.fields.names),
            "seq": seq,
            "analyzer": self.analyzer.spec(),
            "bm25": list(self.bm25),
            "dim": self.dense.dim if self.dense else None,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest))

    def load(self, folder: Path, log: RecordLog) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            raise StoreError(
                f"checkpoint {folder} is of format {manifest.get('format')}, this version "
                f"reads {FORMAT} (term positions came in 2): the indexes are rebuilt once"
            )
        if manifest["seq"] > log.seq:
            raise StoreError(f"checkpoint {folder} does not match the record log")
        if manifest["analyzer"] != self.analyzer.spec() or manifest["bm25"] != list(self.bm25):
            raise StoreError("analyzer or BM25 parameters changed since the checkpoint")
        if manifest.get("fields", []) != list(self.fields.names):
            raise StoreError(
                f"text fields changed since the checkpoint ({manifest.get('fields', [])} -> "
                f"{list(self.fields.names)})"
            )
        self.rows = RowTable.load(folder)
        if manifest["dim"] is not None and self.dense_args is not None:
            self.dense = DenseIndex(manifest["dim"], **self.dense_args)
            self.dense.load(folder)
        k1, b = self.bm25
        self.lexical = LexicalIndex.load(folder, self.analyzer, self.rows.alive.view, k1=k1, b=b)
        if self.fields.names:
            self.fields.load(folder, self.rows.alive.view)
        self.columns = MetadataColumns()
        docs = self.rows.docs.view
        for batch in log.rows_after(0):
            covered = [r for r in batch if r.doc <= manifest["seq"]]
            rows = np.searchsorted(docs, [r.doc for r in covered])
            self.columns.add_rows(rows.tolist(), [json.loads(r.metadata) for r in covered])
        self.recount_tenants()
        self.seq = manifest["seq"]
