"""ChromaShard: a Chroma collection as a ragkit shard (needs the chroma extra).

Vectors, documents and metadata live in Chroma (embedded ``PersistentClient`` or a
``chroma run`` server through ``HttpClient``); ids are Chroma ids. Local Chroma has no BM25, so
ragkit keeps a sidecar index beside the collection (a LocalShard: BM25, metadata columns for
filters the ``where`` language cannot express, counts), fed by the same writes. A write counter
kept in a small settings collection tells whether the sidecar is behind; if it is (or missing),
it is rebuilt from the collection on open, so the lexical leg is never silently stale.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ragkit._validation import (
    check_dense_request,
    check_records,
)
from ragkit.backends._remote import call_with_retries
from ragkit.backends.base import Shard
from ragkit.backends.local import LocalShard
from ragkit.errors import MissingDependencyError
from ragkit.filters import And, Compare, Filter, Op, Or
from ragkit.schema import Candidate, LexicalStats, Record

META_KEY = "_ragkit_meta"
TENANT_KEY = "_ragkit_tenant"
_PUSHDOWN_OPS = {
    Op.EQ: "$eq",
    Op.GT: "$gt",
    Op.GTE: "$gte",
    Op.LT: "$lt",
    Op.LTE: "$lte",
    Op.IN: "$in",
}
_SIDECAR_SEQ = "chroma_seq"


def _is_transient(exc: BaseException) -> bool:
    name = type(exc).__name__
    return isinstance(exc, ConnectionError | TimeoutError) or name in (
        "ConnectError",
        "ReadTimeout",
        "RemoteProtocolError",
        "ReadError",
        "WriteError",
        "ConnectTimeout",
        "PoolTimeout",
    )


def to_chroma_where(flt: Filter | None, tenant: str | None) -> dict[str, Any] | None:
    """A Chroma ``where`` for the filter and tenant, or None when Chroma cannot express the
    filter with ragkit's exact semantics (the caller then restricts by ids instead)."""

    def convert(node: Filter) -> dict[str, Any] | None:
        if isinstance(node, Compare):
            op = _PUSHDOWN_OPS.get(node.op)
            if op is None or node.field.startswith("_ragkit"):
                return None
            value = list(node.value) if node.op is Op.IN else node.value
            if node.op is Op.IN and not value:
                return None
            return {node.field: {op: value}}
        if isinstance(node, And | Or):
            parts = [convert(child) for child in node.children]
            if any(p is None for p in parts):
                return None
            if len(parts) == 1:
                return parts[0]
            return {"$and" if isinstance(node, And) else "$or": parts}
        return None  # $not, $ne/$nin (missing fields), $exists, $contains: not pushed down

    clauses: list[dict[str, Any]] = [{TENANT_KEY: {"$eq": tenant or ""}}]
    if flt is not None:
        converted = convert(flt)
        if converted is None:
            return None
        clauses.append(converted)
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _chroma_metadata(record: Record) -> dict[str, Any]:
    """Top-level scalars (and lists of scalars) for where pushdown, plus the full JSON."""
    meta: dict[str, Any] = {}
    for key, value in record.metadata.items():
        if key.startswith("_ragkit"):
            continue
        if isinstance(value, str | int | float | bool) or (
            isinstance(value, list)
            and value
            and all(isinstance(v, str | int | float | bool) for v in value)
            and len({type(v) for v in value}) == 1
        ):
            meta[key] = value
    meta[META_KEY] = json.dumps(record.metadata, ensure_ascii=False)
    meta[TENANT_KEY] = record.tenant or ""
    return meta


class ChromaShard(Shard):
    """A shard stored in a Chroma collection, with a ragkit BM25 sidecar.

    Key init args:
        client: a chromadb client (``PersistentClient(path)`` or ``HttpClient(host, port)``).
        collection: the collection name (created with cosine distance if new).
        sidecar_path: where the BM25 sidecar is kept (None: in memory, rebuilt on each open).
        name: the shard name (default: the collection name).

    Instantiate:
        .. code-block:: python

            import chromadb
            from ragkit.backends import ChromaShard
            shard = ChromaShard(chromadb.HttpClient(host="127.0.0.1", port=8000), "docs",
                                sidecar_path="./docs-sidecar")
            store = HybridStore(backend=shard)
    """

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        sidecar_path: str | os.PathLike[str] | None = None,
        name: str | None = None,
        retries: int = 3,
    ) -> None:
        try:
            import chromadb  # noqa: F401
        except ImportError:
            raise MissingDependencyError("ChromaShard needs the 'chroma' extra") from None
        self.name = name or collection
        self.client = client
        self.retries = retries
        self._col = self._retry(
            lambda: client.get_or_create_collection(
                collection, metadata={"hnsw:space": "cosine"}, embedding_function=None
            )
        )
        self._settings = self._retry(
            lambda: client.get_or_create_collection(f"{collection}-ragkit", embedding_function=None)
        )
        self._batch = int(self._retry(client.get_max_batch_size))
        # Exact scans only in the sidecar: its vectors are never searched (Chroma has the ANN).
        self._sidecar = LocalShard(sidecar_path, name=f"{self.name}-sidecar", exact_threshold=2**62)
        self._sync_sidecar()

    # ---- plumbing -----------------------------------------------------------------------

    def _retry(self, call: Any) -> Any:
        return call_with_retries(call, _is_transient, self.retries)

    def _settings_meta(self) -> dict[str, Any]:
        got = self._retry(lambda: self._settings.get(ids=["settings"], include=["metadatas"]))
        metas = got.get("metadatas") or []
        return dict(metas[0] or {}) if metas else {}

    def _write_settings(self, meta: dict[str, Any]) -> None:
        self._retry(
            lambda: self._settings.upsert(
                ids=["settings"], embeddings=[[1.0]], metadatas=[meta], documents=["settings"]
            )
        )

    def _seq(self) -> int:
        return int(self._settings_meta().get("seq", 0))

    def _bump_seq(self) -> int:
        meta = self._settings_meta()
        meta["seq"] = int(meta.get("seq", 0)) + 1
        self._write_settings(meta)
        return int(meta["seq"])

    def _records_from(self, got: dict[str, Any], include_vectors: bool) -> list[Record]:
        out = []
        embeddings = got.get("embeddings")
        for i, rid in enumerate(got["ids"]):
            meta = got["metadatas"][i] or {}
            vector = None
            if include_vectors and embeddings is not None:
                vector = np.asarray(embeddings[i], dtype=np.float32)
            out.append(
                Record(
                    rid,
                    got["documents"][i],
                    json.loads(meta.get(META_KEY, "{}")),
                    vector,
                    meta.get(TENANT_KEY) or None,
                )
            )
        return out

    def _sync_sidecar(self) -> None:
        """Rebuild the sidecar from the collection when it is missing or behind."""
        seq = self._seq()
        if self._sidecar.read_setting(_SIDECAR_SEQ) == str(seq) and seq > 0:
            return
        for tenant in self._sidecar.tenants():
            stale = self._sidecar.ids(tenant=tenant)
            if stale:
                self._sidecar.delete(stale)
        offset = 0
        while True:
            got = self._retry(
                lambda off=offset: self._col.get(
                    limit=self._batch, offset=off, include=["documents", "metadatas", "embeddings"]
                )
            )
            if not got["ids"]:
                break
            self._sidecar.upsert(self._records_from(got, include_vectors=True))
            offset += len(got["ids"])
        self._sidecar.write_setting(_SIDECAR_SEQ, str(seq))

    # ---- writes -------------------------------------------------------------------------

    def upsert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        _, vectors = check_records(records, self.dim)
        for start in range(0, len(records), self._batch):
            batch = records[start : start + self._batch]
            self._retry(
                lambda b=batch, s=start: self._col.upsert(
                    ids=[r.id for r in b],
                    embeddings=vectors[s : s + len(b)],
                    documents=[r.text for r in b],
                    metadatas=[_chroma_metadata(r) for r in b],
                )
            )
        seq = self._bump_seq()
        self._sidecar.upsert(records)
        self._sidecar.write_setting(_SIDECAR_SEQ, str(seq))

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        wanted = self.delete_targets(ids, filter, tenant)
        present = [r.id for r in self.get(wanted)]
        if not present:
            return 0
        for start in range(0, len(present), self._batch):
            chunk = present[start : start + self._batch]
            self._retry(lambda c=chunk: self._col.delete(ids=c))
        seq = self._bump_seq()
        self._sidecar.delete(present)
        self._sidecar.write_setting(_SIDECAR_SEQ, str(seq))
        return len(present)

    # ---- reads --------------------------------------------------------------------------

    def get(self, ids: Sequence[str], *, include_vectors: bool = False) -> list[Record]:
        wanted = list(dict.fromkeys(ids))
        include = ["documents", "metadatas", *(["embeddings"] if include_vectors else [])]
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), self._batch):
            chunk = wanted[start : start + self._batch]
            got = self._retry(lambda c=chunk: self._col.get(ids=c, include=include))
            for record in self._records_from(got, include_vectors):
                found[record.id] = record
        return [found[i] for i in wanted if i in found]

    @property
    def dim(self) -> int | None:
        return self._sidecar.dim

    def tenants(self) -> list[str | None]:
        return self._sidecar.tenants()

    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        return self._sidecar.ids(filter=filter, tenant=tenant)

    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        return self._sidecar.count(filter=filter, tenant=tenant)

    def search_dense_batch(
        self,
        vectors: NDArray[np.float32],
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> list[list[Candidate]]:
        queries = check_dense_request(vectors, k, tenant, self.dim)
        allowed = self._sidecar.count(filter=filter, tenant=tenant)
        if allowed == 0:
            return [[] for _ in queries]
        where = to_chroma_where(filter, tenant)
        ids = None if where is not None else self._sidecar.ids(filter=filter, tenant=tenant)
        return [self._dense_one(q, k, allowed, where, ids) for q in queries]

    def _dense_one(
        self,
        query: NDArray[np.float32],
        k: int,
        allowed: int,
        where: dict[str, Any] | None,
        ids: list[str] | None,
    ) -> list[Candidate]:
        # Fetch past the k-th hit until the scores there drop, so that records tied with the
        # k-th are all seen and ordered by id like every other ragkit backend.
        n = min(allowed, 2 * k)
        while True:
            got = self._retry(
                lambda n=n: self._col.query(
                    query_embeddings=query[None, :],
                    n_results=n,
                    where=where,
                    ids=ids,
                    include=["distances"],
                )
            )
            found = [
                Candidate(rid, float(1.0 - d)) for rid, d in zip(got["ids"][0], got["distances"][0])
            ]
            found.sort(key=lambda c: (-c.score, c.id))
            if n >= allowed or len(found) <= k or found[-1].score < found[k - 1].score - 1e-6:
                return found[:k]
            n = min(allowed, 2 * n)

    def search_lexical(
        self,
        text: str,
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
        stats: LexicalStats | None = None,
    ) -> list[Candidate]:
        return self._sidecar.search_lexical(text, k, filter=filter, tenant=tenant, stats=stats)

    def analyze(self, text: str) -> list[str]:
        return self._sidecar.analyze(text)

    def lexical_stats(self, terms: Sequence[str]) -> LexicalStats:
        return self._sidecar.lexical_stats(terms)

    def read_setting(self, key: str) -> str | None:
        value = self._settings_meta().get(f"user.{key}")
        return None if value is None else str(value)

    def write_setting(self, key: str, value: str) -> None:
        meta = self._settings_meta()
        meta[f"user.{key}"] = value
        self._write_settings(meta)

    def close(self) -> None:
        self._sidecar.close()
