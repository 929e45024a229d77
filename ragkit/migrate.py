"""Copy a store between backends: resumable, verified.

URIs:
    ``PATH`` or ``local:PATH``          a LocalShard directory (or a sharded store directory)
    ``chroma:PATH#COLLECTION``          an embedded Chroma (PersistentClient) collection
    ``chroma+http://HOST:PORT/COLLECTION``  a collection on a ``chroma run`` server
    ``weaviate+http://HOST:PORT/COLLECTION[?grpc=PORT]``  a Weaviate collection
    ``milvus+file://PATH#COLLECTION``   a collection in a milvus-lite file
    ``milvus+http://[USER:PASSWORD@]HOST:PORT/COLLECTION``  a collection on a Milvus server
    ``qdrant+file://PATH#COLLECTION``   a collection in a Qdrant local-mode directory
    ``qdrant+http://[:API_KEY@]HOST:PORT/COLLECTION``  a collection on a Qdrant server

Records are copied in id order per tenant, in batches; after each batch the position is
written to the target, so an interrupted migration resumes where it stopped (re-copying at
most one batch, which is harmless: upserts are idempotent). At the end the counts per tenant
are compared and a sample of records is checked field by field.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ragkit.backends._remote import redact
from ragkit.backends.base import EMBEDDER_SETTING, Shard
from ragkit.errors import InvalidInputError, RagkitError
from ragkit.schema import Record


class MigrationError(RagkitError):
    """The copy finished but verification found a difference."""


def _basic_auth(parsed: Any) -> dict[str, str]:
    if parsed.username is None and parsed.password is None:
        return {}
    token = base64.b64encode(f"{parsed.username or ''}:{parsed.password or ''}".encode())
    return {"Authorization": f"Basic {token.decode()}"}


def open_uri(uri: str) -> Shard:
    """A shard for a store URI (see the module docstring)."""
    if uri.startswith("chroma+http://") or uri.startswith("chroma+https://"):
        import chromadb

        from ragkit.backends.chroma import ChromaShard

        parsed = urlparse(uri.removeprefix("chroma+"))
        collection = parsed.path.strip("/")
        if not parsed.hostname or not collection:
            raise InvalidInputError(f"expected chroma+http://HOST:PORT/COLLECTION, got {uri!r}")
        client = chromadb.HttpClient(
            host=parsed.hostname,
            port=parsed.port or 8000,
            ssl=parsed.scheme == "https",
            headers=_basic_auth(parsed),
        )
        return ChromaShard(client, collection)
    if uri.startswith("weaviate+http://") or uri.startswith("weaviate+https://"):
        import weaviate

        from ragkit.backends.weaviate import WeaviateShard

        parsed = urlparse(uri.removeprefix("weaviate+"))
        collection = parsed.path.strip("/")
        if not parsed.hostname or not collection:
            raise InvalidInputError(f"expected weaviate+http://HOST:PORT/COLLECTION, got {uri!r}")
        grpc = dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p).get("grpc")
        auth = None
        if parsed.password:  # weaviate+http://:API_KEY@host:port/Collection
            from weaviate.classes.init import Auth

            auth = Auth.api_key(parsed.password)
        weaviate_client = weaviate.connect_to_custom(
            http_host=parsed.hostname,
            http_port=parsed.port or 8080,
            http_secure=parsed.scheme == "https",
            grpc_host=parsed.hostname,
            grpc_port=int(grpc or 50051),
            grpc_secure=parsed.scheme == "https",
            auth_credentials=auth,
        )
        return WeaviateShard(weaviate_client, collection)
    if uri.startswith(("milvus+", "qdrant+")):
        return _open_engine(uri)
    if uri.startswith("chroma:"):
        import chromadb

        from ragkit.backends.chroma import ChromaShard

        path, _, collection = uri.removeprefix("chroma:").partition("#")
        if not path or not collection:
            raise InvalidInputError(f"expected chroma:PATH#COLLECTION, got {uri!r}")
        return ChromaShard(chromadb.PersistentClient(path=path), collection)
    path = uri.removeprefix("local:")
    if "://" in path:
        raise InvalidInputError(
            f"unknown store URI {redact(uri)!r}; use a directory, chroma:PATH#COLLECTION, "
            "chroma+http://HOST:PORT/COLLECTION, weaviate+http://HOST:PORT/COLLECTION, "
            "milvus+file://PATH#COLLECTION, milvus+http://HOST:PORT/COLLECTION, "
            "qdrant+file://PATH#COLLECTION or qdrant+http://HOST:PORT/COLLECTION"
        )
    from ragkit._opening import open_path

    return open_path(path)


def _open_engine(uri: str) -> Shard:
    """``milvus+file://``, ``milvus+http(s)://``, ``qdrant+file://``, ``qdrant+http(s)://``."""
    engine, _, rest = uri.partition("+")
    if rest.startswith("file://"):
        path, _, collection = rest.removeprefix("file://").partition("#")
        if not path or not collection:
            raise InvalidInputError(f"expected {engine}+file://PATH#COLLECTION, got {uri!r}")
        if engine == "milvus":
            from ragkit.backends.milvus import MilvusShard

            return MilvusShard(path, collection=collection)
        from ragkit.backends.qdrant import QdrantShard

        return QdrantShard(path=path, collection=collection)
    parsed = urlparse(rest)
    collection = parsed.path.strip("/")
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not collection:
        raise InvalidInputError(
            f"expected {engine}+http://HOST:PORT/COLLECTION or {engine}+file://PATH#COLLECTION, "
            f"got {redact(uri)!r}"
        )
    default_port = 19530 if engine == "milvus" else 6333
    server = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or default_port}"
    if engine == "milvus":
        from ragkit.backends.milvus import MilvusShard

        token = f"{parsed.username}:{parsed.password}" if parsed.username else parsed.password
        return MilvusShard(server, token=token, collection=collection)
    from ragkit.backends.qdrant import QdrantShard

    return QdrantShard(url=server, api_key=parsed.password, collection=collection)


@dataclass(frozen=True, slots=True)
class MigrationReport:
    copied: int
    total: int
    resumed_from: int
    verified_sample: int


def _plan(source: Shard) -> list[tuple[str | None, str]]:
    tenants = sorted(source.tenants(), key=lambda t: (t is not None, t or ""))
    return [(tenant, rid) for tenant in tenants for rid in sorted(source.ids(tenant=tenant))]


def migrate(
    source: Shard,
    target: Shard,
    *,
    key: str,
    batch_size: int = 500,
    sample: int = 200,
    on_batch: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Copy every record of ``source`` into ``target``; ``key`` names this migration for
    resuming (the source URI; stored without its credentials)."""
    progress_key = f"migrate:{redact(key)}"
    plan = _plan(source)
    done = int(json.loads(target.read_setting(progress_key) or '{"done": 0}')["done"])
    start = done
    embedder = source.read_setting(EMBEDDER_SETTING)
    if embedder is not None and target.read_setting(EMBEDDER_SETTING) is None:
        target.write_setting(EMBEDDER_SETTING, embedder)
    for offset in range(start, len(plan), batch_size):
        target.upsert(_read(source, plan[offset : offset + batch_size]))
        done = min(len(plan), offset + batch_size)
        target.write_setting(progress_key, json.dumps({"done": done, "total": len(plan)}))
        if on_batch is not None:
            on_batch(done, len(plan))
    checked = verify(source, target, plan, sample)
    return MigrationReport(done - start, len(plan), start, checked)


def verify(source: Shard, target: Shard, plan: list[tuple[str | None, str]], sample: int) -> int:
    for tenant in {t for t, _ in plan}:
        have, want = target.count(tenant=tenant), source.count(tenant=tenant)
        if have != want:
            raise MigrationError(f"tenant {tenant!r}: target has {have} records, source {want}")
    keys = random.Random(0).sample(plan, min(sample, len(plan)))
    expected = {(r.tenant, r.id): r for r in _read(source, keys)}
    copied = _read(target, keys)
    if len(copied) != len(keys):
        raise MigrationError(f"{len(keys) - len(copied)} sampled records are missing in the target")
    for record in copied:
        source_record = expected[(record.tenant, record.id)]
        same = (record.text, record.metadata, record.tenant) == (
            source_record.text,
            source_record.metadata,
            source_record.tenant,
        )
        if not same or not _same_vector(record, source_record):
            raise MigrationError(f"record {record.id!r} differs between source and target")
    return len(keys)


def _read(shard: Shard, keys: list[tuple[str | None, str]]) -> list[Record]:
    """Records by (tenant, id), with vectors."""
    by_tenant: dict[str | None, list[str]] = {}
    for tenant, rid in keys:
        by_tenant.setdefault(tenant, []).append(rid)
    return [
        record
        for tenant, ids in by_tenant.items()
        for record in shard.get(ids, tenant=tenant, include_vectors=True)
    ]


def _same_vector(a: Record, b: Record) -> bool:
    if a.vector is None or b.vector is None:
        return a.vector is None and b.vector is None
    return bool(np.allclose(a.vector, b.vector, rtol=1e-6, atol=1e-7))
