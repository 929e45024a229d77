"""Validation of search parameters into one immutable request object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragkit._validation import check_k, check_tenant
from ragkit.errors import InvalidInputError
from ragkit.filters import Filter, parse_filter
from ragkit.fusion import Fusion
from ragkit.schema import SearchMode

DEFAULT_CANDIDATES = 100


def _enum(cls: type[SearchMode] | type[Fusion], value: object, name: str) -> Any:
    try:
        return cls(str(value)) if isinstance(value, str) else cls(value)  # type: ignore[arg-type]
    except ValueError:
        accepted = ", ".join(repr(m.value) for m in cls)
        raise InvalidInputError(
            f"{name}={value!r} is not supported; accepted: {accepted}"
        ) from None


def _unit_interval(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class SearchParams:
    """A validated search request, minus the query itself."""

    k: int
    mode: SearchMode
    filter: Filter | None
    fusion: Fusion
    alpha: float
    candidates: int
    mmr: float | None
    tenant: str | None

    @classmethod
    def build(
        cls,
        *,
        k: object,
        mode: object,
        filter: Any,
        fusion: object,
        alpha: object,
        candidates: object,
        mmr: object,
        tenant: object,
    ) -> SearchParams:
        k_checked = check_k(k)
        n_candidates = (
            DEFAULT_CANDIDATES if candidates is None else check_k(candidates, "candidates")
        )
        return cls(
            k=k_checked,
            mode=_enum(SearchMode, mode, "mode"),
            filter=parse_filter(filter),
            fusion=_enum(Fusion, fusion, "fusion"),
            alpha=_unit_interval(alpha, "alpha"),
            candidates=max(n_candidates, k_checked),
            mmr=None if mmr is None else _unit_interval(mmr, "mmr"),
            tenant=check_tenant(tenant),
        )


def check_query(query: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"query must be a non-empty string, got {query!r}")
    return query
