"""QdrantShard: ragkit over a Qdrant collection (needs the qdrant extra).

Qdrant (a server or cluster, or qdrant-client's local mode: ``":memory:"`` or a directory)
keeps everything and answers both legs: the dense leg from a named vector ``dense`` (cosine),
the lexical leg from a named sparse vector ``bm25`` that ragkit builds from its own analyzer
(``_sparse``: BM25's saturation in the document weights, no sparse model to download) with
Qdrant's IDF modifier supplying the IDF over the query's tenant (an IDF corpus filter), so a
search scores BM25 per tenant like a LocalShard. ``fusion="native"`` is Qdrant's RRF over
both legs (``k = 60``, weights ``alpha`` and ``1 - alpha``).

A document's weights use its tenant's average length when it was written; ``reweight()``
rewrites a tenant's documents with today's (worth running after a tenant has grown or shrunk
by a large part). Tenants are a payload field with a tenant index (Qdrant's multitenancy
pattern); point ids are ``uuid5`` of the tenant-scoped id. Qdrant shards and replicates a
collection itself, so one collection is a whole HybridStore backend. Settings (store id,
lengths, user settings) live in ``<collection>-ragkit``.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ragkit.backends._engine import EngineShard, Hits, Scope
from ragkit.backends._remote import (
    PRESENT,
    FilterPrimitives,
    chunks,
    engine_id,
    redact,
)
from ragkit.backends._sparse import Lengths, document_weights, query_weights
from ragkit.errors import (
    InvalidInputError,
    MissingDependencyError,
    ShardUnavailableError,
    StoreError,
)
from ragkit.filters import Op
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.schema import Record, Vector

NAMESPACE = uuid.UUID("2b0d7c8e-5f0a-4d5e-9c1b-0e6a1f3d9a77")
_BATCH = 256
_PAYLOAD = ["rid", "tenant", "text", "meta"]
_RANGE = {Op.GT: "gt", Op.GTE: "gte", Op.LT: "lt", Op.LTE: "lte"}


def point_id(tenant: str | None, record_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, engine_id(tenant, record_id)))


def _models() -> Any:
    from qdrant_client import models

    return models


class QdrantFilters(FilterPrimitives[Any]):
    """ragkit filters as Qdrant payload filters over the typed fields (``must_not`` of a
    condition on a missing key holds, as ``$ne`` does)."""

    def equals(self, key: str, value: str | float | bool) -> Any:
        m = _models()
        if isinstance(value, str | bool):
            return m.FieldCondition(key=key, match=m.MatchValue(value=value))
        return m.FieldCondition(key=key, range=m.Range(gte=value, lte=value))

    def has_element(self, key: str, value: str | float | bool) -> Any:
        return self.equals(key, value)  # a condition on an array holds for any element

    def compare(self, key: str, op: Op, value: float) -> Any:
        m = _models()
        return m.FieldCondition(key=key, range=m.Range(**{_RANGE[op]: value}))

    def present(self, name: str) -> Any:
        m = _models()
        return m.FieldCondition(key=PRESENT, match=m.MatchValue(value=name))

    def all_of(self, parts: list[Any]) -> Any:
        return _models().Filter(must=parts)

    def any_of(self, parts: list[Any]) -> Any:
        return _models().Filter(should=parts)

    def negate(self, part: Any) -> Any:
        return _models().Filter(must_not=[part])


class QdrantShard(EngineShard[Any]):
    """A Qdrant collection as a ragkit backend (see the module docstring).

    Key init args:
        location: ``":memory:"`` (local mode, in memory) or a server URL.
        path: a directory for local mode on disk (one process at a time).
        url, api_key: a Qdrant server (or cluster) and its key.
        collection: the collection name; created on the first write unless
            ``create=False``, which makes a missing one a ``StoreError``.
        client: a ``qdrant_client.QdrantClient`` to use instead.
        limits: what a write may hold (``ragkit.limits.Limits``).

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            from ragkit.backends import QdrantShard
            store = HybridStore(backend=QdrantShard(url="http://127.0.0.1:6333", collection="docs"))
            store.search("hybrid search")  # calibrated; fusion="native" for Qdrant's RRF
    """

    primitives = QdrantFilters()
    engine = "Qdrant"
    per_tenant_stats = True

    @staticmethod
    def _is_transient(exc: BaseException) -> bool:
        if isinstance(exc, ConnectionError | TimeoutError):
            return True
        if type(exc).__name__ == "ResponseHandlingException":  # could not connect
            return True
        status = getattr(exc, "status_code", None)
        return isinstance(status, int) and (status >= 500 or status == 429)

    def __init__(
        self,
        location: str | None = None,
        *,
        path: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = "ragkit",
        name: str | None = None,
        client: Any = None,
        create: bool = True,
        retries: int = 3,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        try:
            from qdrant_client import QdrantClient
        except ImportError:
            raise MissingDependencyError("QdrantShard needs the 'qdrant' extra") from None
        if not isinstance(collection, str) or not collection or "/" in collection:
            raise InvalidInputError(
                f"a Qdrant collection name is a non-empty string without '/', got {collection!r}"
            )
        where = url or location or path or ":memory:"
        self.uri = redact(str(where))
        self.collection, self.name = collection, name or collection
        self.retries, self.limits = retries, limits
        self._settings_name = f"{collection}-ragkit"
        self._dim: int | None = None
        self._owns_client = client is None
        try:
            if client is None:
                kwargs: dict[str, Any] = {"api_key": api_key} if api_key else {}
                if url is not None:
                    client = QdrantClient(url=url, check_compatibility=False, **kwargs)
                elif path is not None:
                    client = QdrantClient(path=str(path))
                else:
                    client = QdrantClient(location=location or ":memory:", **kwargs)
            self.client = client
            self._local = type(getattr(client, "_client", None)).__name__ == "QdrantLocal"
            exists = self._retry(lambda: self.client.collection_exists(collection))
        except (StoreError, ShardUnavailableError):
            raise
        except Exception as exc:
            raise ShardUnavailableError(f"cannot reach Qdrant at {self.uri}: {exc}") from None
        if not create and not exists:
            raise StoreError(f"Qdrant at {self.uri} has no collection {collection!r}")

    # ---- collections and settings --------------------------------------------------------

    def _engine_dim(self) -> int | None:
        if self._dim is None and self._retry(
            lambda: self.client.collection_exists(self.collection)
        ):
            params = self._retry(lambda: self.client.get_collection(self.collection)).config.params
            vectors = params.vectors if isinstance(params.vectors, dict) else {}
            if "dense" not in vectors or "bm25" not in (params.sparse_vectors or {}):
                raise StoreError(
                    f"Qdrant collection {self.collection!r} at {self.uri} was not made by ragkit "
                    "(it has no 'dense' vector and 'bm25' sparse vector)"
                )
            self._dim = int(vectors["dense"].size)
        return self._dim

    def _engine_create(self, dim: int) -> None:
        m = _models()
        self._retry(
            lambda: self.client.create_collection(
                self.collection,
                vectors_config={"dense": m.VectorParams(size=dim, distance=m.Distance.COSINE)},
                sparse_vectors_config={"bm25": m.SparseVectorParams(modifier=m.Modifier.IDF)},
            )
        )
        if not self._local:  # local mode has no payload indexes
            for key, schema in (
                ("tenant", m.KeywordIndexParams(type="keyword", is_tenant=True)),
                ("terms", m.PayloadSchemaType.KEYWORD),
                ("rid", m.PayloadSchemaType.KEYWORD),
            ):
                self._retry(
                    lambda k=key, s=schema: self.client.create_payload_index(self.collection, k, s)
                )
        self._dim = dim

    def _engine_settings(self) -> dict[str, str]:
        if not self._retry(lambda: self.client.collection_exists(self._settings_name)):
            return {}
        got = self._retry(lambda: self.client.retrieve(self._settings_name, [1], with_payload=True))
        return dict(json.loads(got[0].payload["settings"])) if got else {}

    def _engine_put_settings(self, settings: dict[str, str]) -> None:
        m = _models()
        if not self._retry(lambda: self.client.collection_exists(self._settings_name)):
            self._retry(
                lambda: self.client.create_collection(self._settings_name, vectors_config={})
            )
        point = m.PointStruct(id=1, vector={}, payload={"settings": json.dumps(settings)})
        self._retry(lambda: self.client.upsert(self._settings_name, [point]))

    def _lengths(self) -> Lengths:
        return Lengths(self._engine_settings().get("lengths"))

    def _put_lengths(self, lengths: Lengths) -> None:
        self._engine_put_settings({**self._engine_settings(), "lengths": lengths.dumps()})

    # ---- writes and reads ----------------------------------------------------------------

    @staticmethod
    def _sparse(indices_values: tuple[list[int], list[float]]) -> Any:
        indices, values = indices_values
        return _models().SparseVector(indices=indices, values=values)

    def _engine_upsert(self, records: Sequence[Record], terms: Sequence[list[str]]) -> None:
        m = _models()
        lengths = self._lengths()
        for old in self._payloads([(r.tenant, r.id) for r in records], ["tenant", "dl"]):
            lengths.add(old["tenant"], int(old["dl"]), sign=-1)
        for record, tokens in zip(records, terms):
            lengths.add(record.tenant, len(tokens))
        points = []
        for record, tokens in zip(records, terms):
            tf = Counter(tokens)
            payload = self._document(record)
            payload.update(payload.pop("f"))  # typed fields at the top, for payload filters
            payload.update(terms=sorted(tf), tf=[tf[t] for t in sorted(tf)], dl=len(tokens))
            bm25 = self._sparse(document_weights(tf, lengths.avgdl(record.tenant)))
            dense = [float(x) for x in record.vector]  # type: ignore[union-attr]
            pid = point_id(record.tenant, record.id)
            points.append(
                m.PointStruct(id=pid, vector={"dense": dense, "bm25": bm25}, payload=payload)
            )
        self._put_lengths(lengths)
        for batch in chunks(points, _BATCH):
            self._retry(lambda b=batch: self.client.upsert(self.collection, list(b), wait=True))

    def _engine_delete(self, tenant: str | None, ids: Sequence[str]) -> None:
        lengths = self._lengths()
        for old in self._payloads([(tenant, i) for i in ids], ["dl"]):
            lengths.add(tenant, int(old["dl"]), sign=-1)
        for batch in chunks([point_id(tenant, i) for i in ids], _BATCH):
            selector = _models().PointIdsList(points=list(batch))
            self._retry(lambda s=selector: self.client.delete(self.collection, s, wait=True))
        self._put_lengths(lengths)

    def reweight(self, tenant: str | None = None) -> int:
        """Rewrite the BM25 weights of ``tenant``'s documents with its average length today
        (recounting it); returns how many documents were rewritten."""
        m = _models()
        docs = list(self._scan(Scope(tenant, None, None), ["terms", "tf", "dl"], ids=True))
        lengths = self._lengths()
        lengths.by_tenant[tenant or ""] = [len(docs), sum(int(d["dl"]) for d in docs)]
        avgdl = lengths.avgdl(tenant)
        for batch in chunks(docs, _BATCH):
            weights = [document_weights(dict(zip(d["terms"], d["tf"])), avgdl) for d in batch]
            updates = [
                m.PointVectors(id=d["id"], vector={"bm25": self._sparse(w)})
                for d, w in zip(batch, weights)
            ]
            self._retry(lambda u=updates: self.client.update_vectors(self.collection, u, wait=True))
        self._put_lengths(lengths)
        return len(docs)

    def _retrieve(
        self, keys: Sequence[tuple[str | None, str]], fields: list[str], vectors: bool = False
    ) -> Iterator[Any]:
        with_vectors = ["dense"] if vectors else False
        for batch in chunks([point_id(t, i) for t, i in keys] if self.dim else [], _BATCH):
            yield from self._retry(
                lambda b=batch: self.client.retrieve(
                    self.collection, list(b), with_payload=fields, with_vectors=with_vectors
                )
            )

    def _payloads(self, keys: Sequence[tuple[str | None, str]], fields: list[str]) -> list[Any]:
        return [p.payload for p in self._retrieve(keys, fields)]

    def _engine_get(
        self, tenant: str | None, ids: Sequence[str], vectors: bool
    ) -> dict[str, Record]:
        points = self._retrieve([(tenant, i) for i in ids], _PAYLOAD, vectors)
        return {
            p.payload["rid"]: self._record(p.payload, p.vector["dense"] if vectors else None)
            for p in points
        }

    def _filter(self, scope: Scope[Any] | None) -> Any:
        m = _models()
        if scope is None:
            return None
        must = [m.FieldCondition(key="tenant", match=m.MatchValue(value=scope.tenant or ""))]
        if scope.expr is not None:
            must.append(scope.expr)
        if scope.ids is not None:
            must.append(m.HasIdCondition(has_id=[point_id(scope.tenant, i) for i in scope.ids]))
        return m.Filter(must=must)

    def _engine_count(self, scope: Scope[Any]) -> int:
        flt = self._filter(scope)
        return int(self._retry(lambda: self.client.count(self.collection, flt, exact=True)).count)

    def _scan(
        self, scope: Scope[Any] | None, fields: list[str], ids: bool = False
    ) -> Iterator[dict[str, Any]]:
        flt, offset = self._filter(scope), None
        while True:
            points, offset = self._retry(
                lambda o=offset: self.client.scroll(
                    self.collection, scroll_filter=flt, limit=1000, offset=o, with_payload=fields
                )
            )
            yield from ({**p.payload, "id": p.id} if ids else p.payload for p in points)
            if offset is None:
                return

    _engine_scan = _scan

    def _engine_ids(self, scope: Scope[Any]) -> list[str]:
        return [doc["rid"] for doc in self._scan(scope, ["rid"])]

    # ---- search --------------------------------------------------------------------------

    def _idf(self, tenant: str | None) -> Any:
        corpus = self._filter(Scope(tenant, None, None))  # BM25's IDF over the tenant
        return _models().SearchParams(idf=_models().IdfCorpusParams(corpus=corpus))

    def _query(self, terms: Counter[str]) -> Any:
        return self._sparse(query_weights(terms))

    def _points(self, n: int, scope: Scope[Any], **query: Any) -> list[Any]:
        flt = self._filter(scope)
        return list(
            self._retry(
                lambda: self.client.query_points(
                    self.collection, limit=n, query_filter=flt, with_payload=["rid"], **query
                )
            ).points
        )

    def _engine_dense(self, vector: Vector, n: int, scope: Scope[Any]) -> Hits:
        # Qdrant's cosine can differ in the last bits from one call to the next (local mode
        # renormalizes its stored float32 vectors in place on every search): score the stored
        # vectors renormalized in float64, rounded to 1e-7, so equal vectors score equal.
        query = np.asarray(vector, dtype=np.float64) / np.linalg.norm(vector)
        hits = []
        for p in self._points(
            n, scope, query=query.tolist(), using="dense", with_vectors=["dense"]
        ):
            stored = np.asarray(p.vector["dense"], dtype=np.float64)
            hits.append(
                (p.payload["rid"], round(float(stored @ query / np.linalg.norm(stored)), 7))
            )
        return hits

    def _engine_lexical(self, terms: Counter[str], n: int, scope: Scope[Any]) -> Hits:
        idf = self._idf(scope.tenant)
        got = self._points(n, scope, query=self._query(terms), using="bm25", search_params=idf)
        return [(p.payload["rid"], float(p.score)) for p in got]

    def _engine_hybrid(
        self, vector: Vector, terms: Counter[str], n: int, scope: Scope[Any], alpha: float
    ) -> Hits:
        m, flt = _models(), self._filter(scope)
        legs = [m.Prefetch(query=[float(x) for x in vector], using="dense", limit=n, filter=flt)]
        if terms:
            idf, query = self._idf(scope.tenant), self._query(terms)
            legs.append(m.Prefetch(query=query, using="bm25", limit=n, filter=flt, params=idf))
        rrf = m.RrfQuery(rrf=m.Rrf(k=60, weights=[alpha, 1.0 - alpha][: len(legs)]))
        return [
            (p.payload["rid"], float(p.score))
            for p in self._points(n, scope, prefetch=legs, query=rrf)
        ]

    def _engine_doc_freqs(
        self, tenant: str | None, terms: Sequence[str]
    ) -> tuple[int, dict[str, int]]:
        m = _models()  # the IDF corpus of a search is its tenant
        total = self._engine_count(Scope(tenant, None, None))
        has = {t: m.FieldCondition(key="terms", match=m.MatchValue(value=t)) for t in terms}
        return total, {t: self._engine_count(Scope(tenant, has[t], None)) for t in terms}

    def _engine_size(self) -> int:
        return int(
            self._retry(lambda: self.client.get_collection(self.collection)).points_count or 0
        )
