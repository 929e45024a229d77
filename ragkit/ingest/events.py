"""The events of a ragkit stream: what a producer appends (``publish_upsert``,
``publish_delete``, or ``XADD`` with the same fields) and how a consumer reads one back.

Fields: ``op`` (``upsert`` or ``delete``), ``id``, and for an upsert ``text``, optionally
``metadata`` (a JSON object), ``vector`` (float32 little-endian bytes, to skip embedding) and
``tenant``. ``Event.parse`` validates every field (ids and tenants as the store would) and
raises ``InvalidInputError`` or ``ValueError`` for an event that can never be applied.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragkit._validation import check_ids, check_tenant
from ragkit.errors import InvalidInputError

UPSERT, DELETE = "upsert", "delete"


def publish_upsert(
    client: Any,
    stream: str,
    id: str,
    text: str,
    *,
    metadata: dict[str, Any] | None = None,
    vector: Sequence[float] | np.ndarray[Any, Any] | None = None,
    tenant: str | None = None,
) -> str:
    """Append an upsert event; returns its stream id."""
    fields: dict[str, Any] = {"op": UPSERT, "id": id, "text": text}
    if metadata:
        fields["metadata"] = json.dumps(metadata)
    if vector is not None:
        fields["vector"] = np.asarray(vector, dtype="<f4").tobytes()
    if tenant is not None:
        fields["tenant"] = tenant
    return decode_field(client.xadd(stream, fields))


def publish_delete(client: Any, stream: str, id: str, *, tenant: str | None = None) -> str:
    """Append a delete event; returns its stream id."""
    fields = {"op": DELETE, "id": id} | ({"tenant": tenant} if tenant is not None else {})
    return decode_field(client.xadd(stream, fields))


def decode_field(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def printable_field(value: Any) -> str:
    """A field as it can be written to the dead-letter stream, whatever bytes it held."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(slots=True)
class Event:
    entry: str
    op: str
    id: str
    tenant: str | None
    text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray[Any, Any] | None = None

    @property
    def key(self) -> str:
        return json.dumps([self.tenant, self.id])

    @classmethod
    def parse(cls, entry: str, raw: dict[Any, Any]) -> Event:
        fields = {decode_field(k): v for k, v in raw.items()}
        op = decode_field(fields.get("op", b""))
        if op not in (UPSERT, DELETE):
            raise InvalidInputError(f"event {entry}: op must be 'upsert' or 'delete', got {op!r}")
        if "id" not in fields or not decode_field(fields["id"]):
            raise InvalidInputError(f"event {entry}: no 'id'")
        record_id = check_ids([decode_field(fields["id"])], f"event {entry}: id")[0]
        tenant = check_tenant(decode_field(fields["tenant"])) if "tenant" in fields else None
        event = cls(entry, op, record_id, tenant)
        if op == DELETE:
            return event
        if "text" not in fields:
            raise InvalidInputError(f"event {entry}: an upsert needs 'text'")
        raw_text = fields["text"]
        event.text = raw_text.decode("utf-8") if isinstance(raw_text, bytes) else str(raw_text)
        if "metadata" in fields:
            try:
                metadata = json.loads(decode_field(fields["metadata"]))
            except RecursionError:  # nested deeper than any metadata the store accepts
                raise InvalidInputError(f"event {entry}: 'metadata' is nested too deep") from None
            if not isinstance(metadata, dict):
                raise InvalidInputError(f"event {entry}: 'metadata' must be a JSON object")
            event.metadata = metadata
        if "vector" in fields:
            blob = fields["vector"]
            if not isinstance(blob, bytes) or len(blob) % 4:
                raise InvalidInputError(f"event {entry}: 'vector' must be float32 bytes")
            event.vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        return event
