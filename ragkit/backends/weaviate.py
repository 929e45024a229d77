"""WeaviateShard: ragkit over a Weaviate collection (needs the weaviate extra).

Weaviate shards, replicates and fuses by itself, so ragkit delegates: a hybrid search is one
native ``hybrid`` query (alpha and fusion mapped from ragkit's), and the store is used directly
as a HybridStore backend rather than inside a ShardedStore.

Records map to objects: ``uuid5(record id)`` as the object id, properties ``ragkit_id``,
``text``, ``ragkit_meta`` (the whole metadata as JSON), ``ragkit_tenant`` (when the collection
is not multi-tenant) and each top-level scalar metadata field (for filters); ragkit's vector is
the object vector (``vectorizer: none``). With ``multi_tenancy=True`` ragkit tenants are
Weaviate tenants (``None`` -> ``"ragkit-default"``), created on first write.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragkit._pipeline import apply_mmr
from ragkit._validation import check_records, check_tenant, check_vector, unique_ids
from ragkit.backends._remote import PayloadKeys, call_with_retries, chunks
from ragkit.backends._weaviate_filters import to_weaviate_filter
from ragkit.backends.base import Capabilities, Shard
from ragkit.errors import InvalidInputError, MissingDependencyError
from ragkit.filters import Filter
from ragkit.fusion import Fusion, single_leg
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.request import SearchRequest
from ragkit.schema import Leg, LexicalStats, Record, RecordMap, SearchMode, ShardAnswer

NAMESPACE = uuid.UUID("6f1c1f6e-2c7d-4c53-9a4e-7a2f3f5e9b10")
ID_PROP, TEXT_PROP, META_PROP, TENANT_PROP = "ragkit_id", "text", "ragkit_meta", "ragkit_tenant"
KEYS = PayloadKeys(id=ID_PROP, tenant=TENANT_PROP, metadata=META_PROP)
DEFAULT_TENANT = "ragkit-default"
_PAGE = 1000
_FUSIONS = {
    Fusion.RRF: "RANKED",
    Fusion.RELATIVE_SCORE: "RELATIVE_SCORE",
    Fusion.NATIVE: "RELATIVE_SCORE",  # Weaviate's default ranker
}


def record_uuid(record_id: str, tenant: str | None = None) -> str:
    """The object id of a record: one id space per collection, so a tenant's ids are
    namespaced by the tenant (the default tenant keeps ``uuid5(id)``)."""
    key = record_id if tenant is None else f"{tenant}\x1f{record_id}"
    return str(uuid.uuid5(NAMESPACE, key))


def _is_transient(exc: BaseException) -> bool:
    name = type(exc).__name__
    if name in ("WeaviateConnectionError", "WeaviateTimeoutError", "WeaviateGRPCUnavailableError"):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status >= 500 or status == 429)


class WeaviateShard(Shard):
    """A Weaviate collection as a ragkit backend, with native hybrid search.

    Weaviate shards, replicates and fuses by itself: ``search`` sends a hybrid request as one
    native ``hybrid`` query (declared: ``capabilities.native_hybrid``) and the statistics are
    Weaviate's own (``global_stats`` is false), so it is used as a HybridStore backend
    directly, never inside a ShardedStore.

    Key init args:
        client: a connected ``weaviate.WeaviateClient`` (v4).
        collection: the collection name (created with ragkit's schema if missing).
        multi_tenancy: map ragkit tenants to Weaviate tenants (default: a property).
        replication_factor: passed to the collection on creation.
        consistency_level: ``"ONE"``, ``"QUORUM"`` or ``"ALL"`` for every request.
        limits: what a write may hold (``ragkit.limits.Limits``).

    Instantiate:
        .. code-block:: python

            import weaviate
            from ragkit import HybridStore
            from ragkit.backends import WeaviateShard
            client = weaviate.connect_to_local()
            store = HybridStore(backend=WeaviateShard(client, "Docs", replication_factor=3))
            store.search("hybrid search", fusion="relative_score", alpha=0.5)
    """

    capabilities = Capabilities(native_hybrid=True, global_stats=False, calibrated=False)

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        name: str | None = None,
        multi_tenancy: bool = False,
        replication_factor: int | None = None,
        consistency_level: str | None = None,
        retries: int = 3,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        try:
            import weaviate  # noqa: F401
        except ImportError:
            raise MissingDependencyError("WeaviateShard needs the 'weaviate' extra") from None
        self.name = name or collection
        self.limits = limits
        self.client = client
        self.multi_tenancy = multi_tenancy
        self.retries = retries
        if consistency_level not in (None, "ONE", "QUORUM", "ALL"):
            raise InvalidInputError(
                f"consistency_level must be ONE, QUORUM or ALL, got {consistency_level!r}"
            )
        self.consistency_level = consistency_level
        if not self._retry(lambda: client.collections.exists(collection)):
            self._create(collection, replication_factor)
        self._collection = client.collections.get(collection)
        self._dim: int | None = None
        self._store_id: str | None = None

    def _create(self, collection: str, replication_factor: int | None) -> None:
        from weaviate.classes.config import Configure, DataType, Property

        kwargs: dict[str, Any] = {
            "properties": [
                Property(name=ID_PROP, data_type=DataType.TEXT, skip_vectorization=True),
                Property(name=TEXT_PROP, data_type=DataType.TEXT),
                Property(
                    name=META_PROP,
                    data_type=DataType.TEXT,
                    index_filterable=False,
                    index_searchable=False,
                ),
                Property(name=TENANT_PROP, data_type=DataType.TEXT, index_searchable=False),
            ],
            "vector_config": Configure.Vectors.self_provided(),
            "inverted_index_config": Configure.inverted_index(index_null_state=True),
        }
        if self.multi_tenancy:
            kwargs["multi_tenancy_config"] = Configure.multi_tenancy(
                enabled=True, auto_tenant_creation=True
            )
        if replication_factor is not None:
            kwargs["replication_config"] = Configure.replication(factor=replication_factor)
        self._retry(lambda: self.client.collections.create(collection, **kwargs))

    # ---- plumbing -----------------------------------------------------------------------

    def _retry(self, call: Any) -> Any:
        return call_with_retries(call, _is_transient, self.retries)

    def _scoped(self, tenant: str | None) -> Any:
        col = self._collection
        if self.multi_tenancy:
            col = col.with_tenant(tenant or DEFAULT_TENANT)
        if self.consistency_level is not None:
            from weaviate.classes.config import ConsistencyLevel

            col = col.with_consistency_level(ConsistencyLevel[self.consistency_level])
        return col

    def _where(self, flt: Filter | None, tenant: str | None) -> Any:
        from weaviate.classes.query import Filter as W

        parts = []
        if not self.multi_tenancy:
            parts.append(W.by_property(TENANT_PROP).equal(tenant or ""))
        if flt is not None:
            parts.append(to_weaviate_filter(flt))
        return parts[0] if len(parts) == 1 else W.all_of(parts)

    def _uuid(self, record_id: str, tenant: str | None) -> str:
        # With Weaviate tenants each tenant is its own id space already.
        return record_uuid(record_id, None if self.multi_tenancy else tenant)

    @staticmethod
    def _record(obj: Any, include_vectors: bool) -> Record:
        vector = None
        if include_vectors:
            raw = obj.vector.get("default") if isinstance(obj.vector, dict) else obj.vector
            vector = None if raw is None else np.asarray(raw, dtype=np.float32)
        props = obj.properties
        return KEYS.record(props[ID_PROP], props[TEXT_PROP], props, vector)

    # ---- writes -------------------------------------------------------------------------

    def upsert(self, records: Sequence[Record]) -> None:
        from weaviate.classes.data import DataObject

        if not records:
            return
        _, vectors = check_records(records, self.dim, limits=self.limits)
        if self._dim is None:
            self.write_setting("dim", str(vectors.shape[1]))
            self._dim = int(vectors.shape[1])
        by_tenant: dict[str | None, list[Any]] = {}
        for record, vector in zip(records, vectors):
            by_tenant.setdefault(record.tenant, []).append(
                DataObject(
                    properties={TEXT_PROP: record.text, **KEYS.payload(record)},
                    uuid=self._uuid(record.id, record.tenant),
                    vector=vector.tolist(),
                )
            )
        for tenant, objects in by_tenant.items():
            col = self._scoped(tenant)
            result = self._retry(lambda c=col, o=objects: c.data.insert_many(o))
            errors = getattr(result, "errors", None)
            if errors:
                raise InvalidInputError(f"Weaviate rejected {len(errors)} objects: {errors}")

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        from weaviate.classes.query import Filter as W

        present = self.present_targets(ids, filter, tenant)
        col = self._scoped(tenant)
        for batch in chunks(present, _PAGE):
            where = W.by_id().contains_any([self._uuid(i, tenant) for i in batch])
            self._retry(lambda w=where: col.data.delete_many(where=w))
        return len(present)

    # ---- reads --------------------------------------------------------------------------

    def get(
        self, ids: Sequence[str], *, tenant: str | None = None, include_vectors: bool = False
    ) -> list[Record]:
        from weaviate.classes.query import Filter as W

        wanted = unique_ids(ids)
        tenant = check_tenant(tenant)
        col = self._scoped(tenant)
        found: dict[str, Record] = {}
        for batch in chunks(wanted, _PAGE):
            uuids = [self._uuid(i, tenant) for i in batch]
            got = self._retry(
                lambda u=uuids: col.query.fetch_objects(
                    filters=W.by_id().contains_any(u), limit=len(u), include_vector=include_vectors
                )
            )
            for obj in got.objects:
                record = self._record(obj, include_vectors)
                if record.tenant == tenant:
                    found[record.id] = record
        return [found[i] for i in wanted if i in found]

    @property
    def dim(self) -> int | None:
        if self._dim is None:
            value = self.read_setting("dim")
            self._dim = int(value) if value else None
        return self._dim

    def tenants(self) -> list[str | None]:
        if not self.multi_tenancy:
            got = self._retry(
                lambda: self._collection.aggregate.over_all(group_by=TENANT_PROP, total_count=True)
            )
            return [g.grouped_by.value or None for g in got.groups]
        names = self._retry(self._collection.tenants.get)
        return [None if n == DEFAULT_TENANT else n for n in names]

    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        col = self._scoped(check_tenant(tenant))
        where = self._where(filter, tenant)
        out: list[str] = []
        after = None
        while True:
            got = self._retry(
                lambda a=after: col.query.fetch_objects(
                    filters=where, limit=_PAGE, after=a, return_properties=[ID_PROP]
                )
            )
            if not got.objects:
                return out
            out.extend(obj.properties[ID_PROP] for obj in got.objects)
            after = got.objects[-1].uuid

    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        col = self._scoped(check_tenant(tenant))
        where = self._where(filter, tenant)
        got = self._retry(lambda: col.aggregate.over_all(filters=where, total_count=True))
        return int(got.total_count or 0)

    def search(self, request: SearchRequest, *, stats: LexicalStats | None = None) -> ShardAnswer:
        """One Weaviate query: native ``hybrid`` for hybrid requests (Weaviate fuses:
        ``rrf`` -> ranked, ``relative_score`` -> relativeScore; ``calibrated`` and ``dbsf`` are
        clear errors: Weaviate does not expose each leg's scores and BM25 statistics),
        ``near_vector`` or ``bm25`` for one leg. The records come with the hits. ``stats`` is
        ignored: Weaviate keeps its own BM25 statistics."""
        from weaviate.classes.query import HybridFusion, MetadataQuery

        request.require_query()
        col = self._scoped(request.tenant)
        where = self._where(request.filter, request.tenant)
        vectors = request.mmr is not None
        common: dict[str, Any] = {
            "filters": where,
            "return_properties": [ID_PROP, TEXT_PROP, META_PROP, TENANT_PROP],
            "include_vector": vectors,
        }
        query_vector = (
            check_vector(request.vector, self.dim, "query vector").tolist()
            if request.runs_dense
            else None
        )
        if request.mode is SearchMode.HYBRID:
            if request.fusion not in _FUSIONS:
                raise InvalidInputError(
                    f"fusion={request.fusion.value!r} is not available in Weaviate (it does "
                    "not expose each leg's scores); use 'relative_score' (a HybridStore's "
                    "default on Weaviate) or 'rrf'"
                )
            limit = request.depth if vectors else request.k
            fusion = getattr(HybridFusion, _FUSIONS[request.fusion])
            got = self._retry(
                lambda: col.query.hybrid(
                    query=request.text,
                    vector=query_vector,
                    alpha=request.alpha,
                    fusion_type=fusion,
                    limit=limit,
                    query_properties=[TEXT_PROP],
                    return_metadata=MetadataQuery(score=True),
                    **common,
                )
            )
            scores = [float(o.metadata.score) for o in got.objects]
        elif request.mode is SearchMode.DENSE:
            got = self._retry(
                lambda: col.query.near_vector(
                    near_vector=query_vector,
                    limit=request.depth,
                    return_metadata=MetadataQuery(distance=True),
                    **common,
                )
            )
            # Weaviate's cosine distance is 1 - cosine similarity.
            scores = [1.0 - float(o.metadata.distance) for o in got.objects]
        else:
            got = self._retry(
                lambda: col.query.bm25(
                    query=request.text,
                    query_properties=[TEXT_PROP],
                    limit=request.depth,
                    return_metadata=MetadataQuery(score=True),
                    **common,
                )
            )
            scores = [float(o.metadata.score) for o in got.objects]
        records = [self._record(o, vectors) for o in got.objects]
        leg = Leg([r.id for r in records], np.asarray(scores, dtype=np.float32))
        answer = ShardAnswer(records=RecordMap({r.id: r for r in records}))
        if request.mode is SearchMode.HYBRID:  # Weaviate's own fusion is the final ranking
            ranked = single_leg(leg, None)
            if request.mmr is not None and request.vector is not None:
                ranked = apply_mmr(answer.records, ranked, request)
            answer.ranked, answer.native = ranked.head(request.k), True
        elif request.mode is SearchMode.DENSE:
            answer.dense = leg
        else:
            answer.lexical = leg
        return answer

    @property
    def store_id(self) -> str:
        """Kept in the collection's settings (created on first use)."""
        if self._store_id is None:
            value = self.read_setting("store_id")
            if value is None:
                value = uuid.uuid4().hex
                self.write_setting("store_id", value)
            self._store_id = value
        return self._store_id

    def _settings(self) -> dict[str, Any]:
        config = self._retry(self._collection.config.get)
        description = getattr(config, "description", None) or "{}"
        try:
            return dict(json.loads(description))
        except ValueError:
            return {}

    def read_setting(self, key: str) -> str | None:
        value = self._settings().get(key)
        return None if value is None else str(value)

    def write_setting(self, key: str, value: str) -> None:
        settings = self._settings()
        settings[key] = value
        self._retry(lambda: self._collection.config.update(description=json.dumps(settings)))

    def close(self) -> None:
        """The client belongs to the caller; nothing to release here."""


def __getattr__(name: str) -> Any:
    """``WeaviateStore``: the name before 0.2 (every engine adapter is now a ``*Shard``)."""
    if name == "WeaviateStore":
        warnings.warn(
            "WeaviateStore is now WeaviateShard (the name goes away in ragkit 0.3)",
            DeprecationWarning,
            stacklevel=2,
        )
        return WeaviateShard
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
