"""Input checks shared by the facade and every backend. Each raises InvalidInputError."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np

from ragkit.errors import InvalidInputError
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.schema import Record, Vector

_CONTROL = {chr(c) for c in range(0x20)} | {"\x7f"}


def is_clean_name(value: str) -> bool:
    """Valid Unicode (no lone surrogates: undecodable file-name bytes arrive as those) and
    no control characters: what an id, a tenant or a source name may hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return _CONTROL.isdisjoint(value)


def _preview(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_string(value: str, what: str) -> str:
    """A string that can be stored and sent: valid Unicode (no lone surrogates, which
    cannot be encoded as UTF-8 and would fail deep inside SQLite or an engine's client)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(
                f"{what} is not valid Unicode (a lone surrogate at position {exc.start}): "
                f"{_preview(value)}"
            ) from None
    return value


def _check_name(value: object, what: str, max_chars: int, kind: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{what} is {type(value).__name__} {_preview(value)}; {kind}s must be strings"
        )
    if not value or len(value) > max_chars:
        raise InvalidInputError(f"{what} {_preview(value)} must be 1 to {max_chars} characters")
    if not _CONTROL.isdisjoint(value):
        raise InvalidInputError(f"{what} {_preview(value)} contains a control character")
    return check_string(value, what)


def check_ids(
    ids: Sequence[object], what: str = "ids", limits: Limits = DEFAULT_LIMITS
) -> list[str]:
    """Ids to write: non-empty strings without control characters, unique within one call."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise InvalidInputError(
            f"{what} must be a list of strings, got {type(ids).__name__} {_preview(ids)}"
        )
    out: list[str] = []
    seen: set[str] = set()
    for position, record_id in enumerate(ids):
        checked = _check_name(record_id, f"{what}[{position}]", limits.max_id_chars, "id")
        if checked in seen:
            raise InvalidInputError(f"duplicate id {checked!r} in one batch; ids must be unique")
        seen.add(checked)
        out.append(checked)
    return out


def unique_ids(ids: object, what: str = "ids", limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """A list of ids to read or delete: strings, duplicates dropped (order kept). A bare
    string is the classic mistake (``delete("abc")`` must not mean a, b and c)."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise InvalidInputError(
            f"{what} must be a list of strings, got {type(ids).__name__} {_preview(ids)}"
        )
    for position, record_id in enumerate(ids):
        _check_name(record_id, f"{what}[{position}]", limits.max_id_chars, "id")
    return list(dict.fromkeys(ids))


def as_list(value: object, what: str) -> list[Any]:
    """``value`` as a list: any iterable but a string, bytes or a dict."""
    if isinstance(value, str | bytes | dict):
        raise InvalidInputError(
            f"{what} must be a list, not a single {type(value).__name__}: {_preview(value)}"
        )
    try:
        return list(cast(Iterable[Any], value))
    except TypeError:
        raise InvalidInputError(f"{what} must be a list, got {_preview(value)}") from None


def check_text(text: object, where: str, limits: Limits = DEFAULT_LIMITS) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"{where}: text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"{where}: text is empty or whitespace only; it cannot be indexed")
    if len(text) > limits.max_text_chars:
        raise InvalidInputError(
            f"{where}: text has {len(text):,} characters; the limit is {limits.max_text_chars:,} "
            "(split long documents into chunks, or raise Limits.max_text_chars)"
        )
    return check_string(text, f"{where}: text")


def check_query(query: object, limits: Limits = DEFAULT_LIMITS) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"query must be a non-empty string, got {_preview(query)}")
    if len(query) > limits.max_query_chars:
        raise InvalidInputError(
            f"query has {len(query):,} characters; the limit is {limits.max_query_chars:,}"
        )
    return check_string(query, "query")


def check_tenant(tenant: object, limits: Limits = DEFAULT_LIMITS) -> str | None:
    if tenant is None:
        return None
    if not isinstance(tenant, str):
        raise InvalidInputError(
            f"tenant must be None or a non-empty string, got {_preview(tenant)}"
        )
    return _check_name(tenant, "tenant", limits.max_tenant_chars, "tenant")


def check_int(value: int, what: str, limits: Limits = DEFAULT_LIMITS) -> int:
    if abs(value) > limits.max_int:
        raise InvalidInputError(
            f"{what}: the integer {_preview(value, 40)} is beyond +/-{limits.max_int} "
            "(2**53: larger integers cannot be compared exactly as numbers); store it as a string"
        )
    return value


def _check_value(value: object, where: str, limits: Limits, depth: int, keys: list[int]) -> None:
    if depth > limits.max_metadata_depth:
        raise InvalidInputError(
            f"{where}: metadata nests deeper than {limits.max_metadata_depth} levels"
        )
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        check_int(value, f"{where}: metadata", limits)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(
                f"{where}: metadata holds {value!r}; numbers must be finite (JSON has no "
                "NaN or infinity)"
            )
    elif isinstance(value, str):
        check_string(value, f"{where}: a metadata value")
    elif isinstance(value, list | tuple):
        for item in value:
            _check_value(item, where, limits, depth + 1, keys)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"{where}: metadata keys must be strings, got {_preview(key)}"
                )
            check_string(key, f"{where}: a metadata key")
            keys[0] += 1
            if keys[0] > limits.max_metadata_keys:
                raise InvalidInputError(
                    f"{where}: metadata has more than {limits.max_metadata_keys} keys "
                    "(Limits.max_metadata_keys)"
                )
            _check_value(item, where, limits, depth + 1, keys)
    else:
        raise InvalidInputError(
            f"{where}: metadata holds {type(value).__name__} {_preview(value)}, which is not "
            "JSON; use str, int, float (finite), bool, None, lists and dicts of these"
        )


def metadata_json(metadata: object, where: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """Validate metadata and serialize it to JSON (what is stored)."""
    if not isinstance(metadata, dict):
        raise InvalidInputError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    _check_value(metadata, where, limits, 0, [0])
    encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    if len(encoded.encode("utf-8")) > limits.max_metadata_bytes:
        raise InvalidInputError(
            f"{where}: metadata is {len(encoded.encode('utf-8')):,} bytes as JSON; the limit is "
            f"{limits.max_metadata_bytes:,} (Limits.max_metadata_bytes)"
        )
    return encoded


def check_batch(size: int, limits: Limits = DEFAULT_LIMITS) -> None:
    if size > limits.max_batch:
        raise InvalidInputError(
            f"{size:,} records in one call; the limit is {limits.max_batch:,} "
            "(write in batches, or raise Limits.max_batch)"
        )


def check_dim(vector: Vector, dim: int | None, where: str) -> None:
    """A 1-dimensional vector has the store's dimension (``None``: any)."""
    if dim is not None and vector.shape[0] != dim:
        raise InvalidInputError(
            f"{where}: vector has dimension {vector.shape[0]}, the store expects {dim}"
        )


def check_vector(vector: Any, dim: int | None, where: str) -> Vector:
    """A finite, non-zero float vector of the store's dimension, as float32."""
    try:
        array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{where}: vector is not numeric: {_preview(vector)}") from None
    if array.ndim != 1 or array.size == 0:
        raise InvalidInputError(f"{where}: vector must be 1-dimensional, got shape {array.shape}")
    check_dim(array, dim, where)
    # The common case in one pass (a query pays this on every search): the sum of squares,
    # in float64 where no float32 overflows it, is finite and positive exactly when every
    # value is finite and one is not zero.
    wide = array.astype(np.float64)
    if 0.0 < float(wide @ wide) < math.inf:
        return array
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


def check_positive(**values: object) -> None:
    """Each keyword's value is a positive integer (not a bool), else ``InvalidInputError``
    naming it: ``check_positive(batch_size=batch_size, queue_size=queue_size)``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {_preview(value)}")


def check_k(k: object, name: str = "k", limits: Limits | None = DEFAULT_LIMITS) -> int:
    """A positive integer, at most ``limits.max_k`` (``limits=None``: no upper bound)."""
    top = None if limits is None else limits.max_k
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or (top is not None and k > top):
        bound = "a positive integer" if top is None else f"an integer from 1 to {top:,}"
        raise InvalidInputError(f"{name} must be {bound} (Limits.max_k), got {_preview(k)}")
    return k


def check_record_list(records: object, limits: Limits = DEFAULT_LIMITS) -> Sequence[Record]:
    """Records to write: a list of ``Record`` with valid ids, texts and tenants, each
    (tenant, id) once. Metadata and vectors are checked by the caller."""
    if isinstance(records, Record) or not isinstance(records, Sequence):
        raise InvalidInputError(f"upsert takes a list of records, got {type(records).__name__}")
    check_batch(len(records), limits)
    seen: set[tuple[str | None, str]] = set()
    for position, record in enumerate(records):
        if not isinstance(record, Record):
            raise InvalidInputError(f"records[{position}] is {type(record).__name__}, not a Record")
        rid = _check_name(record.id, f"records[{position}].id", limits.max_id_chars, "id")
        key = (check_tenant(record.tenant, limits), rid)
        if key in seen:
            raise InvalidInputError(f"duplicate id {rid!r} in one batch; ids must be unique")
        seen.add(key)
        check_text(record.text, f"record {rid!r}", limits)
    return records


def check_records(
    records: Sequence[Record],
    dim: int | None,
    *,
    vectors: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[list[str], Vector]:
    """Validate a batch before anything is written.

    Returns each record's metadata as JSON and the vectors as one float32 matrix (an empty
    one with ``vectors=False``, for a shard that keeps none).
    """
    payloads = [
        metadata_json(record.metadata, f"record {record.id!r}", limits)
        for record in check_record_list(records, limits)
    ]
    if vectors:
        for record in records:
            if record.vector is None:
                raise InvalidInputError(
                    f"record {record.id!r} has no vector; embed it before writing to a shard"
                )
    if not vectors:
        return payloads, np.empty((len(records), 0), dtype=np.float32)
    matrix = check_vectors([r.vector for r in records], dim, [r.id for r in records])
    return payloads, matrix
