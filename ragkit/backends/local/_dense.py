"""The vector leg of a LocalShard: exact numpy scan for small sets, hnswlib HNSW beyond.

Vectors are unit-normalized on the way in, so inner product is cosine similarity. The HNSW
graph is built only once the shard outgrows ``exact_threshold`` live rows (an exact scan of a
few thousand rows is as fast as HNSW and exact), and a filtered query scans exactly when the
filter leaves few candidate rows (HNSW would visit many rejected nodes to find k matches).

Until the graph exists, the shard also keeps the vectors as int8 codes (``kernels.quantize``,
a quarter more memory) and an exact scan of every row reads those, rescoring its candidates
from the float32 rows: the same rows and scores as the BLAS product, from a quarter of the
bytes. Measured on SciFact (``bench/bench_speed.py``), the product's 8 MB fell out of the
CPU's caches whenever other work ran between two queries, and the scan then waited on memory.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import hnswlib
import numpy as np
from numpy.typing import NDArray

from ragkit.backends.local import _kernels as kernels
from ragkit.backends.local._arrays import GrowableArray

#: More than BLAS's rounding error on a dot product of two unit 384-d (or 4096-d) vectors,
#: float32: at most d * 2**-24 (2.4e-5 for d=384); real errors are near 1e-7.
_BLAS_SLACK = 1e-3


class DenseIndex:
    """Exact + HNSW search over rows numbered by the shard (HNSW labels are row numbers)."""

    def __init__(
        self,
        dim: int,
        *,
        exact_threshold: int = 10_000,
        hnsw_m: int = 16,
        ef_construction: int = 64,
        ef_search: int = 128,
        num_threads: int = 2,
    ) -> None:
        self.dim = dim
        self.exact_threshold = exact_threshold
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.num_threads = num_threads
        self.matrix = GrowableArray(np.float32, width=dim)
        # The matrix as int8 codes and a step per row, kept while there is no HNSW graph.
        self.codes: GrowableArray | None = GrowableArray(np.int8, width=dim)
        self.steps: GrowableArray | None = GrowableArray(np.float32)
        self.hnsw: hnswlib.Index | None = None

    def __len__(self) -> int:
        return len(self.matrix)

    # ---- writes -------------------------------------------------------------------------

    def add(self, first_row: int, vectors: NDArray[np.float32], alive: NDArray[np.bool_]) -> None:
        """Append normalized ``vectors`` as rows ``first_row, ...``."""
        if first_row != len(self.matrix):
            self.matrix.pad_to(first_row, 0.0)
        self.matrix.extend(vectors)
        if self.codes is not None and self.steps is not None:
            codes, steps = kernels.quantize(vectors)
            self.codes.pad_to(first_row, 0)
            self.codes.extend(codes)
            self.steps.pad_to(first_row, 0.0)
            self.steps.extend(steps)
        if self.hnsw is not None:
            self._hnsw_add(np.arange(first_row, first_row + len(vectors)), vectors)
        elif int(alive.sum()) > self.exact_threshold:
            self._build_hnsw(alive)

    def remove(self, rows: NDArray[np.int64]) -> None:
        if self.hnsw is None:
            return
        for row in rows.tolist():
            with contextlib.suppress(RuntimeError):  # not in the graph: already deleted
                self.hnsw.mark_deleted(row)

    def _build_hnsw(self, alive: NDArray[np.bool_]) -> None:
        index = hnswlib.Index(space="ip", dim=self.dim)
        index.init_index(
            max_elements=max(2 * len(alive), 1024),
            ef_construction=self.ef_construction,
            M=self.hnsw_m,
        )
        self.hnsw = index
        self.codes = self.steps = None  # scans are of filtered subsets from now on
        rows = np.flatnonzero(alive)
        self._hnsw_add(rows, self.matrix.view[rows])

    def _hnsw_add(self, rows: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        assert self.hnsw is not None
        needed = int(rows.max()) + 1 if len(rows) else 0
        if needed > self.hnsw.get_max_elements():
            self.hnsw.resize_index(max(needed, 2 * self.hnsw.get_max_elements()))
        self.hnsw.add_items(vectors, rows, num_threads=self.num_threads)

    # ---- reads --------------------------------------------------------------------------

    def search(
        self,
        query: NDArray[np.float32],
        k: int,
        mask: NDArray[np.bool_],
        n_allowed: int,
        unrestricted: bool,
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], bool]:
        """The ``k`` best rows by cosine among rows where ``mask`` is true (plus rows tied
        with the k-th), and whether they are settled: best first with no two scores equal
        (else the shard orders them by score, then id).

        ``n_allowed`` is ``mask.sum()``; ``unrestricted`` says the mask only excludes deleted
        rows (which the HNSW graph already skips).
        """
        k = min(k, n_allowed)
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), True
        if self.hnsw is not None and n_allowed > self.exact_threshold:
            found = self._search_hnsw(query, k, None if unrestricted else mask)
            if found is not None:
                return (*found, False)
        rows, scores, tied = self._search_exact(query, k, mask, n_allowed)
        return rows, scores, not tied

    def scores_of(self, unit: NDArray[np.float32], rows: NDArray[np.int64]) -> NDArray[np.float32]:
        """Cosine similarity of any rows (bit-identical to their scores in an exact scan)."""
        return kernels.dot_rows(self.matrix.view, rows, unit)

    def _search_exact(
        self, query: NDArray[np.float32], k: int, mask: NDArray[np.bool_], n_allowed: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], bool]:
        matrix = self.matrix.view
        if n_allowed * 2 >= len(mask):  # scanning everything beats gathering most rows
            allowed = mask[: len(matrix)]
            excluded = None if n_allowed == len(matrix) else ~allowed
            if self.codes is not None and self.steps is not None:
                codes, steps = self.codes.view, self.steps.view
                return kernels.coded_top(codes, steps, matrix, query, k, excluded, _BLAS_SLACK)
            return kernels.exact_top(matrix, query, k, excluded, _BLAS_SLACK)
        rows = np.flatnonzero(mask)
        found, scores, tied = kernels.exact_top(matrix[rows], query, k, None, _BLAS_SLACK)
        return rows[found].astype(np.int64), scores, tied

    def _search_hnsw(
        self, query: NDArray[np.float32], k: int, mask: NDArray[np.bool_] | None
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]] | None:
        assert self.hnsw is not None
        self.hnsw.set_ef(max(self.ef_search, 2 * k))
        try:
            if mask is None:
                labels, distances = self.hnsw.knn_query(query, k=k, num_threads=1)
            else:
                # bytes indexing is the cheapest per-node callback (measured: 1.6 ms versus
                # 2.4 ms for numpy indexing at 10% selectivity on 100k rows).
                allowed = mask.tobytes()
                labels, distances = self.hnsw.knn_query(
                    query, k=k, num_threads=1, filter=allowed.__getitem__
                )
        except RuntimeError:  # fewer than k reachable matches: fall back to the exact scan
            return None
        # hnswlib's "ip" distance is 1 - inner product.
        return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)

    # ---- persistence --------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        np.save(folder / "dense_matrix.npy", self.matrix.view, allow_pickle=False)
        if self.hnsw is not None:
            self.hnsw.save_index(str(folder / "dense.hnsw"))
        info = {"dim": self.dim, "hnsw": self.hnsw is not None}
        (folder / "dense.json").write_text(json.dumps(info))

    def load(self, folder: Path) -> None:
        info = json.loads((folder / "dense.json").read_text())
        matrix = np.load(folder / "dense_matrix.npy", allow_pickle=False)
        self.matrix = GrowableArray.wrap(matrix.astype(np.float32, copy=False))
        self.codes = self.steps = None
        if not info["hnsw"]:
            codes, steps = kernels.quantize(self.matrix.view)
            self.codes, self.steps = GrowableArray.wrap(codes), GrowableArray.wrap(steps)
        if info["hnsw"]:
            index = hnswlib.Index(space="ip", dim=self.dim)
            index.load_index(str(folder / "dense.hnsw"), max_elements=max(2 * len(matrix), 1024))
            self.hnsw = index
