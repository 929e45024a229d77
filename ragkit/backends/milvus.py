"""MilvusShard: ragkit over a Milvus collection (needs the milvus extra).

Milvus (a server, a distributed cluster, or milvus-lite for a local file) keeps everything and
answers both legs: the dense leg from a ``FLOAT_VECTOR`` field (cosine), the lexical leg from
Milvus's own BM25 function over ragkit's analyzed terms (a ``SPARSE_FLOAT_VECTOR`` output with
a sparse inverted index, ``k1 = 1.2``, ``b = 0.75``), and ``fusion="native"`` from
``hybrid_search`` with Milvus's ``WeightedRanker(alpha, 1 - alpha)``. Milvus shards and
replicates a collection itself, so one collection is a whole HybridStore backend.

One collection per store: ``pk`` (the tenant-scoped id), ``rid``, ``tenant`` (the partition
key), ``text``, ``meta`` (the metadata as JSON), ``f`` (typed filter fields, a JSON field),
``terms``, ``dense``, ``sparse``; settings (store id, user settings) live in
``<collection>_ragkit``. Reads use strong consistency, so a write is seen by the next search.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from ragkit.backends._engine import EngineShard, Hits, Scope
from ragkit.backends._remote import (
    PRESENT,
    FilterPrimitives,
    chunks,
    engine_id,
    redact,
)
from ragkit.errors import (
    InvalidInputError,
    MissingDependencyError,
    ShardUnavailableError,
    StoreError,
)
from ragkit.filters import Op
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.schema import Record, Vector

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
_MAX_VARCHAR = 65535
_MAX_LIMIT = 16384  # Milvus's cap on a search's topk and a query's limit
_BATCH = 500
_FIELDS = ["rid", "tenant", "text", "meta"]
_COMPARE = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


class _LiteTimestampNotice(logging.Filter):
    """milvus-lite has no timestamp service: pymilvus's query iterator warns so at every scan
    and uses the client's clock, which is right for a file one process serves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'  # Milvus knows C escapes but not \\u: other characters go as they are


def _pk(tenant: str | None, record_id: str) -> str:
    """The primary key of a record: its tenant-scoped id with ``%``, ``"`` and ``\\``
    percent-encoded, since pymilvus puts keys into expressions unescaped (``delete(ids=)``,
    the query iterator's pages); the ``rid`` field keeps the id itself."""
    key = engine_id(tenant, record_id)
    return key.replace("%", "%25").replace('"', "%22").replace("\\", "%5C")


def _pks(tenant: str | None, ids: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(_pk(tenant, i)) for i in ids) + "]"


def _path(key: str) -> str:
    return f'f["{key}"]'  # field_key keys are [A-Za-z0-9_] only


class MilvusFilters(FilterPrimitives[str]):
    """ragkit filters as Milvus boolean expressions over the typed fields. Every comparison
    is guarded by ``exists``, so a missing key is false, never null, and ``not`` stays
    two-valued (``$ne`` matches a record without the field)."""

    def equals(self, key: str, value: str | float | bool) -> str:
        return f"(exists {_path(key)} and {_path(key)} == {_literal(value)})"

    def has_element(self, key: str, value: str | float | bool) -> str:
        return f"(exists {_path(key)} and json_contains({_path(key)}, {_literal(value)}))"

    def compare(self, key: str, op: Op, value: float) -> str:
        return f"(exists {_path(key)} and {_path(key)} {_COMPARE[op]} {_literal(value)})"

    def substring(self, key: str, value: str) -> str | None:
        if any(c in value for c in "%_\\"):
            return None  # LIKE wildcards: ragkit evaluates it
        return f"(exists {_path(key)} and {_path(key)} like {_literal(f'%{value}%')})"

    def present(self, name: str) -> str:
        return f"json_contains({_path(PRESENT)}, {_literal(name)})"

    def all_of(self, parts: list[str]) -> str:
        return "(" + " and ".join(parts) + ")"

    def any_of(self, parts: list[str]) -> str:
        return "(" + " or ".join(parts) + ")"

    def negate(self, part: str) -> str:
        return f"(not {part})"


class MilvusShard(EngineShard[str]):
    """A Milvus collection as a ragkit backend (see the module docstring).

    Key init args:
        uri: a milvus-lite file (``"./kb.db"``) or a server (``"http://host:19530"``).
        token: ``"user:password"`` or an API key, for a server with authentication.
        collection: the collection name (letters, digits, underscores); created on the
            first write unless ``create=False``, which makes a missing one a ``StoreError``.
        client: a ``pymilvus.MilvusClient`` to use instead of connecting to ``uri``.
        limits: what a write may hold (``ragkit.limits.Limits``).

    Instantiate:
        .. code-block:: python

            from ragkit import HybridStore
            from ragkit.backends import MilvusShard
            store = HybridStore(backend=MilvusShard("http://127.0.0.1:19530", collection="docs"))
            store.search("hybrid search", fusion="native")  # or the default, calibrated
    """

    primitives = MilvusFilters()
    engine = "Milvus"
    per_tenant_stats = False

    @staticmethod
    def _is_transient(exc: BaseException) -> bool:
        if isinstance(exc, ConnectionError | TimeoutError):
            return True
        text = f"{type(exc).__name__} {exc}"
        return any(s in text for s in ("Unavailable", "UNAVAILABLE", "DEADLINE_EXCEEDED"))

    def __init__(
        self,
        uri: str = "./ragkit-milvus.db",
        *,
        token: str | None = None,
        collection: str = "ragkit",
        name: str | None = None,
        client: Any = None,
        create: bool = True,
        retries: int = 3,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise MissingDependencyError("MilvusShard needs the 'milvus' extra") from None
        if not isinstance(collection, str) or not _NAME.fullmatch(collection):
            raise InvalidInputError(
                f"a Milvus collection name is letters, digits and underscores, starting with "
                f"a letter or underscore; got {collection!r}"
            )
        self.uri, self.collection, self.name = redact(str(uri)), collection, name or collection
        self.retries, self.limits = retries, limits
        self._settings_name = f"{collection}_ragkit"
        self._local = client is None and not self.uri.startswith(("http://", "https://", "tcp:"))
        self._dim: int | None = None
        self._loaded: set[str] = set()
        self._owns_client = client is None
        if self._local:
            logger = logging.getLogger("pymilvus.client.iterator.query_iterator")
            if not any(isinstance(f, _LiteTimestampNotice) for f in logger.filters):
                logger.addFilter(_LiteTimestampNotice())
        try:
            self.client = client or MilvusClient(uri=str(uri), token=token or "")
        except Exception as exc:
            raise ShardUnavailableError(f"cannot reach Milvus at {self.uri}: {exc}") from None
        if not create and not self._retry(lambda: self.client.has_collection(collection)):
            raise StoreError(f"Milvus at {self.uri} has no collection {collection!r}")

    # ---- collections ---------------------------------------------------------------------

    def _engine_dim(self) -> int | None:
        if self._dim is None and self._retry(lambda: self.client.has_collection(self.collection)):
            info = self._retry(lambda: self.client.describe_collection(self.collection))
            fields = {f["name"]: f for f in info["fields"]}
            if "dense" not in fields or "terms" not in fields:
                raise StoreError(
                    f"Milvus collection {self.collection!r} at {self.uri} was not made by "
                    "ragkit (it has no 'dense' and 'terms' fields)"
                )
            self._dim = int(fields["dense"]["params"]["dim"])
            self._load(self.collection)
        return self._dim

    def _load(self, collection: str) -> None:
        """Load a collection for reads (one opened again after a restart, or by another
        process, is released until loaded); idempotent."""
        if collection not in self._loaded:
            self._retry(lambda: self.client.load_collection(collection))
            self._loaded.add(collection)

    def _engine_create(self, dim: int) -> None:
        from pymilvus import DataType, Function, FunctionType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=_MAX_VARCHAR)
        schema.add_field("rid", DataType.VARCHAR, max_length=_MAX_VARCHAR)
        schema.add_field("tenant", DataType.VARCHAR, max_length=1024, is_partition_key=True)
        for text_field in ("text", "meta"):
            schema.add_field(text_field, DataType.VARCHAR, max_length=_MAX_VARCHAR)
        schema.add_field("f", DataType.JSON)
        schema.add_field(
            "terms",
            DataType.VARCHAR,
            max_length=_MAX_VARCHAR,
            enable_analyzer=True,
            enable_match=True,  # TEXT_MATCH counts document frequencies
            analyzer_params={"tokenizer": "standard"},  # the terms are analyzed already
        )
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="ragkit_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["terms"],
                output_field_names=["sparse"],
            )
        )
        index = self.client.prepare_index_params()
        dense_index = "FLAT" if self._local else "AUTOINDEX"
        index.add_index("dense", index_type=dense_index, metric_type="COSINE")
        bm25 = {"bm25_k1": 1.2, "bm25_b": 0.75}
        # A server reads the parameters flat, milvus-lite from "params": give both.
        index.add_index(
            "sparse",
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={**bm25, "params": bm25},
        )
        self._retry(
            lambda: self.client.create_collection(
                self.collection, schema=schema, index_params=index, consistency_level="Strong"
            )
        )
        self._dim = dim

    def _engine_settings(self) -> dict[str, str]:
        if not self._retry(lambda: self.client.has_collection(self._settings_name)):
            return {}
        self._load(self._settings_name)
        got = self._retry(
            lambda: self.client.query(
                self._settings_name, filter='key == "settings"', output_fields=["value"]
            )
        )
        return dict(json.loads(got[0]["value"])) if got else {}

    def _engine_put_settings(self, settings: dict[str, str]) -> None:
        from pymilvus import DataType

        if not self._retry(lambda: self.client.has_collection(self._settings_name)):
            schema = self.client.create_schema(auto_id=False)
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("value", DataType.VARCHAR, max_length=_MAX_VARCHAR)
            schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector
            index = self.client.prepare_index_params()
            index.add_index("v", index_type="FLAT", metric_type="L2")
            self._retry(
                lambda: self.client.create_collection(
                    self._settings_name,
                    schema=schema,
                    index_params=index,
                    consistency_level="Strong",
                )
            )
        row = {"key": "settings", "value": json.dumps(settings), "v": [0.0, 0.0]}
        self._retry(lambda: self.client.upsert(self._settings_name, [row]))

    # ---- writes and reads ----------------------------------------------------------------

    def _engine_upsert(self, records: Sequence[Record], terms: Sequence[list[str]]) -> None:
        rows = []
        for record, tokens in zip(records, terms):
            row = self._document(record)
            row.update(pk=_pk(record.tenant, record.id), terms=" ".join(tokens))
            for key in ("pk", "text", "meta", "terms"):
                if len(row[key].encode()) > _MAX_VARCHAR:
                    raise InvalidInputError(
                        f"record {record.id!r}: its {key} is {len(row[key].encode())} bytes, "
                        f"and a Milvus VARCHAR holds {_MAX_VARCHAR}; split the text into "
                        "chunks (ragkit.ingest) or shorten the metadata"
                    )
            row["dense"] = [float(x) for x in record.vector]  # type: ignore[union-attr]
            rows.append(row)
        for batch in chunks(rows, _BATCH):
            self._retry(lambda b=batch: self.client.upsert(self.collection, list(b)))

    def _engine_delete(self, tenant: str | None, ids: Sequence[str]) -> None:
        for batch in chunks(ids, _BATCH):
            expr = f"pk in {_pks(tenant, batch)}"
            self._retry(lambda e=expr: self.client.delete(self.collection, filter=e))

    def _engine_get(
        self, tenant: str | None, ids: Sequence[str], vectors: bool
    ) -> dict[str, Record]:
        fields = _FIELDS + (["dense"] if vectors else [])
        found: dict[str, Record] = {}
        for batch in chunks(ids, _BATCH):
            rows = self._retry(
                lambda b=batch: self.client.query(
                    self.collection, filter=f"pk in {_pks(tenant, b)}", output_fields=fields
                )
            )
            for row in rows:
                found[row["rid"]] = self._record(row, row.get("dense"))
        return found

    def _expr(self, scope: Scope[str]) -> str:
        parts = [f"tenant == {_literal(scope.tenant or '')}"]
        if scope.expr is not None:
            parts.append(scope.expr)
        if scope.ids is not None:
            parts.append(f"pk in {_pks(scope.tenant, scope.ids)}")
        return " and ".join(parts)

    def _count(self, expr: str) -> int:
        got = self._retry(
            lambda: self.client.query(self.collection, filter=expr, output_fields=["count(*)"])
        )
        return int(got[0]["count(*)"])

    def _engine_count(self, scope: Scope[str]) -> int:
        return self._count(self._expr(scope))

    def _rows(self, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        iterator = self._retry(
            lambda: self.client.query_iterator(
                self.collection, batch_size=1000, filter=expr, output_fields=fields
            )
        )
        try:
            while batch := self._retry(iterator.next):
                yield from batch
        finally:
            iterator.close()

    def _engine_ids(self, scope: Scope[str]) -> list[str]:
        return [row["rid"] for row in self._rows(self._expr(scope), ["rid"])]

    def _engine_scan(self, scope: Scope[str] | None, fields: list[str]) -> Iterator[dict[str, Any]]:
        return self._rows("" if scope is None else self._expr(scope), fields)

    # ---- search --------------------------------------------------------------------------

    def _search(self, data: Any, field: str, n: int, scope: Scope[str]) -> Hits:
        got = self._retry(
            lambda: self.client.search(
                self.collection,
                data=[data],
                anns_field=field,
                limit=min(n, _MAX_LIMIT),
                filter=self._expr(scope),
                output_fields=["rid"],
                search_params={"metric_type": "COSINE" if field == "dense" else "BM25"},
            )
        )
        # milvus-lite reports BM25 scores negated; BM25 is never negative.
        sign = abs if field == "sparse" else float
        return [(hit["entity"]["rid"], sign(float(hit["distance"]))) for hit in got[0]]

    def _engine_dense(self, vector: Vector, n: int, scope: Scope[str]) -> Hits:
        return self._search([float(x) for x in vector], "dense", n, scope)

    def _engine_lexical(self, terms: Counter[str], n: int, scope: Scope[str]) -> Hits:
        return self._search(" ".join(terms.elements()), "sparse", n, scope)

    def _engine_hybrid(
        self, vector: Vector, terms: Counter[str], n: int, scope: Scope[str], alpha: float
    ) -> Hits:
        from pymilvus import AnnSearchRequest, WeightedRanker

        expr, limit = self._expr(scope), min(n, _MAX_LIMIT)
        requests = [
            AnnSearchRequest(
                [[float(x) for x in vector]], "dense", {"metric_type": "COSINE"}, limit, expr=expr
            )
        ]
        weights = [alpha]
        if terms:
            query = " ".join(terms.elements())
            requests.append(
                AnnSearchRequest([query], "sparse", {"metric_type": "BM25"}, limit, expr=expr)
            )
            weights.append(1.0 - alpha)
        got = self._retry(
            lambda: self.client.hybrid_search(
                self.collection,
                requests,
                WeightedRanker(*weights, norm_score=True),
                limit=limit,
                output_fields=["rid"],
            )
        )
        return [(hit["entity"]["rid"], float(hit["distance"])) for hit in got[0]]

    def _engine_doc_freqs(
        self, tenant: str | None, terms: Sequence[str]
    ) -> tuple[int, dict[str, int]]:
        # Milvus's BM25 statistics span the collection, every tenant included.
        return self._count(""), {t: self._count(f"TEXT_MATCH(terms, {_literal(t)})") for t in terms}

    def _engine_size(self) -> int:
        stats = self._retry(lambda: self.client.get_collection_stats(self.collection))
        return int(stats["row_count"])
