"""The records behind a router's answer: those the hosts packed, and the rare rest by id."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from ragkit.backends.sharded.host import PackedRecord
from ragkit.schema import Record, RecordSource

Fallback = Callable[[list[str], bool], list[Record]]


class PackedRecords(RecordSource):
    """Records as hosts sent them (plain tuples, parsed only for the hits kept); a hit whose
    record no host sent (it ranked deep in both legs) is read by id through ``fallback``."""

    def __init__(self, packed: Sequence[PackedRecord], tenant: str | None, fallback: Fallback):
        self._packed = {row[0]: row for row in packed}
        self._tenant = tenant
        self._fallback = fallback

    def fetch(self, ids: Sequence[str], *, vectors: bool = False) -> dict[str, Record]:
        out: dict[str, Record] = {}
        missing = []
        for rid in ids:
            row = self._packed.get(rid)
            if row is None or (vectors and row[3] is None):
                missing.append(rid)
                continue
            vector = np.frombuffer(row[3], dtype=np.float32).copy() if vectors and row[3] else None
            out[rid] = Record(row[0], row[1], json.loads(row[2]), vector, self._tenant)
        if missing:
            out.update({r.id: r for r in self._fallback(missing, vectors)})
        return out
