"""Input checks shared by the facade and every backend. Each raises InvalidInputError."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragkit.errors import InvalidInputError
from ragkit.schema import Record, Vector

MAX_ID_LENGTH = 512


def _preview(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_ids(ids: Sequence[object], what: str = "ids") -> list[str]:
    """Ids are non-empty strings, unique within one call."""
    if isinstance(ids, str | bytes):
        raise InvalidInputError(
            f"{what} must be a list of strings, not a single {type(ids).__name__}"
        )
    out: list[str] = []
    seen: set[str] = set()
    for position, record_id in enumerate(ids):
        if not isinstance(record_id, str):
            raise InvalidInputError(
                f"{what}[{position}] is {type(record_id).__name__} {_preview(record_id)}; "
                "ids must be strings"
            )
        if not record_id or len(record_id) > MAX_ID_LENGTH:
            raise InvalidInputError(
                f"{what}[{position}] {_preview(record_id)} must be 1 to {MAX_ID_LENGTH} characters"
            )
        if record_id in seen:
            raise InvalidInputError(f"duplicate id {record_id!r} in one batch; ids must be unique")
        seen.add(record_id)
        out.append(record_id)
    return out


def unique_ids(ids: object, what: str = "ids") -> list[str]:
    """A list of ids to read or delete: strings, duplicates dropped (order kept). A bare
    string is the classic mistake (``delete("abc")`` must not mean a, b and c)."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise InvalidInputError(
            f"{what} must be a list of strings, got {type(ids).__name__} {_preview(ids)}"
        )
    for position, record_id in enumerate(ids):
        if not isinstance(record_id, str):
            raise InvalidInputError(
                f"{what}[{position}] is {type(record_id).__name__} {_preview(record_id)}; "
                "ids must be strings"
            )
    return list(dict.fromkeys(ids))


def check_text(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"{where}: text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"{where}: text is empty or whitespace only; it cannot be indexed")
    return text


def check_tenant(tenant: object) -> str | None:
    if tenant is None:
        return None
    if not isinstance(tenant, str) or not tenant:
        raise InvalidInputError(
            f"tenant must be None or a non-empty string, got {_preview(tenant)}"
        )
    return tenant


def metadata_json(metadata: object, where: str) -> str:
    """Serialize metadata to JSON, rejecting what JSON cannot hold faithfully."""
    if not isinstance(metadata, dict):
        raise InvalidInputError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str):
            raise InvalidInputError(f"{where}: metadata keys must be strings, got {_preview(key)}")
    try:
        return json.dumps(metadata, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{where}: metadata is not JSON-serializable ({exc}); use str, int, float (finite), "
            "bool, None, lists and dicts of these"
        ) from None


def check_vector(vector: Any, dim: int | None, where: str) -> Vector:
    """A finite, non-zero float vector of the store's dimension, as float32."""
    try:
        array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{where}: vector is not numeric: {_preview(vector)}") from None
    if array.ndim != 1 or array.size == 0:
        raise InvalidInputError(f"{where}: vector must be 1-dimensional, got shape {array.shape}")
    if dim is not None and array.shape[0] != dim:
        raise InvalidInputError(
            f"{where}: vector has dimension {array.shape[0]}, the store expects {dim}"
        )
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(f"{where}: vector contains NaN or infinity")
    if not np.any(array):
        raise InvalidInputError(f"{where}: vector is all zeros; cosine similarity is undefined")
    return array


def check_vectors(vectors: Sequence[Any], dim: int | None, ids: Sequence[str]) -> Vector:
    """Validate many vectors at once; returns them as one float32 matrix.

    The fast path checks the whole batch with a few numpy calls; on any problem the offending
    vector is found and checked alone, so the error names its record.
    """
    try:
        matrix = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError):
        matrix = None
    if (
        matrix is not None
        and matrix.ndim == 2
        and matrix.shape[1] > 0
        and (dim is None or matrix.shape[1] == dim)
        and np.isfinite(matrix).all()
        and matrix.any(axis=1).all()
    ):
        return matrix
    first_dim = dim
    for record_id, vector in zip(ids, vectors):
        checked = check_vector(vector, first_dim, f"record {record_id!r}")
        first_dim = checked.shape[0]
    raise InvalidInputError("vectors have inconsistent dimensions")  # pragma: no cover


def check_dense_request(
    vectors: Sequence[Any] | np.ndarray, k: object, tenant: object, dim: int | None
) -> list[Vector]:
    """The checks every backend's ``search_dense_batch`` starts with."""
    check_k(k)
    check_tenant(tenant)
    return [check_vector(v, dim, "query vector") for v in vectors]


def check_k(k: object, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {_preview(k)}")
    return k


def check_records(
    records: Sequence[Record], dim: int | None, *, vectors: bool = True
) -> tuple[list[str], Vector]:
    """Validate a batch before anything is written.

    Returns each record's metadata as JSON and the vectors as one float32 matrix (an empty
    one with ``vectors=False``, for a shard that keeps none).
    """
    if isinstance(records, Record):
        raise InvalidInputError("upsert takes a list of records, not a single Record")
    check_ids([r.id if isinstance(r, Record) else r for r in records])
    payloads: list[str] = []
    for position, record in enumerate(records):
        if not isinstance(record, Record):
            raise InvalidInputError(f"records[{position}] is {type(record).__name__}, not a Record")
        where = f"record {record.id!r}"
        check_text(record.text, where)
        check_tenant(record.tenant)
        if vectors and record.vector is None:
            raise InvalidInputError(f"{where} has no vector; embed it before writing to a shard")
        payloads.append(metadata_json(record.metadata, where))
    if not vectors:
        return payloads, np.empty((len(records), 0), dtype=np.float32)
    matrix = check_vectors([r.vector for r in records], dim, [r.id for r in records])
    return payloads, matrix
