"""What every remote engine adapter shares (Chroma, Weaviate, the next one).

- retries of transient errors (tenacity, exponential backoff);
- record ids per tenant: an engine keeps one id space per collection, so a record of tenant
  ``t`` is stored as ``"t" + US + id`` (US, the ASCII unit separator, cannot occur in ragkit
  ids or tenants, so the mapping is one-to-one); the default tenant keeps the plain id;
- engine payloads: the top-level scalar metadata fields an engine can filter on natively,
  plus the ragkit id, tenant and the whole metadata as JSON, and back to a ``Record``;
- chunking of long id lists into the engine's batch size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from ragkit.schema import Record, Vector

T = TypeVar("T")
_SEPARATOR = "\x1f"


def call_with_retries(
    call: Callable[[], Any], is_transient: Callable[[BaseException], bool], retries: int
) -> Any:
    """``call()``, retried up to ``retries`` times while it raises a transient error."""
    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable")  # pragma: no cover


def engine_id(tenant: str | None, record_id: str) -> str:
    """The id a record of ``tenant`` has in an engine's single id space."""
    return record_id if tenant is None else f"{tenant}{_SEPARATOR}{record_id}"


def ragkit_id(tenant: str | None, stored: str) -> str:
    """The ragkit id back from ``engine_id``."""
    return stored if tenant is None else stored.removeprefix(f"{tenant}{_SEPARATOR}")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _filterable(value: object) -> bool:
    scalar = (str, int, float, bool)
    if isinstance(value, scalar):
        return True
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, scalar) for v in value)
        and len({type(v) for v in value}) == 1
    )


@dataclass(frozen=True, slots=True)
class PayloadKeys:
    """The names an engine stores ragkit's own fields under (each engine has its rules:
    Weaviate properties cannot start with an underscore, say)."""

    id: str
    tenant: str
    metadata: str

    def payload(self, record: Record) -> dict[str, Any]:
        """Scalar metadata fields the engine can filter on, plus ragkit's fields."""
        reserved = {self.id, self.tenant, self.metadata}
        fields = {k: v for k, v in record.metadata.items() if k not in reserved and _filterable(v)}
        fields[self.id] = record.id
        fields[self.tenant] = record.tenant or ""
        fields[self.metadata] = json.dumps(record.metadata, ensure_ascii=False)
        return fields

    def record(
        self, stored_id: str, text: str, payload: Mapping[str, Any], vector: Vector | None
    ) -> Record:
        """A ``Record`` from what the engine returns (older payloads lack the ragkit id: the
        engine id is the ragkit id there)."""
        tenant = payload.get(self.tenant) or None
        rid = payload.get(self.id) or ragkit_id(tenant, stored_id)
        metadata = json.loads(payload.get(self.metadata) or "{}")
        return Record(rid, text, metadata, vector, tenant)
