"""ChromaShard: a Chroma collection as a ragkit shard (needs the chroma extra).

Vectors live in Chroma (embedded ``PersistentClient`` or a ``chroma run`` server through
``HttpClient``), which answers the dense leg with its HNSW index; everything else comes from a
lexical sidecar beside the collection (``SidecarShard``: BM25, filters Chroma cannot express,
records, versions). A small settings collection (``<name>-ragkit``) keeps the version, the
dimension and the store settings. A ChromaShard can be a partition replica, so several
``chroma run`` servers can be the hosts of a ShardedStore.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ragkit.backends._remote import (
    PayloadKeys,
    call_with_retries,
    chunks,
    engine_id,
    ordered_leg,
    ragkit_id,
)
from ragkit.backends._sidecar import SidecarShard
from ragkit.backends.base import ReplicaShard
from ragkit.backends.sharded.host import CollectionReplicas
from ragkit.errors import MissingDependencyError
from ragkit.filters import RANGE_OPS, And, Compare, Filter, Op, Or
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.schema import Leg, Record, Vector

KEYS = PayloadKeys(id="_ragkit_id", tenant="_ragkit_tenant", metadata="_ragkit_meta")
_PUSHDOWN_OPS = {
    Op.EQ: "$eq",
    Op.GT: "$gt",
    Op.GTE: "$gte",
    Op.LT: "$lt",
    Op.LTE: "$lte",
    Op.IN: "$in",
}
_TRANSIENT = {
    "ConnectError",
    "ReadTimeout",
    "RemoteProtocolError",
    "ReadError",
    "WriteError",
    "ConnectTimeout",
    "PoolTimeout",
}


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError | TimeoutError) or type(exc).__name__ in _TRANSIENT


def to_chroma_where(flt: Filter | None, tenant: str | None) -> dict[str, Any] | None:
    """A Chroma ``where`` for the filter and tenant, or None when Chroma cannot express the
    filter with ragkit's exact semantics (the caller then restricts by ids instead)."""

    def convert(node: Filter) -> dict[str, Any] | None:
        if isinstance(node, Compare):
            op = _PUSHDOWN_OPS.get(node.op)
            if op is None or node.field.startswith("_ragkit"):
                return None
            if isinstance(node.value, tuple) and node.op is Op.EQ:
                return None  # a whole list to equal: the sidecar's columns decide
            if isinstance(node.value, str) and node.op in RANGE_OPS:
                return None  # Chroma compares numbers only
            value = list(node.value) if node.op is Op.IN else node.value
            if node.op is Op.IN and (not value or len({type(v) for v in value}) > 1):
                return None  # Chroma rejects a mixed-type $in: restrict by ids instead
            return {node.field: {op: value}}
        if isinstance(node, And | Or):
            parts = [convert(child) for child in node.children]
            if any(p is None for p in parts):
                return None
            if len(parts) == 1:
                return parts[0]
            return {"$and" if isinstance(node, And) else "$or": parts}
        return None  # $not, $ne/$nin (missing fields), $exists, $contains: not pushed down

    clauses: list[dict[str, Any]] = [{KEYS.tenant: {"$eq": tenant or ""}}]
    if flt is not None:
        converted = convert(flt)
        if converted is None:
            return None
        clauses.append(converted)
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class ChromaShard(SidecarShard):
    """A shard stored in a Chroma collection, with a ragkit BM25 sidecar.

    Key init args:
        client: a chromadb client (``PersistentClient(path)`` or ``HttpClient(host, port)``).
        collection: the collection name (created with cosine distance if new).
        sidecar_path: where the sidecar is kept (None: in memory, rebuilt on each open).
        name: the shard name (default: the collection name).
        limits: what a write may hold (``ragkit.limits.Limits``).

    Instantiate:
        .. code-block:: python

            import chromadb
            from ragkit import HybridStore
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
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        try:
            import chromadb  # noqa: F401
        except ImportError:
            raise MissingDependencyError("ChromaShard needs the 'chroma' extra") from None
        self.name = name or collection
        self.limits = limits
        self.client = client
        self.collection = collection
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
        self._open_sidecar(sidecar_path)

    def _retry(self, call: Any) -> Any:
        return call_with_retries(call, _is_transient, self.retries)

    # ---- the engine hooks ----------------------------------------------------------------

    def _engine_state(self) -> dict[str, str]:
        got = self._retry(lambda: self._settings.get(ids=["settings"], include=["metadatas"]))
        metas = got.get("metadatas") or []
        state = {k: str(v) for k, v in (metas[0] or {}).items()} if metas else {}
        if "version" not in state and "seq" in state:  # written by ragkit 0.1
            state["version"] = state.pop("seq")
        return state

    def _engine_put_state(self, state: dict[str, str]) -> None:
        self._retry(
            lambda: self._settings.upsert(
                ids=["settings"], embeddings=[[1.0]], metadatas=[state], documents=["settings"]
            )
        )

    def _engine_upsert(self, records: Sequence[Record]) -> None:
        for batch in chunks(records, self._batch):
            self._retry(
                lambda b=batch: self._col.upsert(
                    ids=[engine_id(r.tenant, r.id) for r in b],
                    embeddings=np.vstack([np.asarray(r.vector, np.float32) for r in b]),
                    documents=[r.text for r in b],
                    metadatas=[KEYS.payload(r) for r in b],
                )
            )

    def _engine_delete(self, keys: Sequence[tuple[str | None, str]]) -> None:
        stored = [engine_id(t, i) for t, i in keys]
        for batch in chunks(stored, self._batch):
            self._retry(lambda b=batch: self._col.delete(ids=list(b)))

    def _engine_clear(self) -> None:
        while True:
            got = self._retry(lambda: self._col.get(limit=self._batch, include=[]))
            if not got["ids"]:
                return
            self._retry(lambda ids=got["ids"]: self._col.delete(ids=ids))

    def _engine_vectors(self, tenant: str | None, ids: Sequence[str]) -> dict[str, Vector]:
        out: dict[str, Vector] = {}
        for batch in chunks([engine_id(tenant, i) for i in ids], self._batch):
            got = self._retry(lambda b=batch: self._col.get(ids=list(b), include=["embeddings"]))
            for stored, vector in zip(got["ids"], got["embeddings"]):
                out[ragkit_id(tenant, stored)] = np.asarray(vector, dtype=np.float32)
        return out

    def _engine_scan(self) -> Iterator[list[Record]]:
        offset = 0
        while True:
            got = self._retry(
                lambda off=offset: self._col.get(
                    limit=self._batch, offset=off, include=["documents", "metadatas"]
                )
            )
            if not got["ids"]:
                return
            yield [
                KEYS.record(stored, text, meta or {}, None)
                for stored, text, meta in zip(got["ids"], got["documents"], got["metadatas"])
            ]
            offset += len(got["ids"])

    def _engine_dense(self, vector: Vector, k: int, flt: Filter | None, tenant: str | None) -> Leg:
        allowed = self._sidecar.count(filter=flt, tenant=tenant)
        if allowed == 0:
            return Leg.empty()
        where = to_chroma_where(flt, tenant)
        ids = None
        if where is None:  # not expressible in Chroma: restrict by the sidecar's ids
            ids = [engine_id(tenant, i) for i in self._sidecar.ids(filter=flt, tenant=tenant)]
        # Fetch past the k-th hit until the scores there drop, so that records tied with the
        # k-th are all seen and ordered by id like every other ragkit backend.
        n = min(allowed, 2 * k)
        while True:
            got = self._retry(
                lambda n=n: self._col.query(
                    query_embeddings=vector[None, :],
                    n_results=n,
                    where=where,
                    ids=ids,
                    include=["distances"],
                )
            )
            found = [ragkit_id(tenant, s) for s in got["ids"][0]]
            scores = [1.0 - float(d) for d in got["distances"][0]]
            leg = ordered_leg(found, scores, len(found))
            if (
                n >= allowed
                or len(leg) <= k
                or float(leg.scores[-1]) < float(leg.scores[k - 1]) - 1e-6
            ):
                return ordered_leg(list(leg.ids), leg.scores.tolist(), k)
            n = min(allowed, 2 * n)


class ChromaReplicas(CollectionReplicas):
    """A Chroma server (or embedded Chroma) as the host of partition replicas: each one a
    collection ``PREFIX-p0003`` with its sidecar under ``sidecar_root`` (or in memory).

    Instantiate:
        .. code-block:: python

            import chromadb
            from ragkit.backends import ShardedStore
            from ragkit.backends.chroma import ChromaReplicas
            from ragkit.backends.sharded import LocalHost
            hosts = [
                LocalHost(f"c{i}", replicas=ChromaReplicas(chromadb.HttpClient(port=port)))
                for i, port in enumerate([8000, 8001, 8002])
            ]
            router = ShardedStore(hosts, partitions=6, replicas=2)
    """

    separator = "-"

    def open(self, partition: int, host: str) -> ReplicaShard:
        return ChromaShard(
            self.client,
            self._collection(partition),
            sidecar_path=self._sidecar(partition),
            name=f"{host}/p{partition}",
        )

    def _collections(self) -> list[str]:
        return [str(getattr(c, "name", c)) for c in self.client.list_collections()]

    def _drop(self, collection: str) -> None:
        self.client.delete_collection(collection)
