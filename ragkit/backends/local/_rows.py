"""Row bookkeeping of a LocalShard: row -> doc number, record id, tenant, liveness.

Rows are append-only and numbered in doc (sequence) order, so the row of a doc number is a
binary search; every derived index of the shard (dense matrix, HNSW labels, postings,
metadata columns) is addressed by row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ragkit.backends.local._arrays import GrowableArray


class RowTable:
    def __init__(self) -> None:
        self.docs = GrowableArray(np.int64)
        self.ids: list[str] = []
        self.alive = GrowableArray(np.bool_, fill=False)
        self.tenant_codes = GrowableArray(np.int32)
        self.tenants: dict[str | None, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, docs: Sequence[int], ids: Sequence[str], tenants: Sequence[str | None]) -> int:
        """Add live rows; returns the first new row number."""
        first = len(self.ids)
        self.docs.extend(docs)
        self.ids.extend(ids)
        self.alive.extend(np.ones(len(docs), dtype=bool))
        codes = [self.tenants.setdefault(t, len(self.tenants)) for t in tenants]
        self.tenant_codes.extend(codes)
        return first

    def rows_of(self, docs: Sequence[int]) -> NDArray[np.int64]:
        """Rows holding these doc numbers (docs without a row are skipped)."""
        known = self.docs.view
        wanted = np.asarray(docs, dtype=np.int64)
        rows = np.searchsorted(known, wanted)
        inside = rows < len(known)
        rows, wanted = rows[inside], wanted[inside]
        return np.asarray(rows[known[rows] == wanted], dtype=np.int64)

    def kill(self, rows: NDArray[np.int64]) -> None:
        self.alive.view[rows] = False

    def visible(self, tenant: str | None) -> tuple[NDArray[np.bool_], bool]:
        """Live rows of ``tenant``, and whether that is simply every live row.

        The mask returned for the every-live-row case is shared: callers must not modify it.
        """
        alive = self.alive.view
        code = self.tenants.get(tenant)
        if code is None:
            return np.zeros(len(alive), dtype=bool), False
        if len(self.tenants) == 1:
            return alive, True
        return alive & (self.tenant_codes.view == code), False

    def save(self, folder: Path) -> None:
        np.save(folder / "rows_docs.npy", self.docs.view, allow_pickle=False)
        np.save(folder / "rows_alive.npy", self.alive.view, allow_pickle=False)
        np.save(folder / "rows_tenant.npy", self.tenant_codes.view, allow_pickle=False)
        (folder / "rows_ids.json").write_text(json.dumps(self.ids, ensure_ascii=False))
        tenants = sorted(self.tenants, key=self.tenants.__getitem__)
        (folder / "tenants.json").write_text(json.dumps(tenants, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path) -> RowTable:
        table = cls()
        table.docs = GrowableArray.wrap(np.load(folder / "rows_docs.npy", allow_pickle=False))
        table.alive = GrowableArray.wrap(np.load(folder / "rows_alive.npy", allow_pickle=False))
        table.tenant_codes = GrowableArray.wrap(
            np.load(folder / "rows_tenant.npy", allow_pickle=False)
        )
        table.ids = json.loads((folder / "rows_ids.json").read_text())
        tenants = json.loads((folder / "tenants.json").read_text())
        table.tenants = {t: i for i, t in enumerate(tenants)}
        return table
