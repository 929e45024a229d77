"""What every remote engine adapter shares (Chroma, Weaviate, the next one).

- retries of transient errors (tenacity, exponential backoff);
- record ids per tenant: an engine keeps one id space per collection, so a record of tenant
  ``t`` is stored as ``"t" + US + id`` (US, the ASCII unit separator, cannot occur in ragkit
  ids or tenants, so the mapping is one-to-one); the default tenant keeps the plain id;
- engine payloads: the top-level scalar metadata fields an engine can filter on natively,
  plus the ragkit id, tenant and the whole metadata as JSON, and back to a ``Record``;
- chunking of long id lists into the engine's batch size;
- typed filter fields: metadata copied under one key per field and type (``s_`` strings,
  ``n_`` numbers, ``b_`` bools, ``ls_ ln_ lb_`` list elements, ``k_`` the fields present),
  so an engine's loosely typed comparisons keep ragkit's filter semantics (bools never equal
  numbers; ``$ne`` matches a missing field), and ``translate``, which turns a filter into an
  engine's expression through a few primitives, or says it cannot (then the adapter restricts
  by the ids ragkit's own evaluator finds);
- ``ordered_leg`` (equal scores by id) and ``redact`` (a URI without its credentials).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from ragkit.filters import RANGE_OPS, And, Compare, Filter, Not, Op
from ragkit.schema import Leg, Record, Vector

T = TypeVar("T")
E = TypeVar("E")
_SEPARATOR = "\x1f"
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: the typed key listing the fields a record has (present and not None)
PRESENT = "k_"


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


def ordered_leg(ids: Sequence[str], scores: Sequence[float], k: int) -> Leg:
    """The top ``k`` by score, equal scores ordered by id (the order every backend keeps)."""
    values = np.asarray(scores, dtype=np.float32)
    order = np.lexsort((np.array(ids, dtype=object), -values))[:k]
    return Leg([ids[i] for i in order.tolist()], values[order])


def redact(uri: str) -> str:
    """The URI without its credentials (``user:secret@``), for printing and storing."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


# ---- typed filter fields -----------------------------------------------------------------


def field_key(kind: str, name: str) -> str:
    """The engine key of metadata field ``name`` holding values of ``kind`` (``s n b ls ln
    lb``): ``kind_name`` for plain names, ``kindX<hex>`` for any other, so every name is a
    safe key and no two names share one."""
    if _IDENTIFIER.fullmatch(name):
        return f"{kind}_{name}"
    return f"{kind}X{name.encode().hex()}"


def _kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int | float):
        return "n"
    return "s" if isinstance(value, str) else None


def typed_fields(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The filterable copy of a record's metadata (see the module docstring)."""
    out: dict[str, Any] = {}
    present: list[str] = []
    for name, value in metadata.items():
        if value is None:
            continue
        present.append(name)
        kind = _kind(value)
        if kind is not None:
            out[field_key(kind, name)] = value
        elif isinstance(value, list):
            for kind in ("s", "n", "b"):
                items = [v for v in value if _kind(v) == kind]
                if items:
                    out[field_key("l" + kind, name)] = items
    out[PRESENT] = present
    return out


class FilterPrimitives(Generic[E]):
    """What an engine's filter language offers, each returning an engine expression, or
    ``None`` where the engine cannot say it exactly. The keys are ``field_key`` keys."""

    def equals(self, key: str, value: str | float | bool) -> E | None:
        """The scalar at ``key`` equals ``value`` (false where the key is missing)."""
        raise NotImplementedError

    def has_element(self, key: str, value: str | float | bool) -> E | None:
        """The list at ``key`` has ``value`` as an element."""
        raise NotImplementedError

    def compare(self, key: str, op: Op, value: float) -> E | None:
        """The number at ``key`` compared with ``value`` (``$gt $gte $lt $lte``)."""
        raise NotImplementedError

    def substring(self, key: str, value: str) -> E | None:
        """The string at ``key`` holds ``value``."""
        return None

    def present(self, name: str) -> E | None:
        """Field ``name`` is present and not None (the ``k_`` list has it)."""
        raise NotImplementedError

    def all_of(self, parts: list[E]) -> E:
        raise NotImplementedError

    def any_of(self, parts: list[E]) -> E:
        raise NotImplementedError

    def negate(self, part: E) -> E:
        raise NotImplementedError


def translate(flt: Filter, engine: FilterPrimitives[E]) -> E | None:
    """``flt`` in the engine's filter language, or ``None`` if some part of it cannot be said
    exactly there (then the adapter restricts by the ids ``ragkit.filters.matches`` finds)."""
    if isinstance(flt, Compare):
        return _translate_compare(flt, engine)
    if isinstance(flt, Not):
        inner = translate(flt.child, engine)
        return None if inner is None else engine.negate(inner)
    parts = [translate(child, engine) for child in flt.children]
    if not parts or any(p is None for p in parts):
        return None
    found = [p for p in parts if p is not None]
    return engine.all_of(found) if isinstance(flt, And) else engine.any_of(found)


def _translate_compare(cond: Compare, engine: FilterPrimitives[E]) -> E | None:
    op, name, value = cond.op, cond.field, cond.value
    if op is Op.EXISTS:
        present = engine.present(name)
        return present if present is None or value else engine.negate(present)
    if op in (Op.EQ, Op.NE, Op.IN, Op.NIN):
        values = list(value) if op in (Op.IN, Op.NIN) else [value]
        if not values or any(isinstance(v, tuple) for v in values):
            return None  # a whole list to equal, or an empty $in: ragkit evaluates it
        parts = [engine.equals(field_key(_kind(v) or "s", name), v) for v in values]
        if any(p is None for p in parts):
            return None
        found = [p for p in parts if p is not None]
        either = found[0] if len(found) == 1 else engine.any_of(found)
        return either if op in (Op.EQ, Op.IN) else engine.negate(either)
    if op is Op.CONTAINS:
        kind = _kind(value) or "s"
        element = engine.has_element(field_key("l" + kind, name), value)
        inside = engine.substring(field_key("s", name), value) if kind == "s" else None
        if element is None or (kind == "s" and inside is None):
            return None
        return element if inside is None else engine.any_of([element, inside])
    if op in RANGE_OPS and not isinstance(value, str):
        return engine.compare(field_key("n", name), op, value)
    return None  # string ranges, $icontains, $lcontains: ragkit evaluates them
