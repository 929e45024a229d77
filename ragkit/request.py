"""The one search request every layer passes on: HybridStore -> router -> backend.

A ``SearchRequest`` is validated when it is built, whoever builds it, and is never restated:
the facade, the cache key, the retrievers, the vector-store adapters, the CLI and every backend
read the same fields. Adding a search option is a one-line change here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np

from ragkit._validation import check_k, check_query, check_string, check_tenant, check_vector
from ragkit.decay import Decay
from ragkit.errors import InvalidInputError
from ragkit.filters import Filter, filter_to_json, parse_filter
from ragkit.fusion import DEFAULT_RRF_K, Fusion
from ragkit.limits import DEFAULT_LIMITS, Limits
from ragkit.query_syntax import ParsedQuery, QuerySyntax, parse_query
from ragkit.rerank import RerankFunction, as_reranker
from ragkit.schema import SearchMode, Vector

DEFAULT_CANDIDATES = 100


_Enum = type[SearchMode] | type[Fusion] | type[QuerySyntax]


def _enum(cls: _Enum, value: object, name: str) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)  # type: ignore[arg-type]
    except ValueError:
        accepted = ", ".join(repr(m.value) for m in cls)
        raise InvalidInputError(
            f"{name}={value!r} is not supported; accepted: {accepted}"
        ) from None


def _unit_interval(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


#: A store's default ``field_weights`` when it indexes ``title`` as a text field: on SciFact,
#: CISI and Cranfield no title weight measured (0.5, 1, 2) is worse than the joined text by
#: a paired bootstrap, each is better on Cranfield, and 2 is best on average
#: (BENCHMARKS.md, "Fields: titles as a text field").
TITLE_FIELD_WEIGHTS = {"text": 1.0, "title": 2.0}


def _field_weights(value: object) -> dict[str, float]:
    """Weights per text field: names to non-negative numbers, at least one above 0."""
    ok = isinstance(value, dict) and bool(value)
    if ok:
        assert isinstance(value, dict)
        for name, weight in value.items():
            ok = ok and isinstance(name, str) and bool(name)
            ok = ok and not isinstance(weight, bool) and isinstance(weight, int | float)
            ok = ok and math.isfinite(weight) and weight >= 0
        ok = ok and any(w > 0 for w in value.values())
    if not ok:
        raise InvalidInputError(
            "field_weights must map text field names to numbers >= 0, at least one above 0 "
            f"(e.g. {{'title': 2.0, 'text': 1.0}}), got {value!r:.80}"
        )
    assert isinstance(value, dict)
    return {name: float(weight) for name, weight in sorted(value.items())}


@dataclass(frozen=True, slots=True, eq=False)
class SearchRequest:
    """A validated search: the query (text, vector or both) and every option.

    Build one with keyword arguments; strings are accepted for ``mode`` and ``fusion`` and a
    filter dict for ``filter`` (it is parsed and validated). Invalid values raise
    ``InvalidInputError`` naming the value and what is accepted.

    ``candidates`` is how many hits each leg contributes to fusion (and the MMR pool); ``k``
    is how many hits come back. ``depth`` is how many candidates a backend returns per leg.

    ``field_weights`` scores the lexical leg with BM25F over named text fields
    (``{"title": 2.0, "text": 1.0}``; a LocalShard built with ``text_fields``). The options
    after it shape the answer once the backend has ranked: ``decay``
    (``ragkit.decay``) and ``rerank`` (``ragkit.rerank``) rescore the fused pool,
    ``group_by`` / ``group_size`` group it by a metadata field (``k`` is then the number of
    groups), ``expand`` adds each hit's neighbouring chunks and ``highlight`` the matched
    spans (``ragkit.grouping``, ``ragkit.highlight``). ``query_syntax="simple"`` reads
    phrases and operators in the text (``ragkit.query_syntax``).
    """

    text: str | None = None
    vector: Vector | None = None
    k: int = 10
    mode: SearchMode = SearchMode.HYBRID
    filter: Filter | None = None
    fusion: Fusion = Fusion.CALIBRATED
    alpha: float = 0.5
    candidates: int = DEFAULT_CANDIDATES
    mmr: float | None = None
    tenant: str | None = None
    rrf_k: int = DEFAULT_RRF_K
    field_weights: dict[str, float] | None = None
    group_by: str | None = None
    group_size: int = 1
    expand: int = 0
    highlight: bool = False
    decay: Decay | None = None
    rerank: RerankFunction | None = None
    query_syntax: QuerySyntax = QuerySyntax.PLAIN
    #: the query parsed (``query_syntax="simple"``), else ``None``
    parsed: ParsedQuery | None = field(default=None, init=False)
    #: what a backend runs (``core``) keeps the simple query's constraints here, so one that
    #: can (a LocalShard, from term positions) restricts both legs to the records meeting
    #: them; the store drops any hit that does not, whatever the backend
    required: ParsedQuery | None = field(default=None, metadata={"internal": True})
    #: the store's ``Limits`` to check the query, ``k``, ``candidates``, the filter and the
    #: tenant against (the one place they are checked); ``None``: no upper bounds on ``k``
    #: and ``candidates``, the default limits for the rest
    limits: InitVar[Limits | None] = None

    def __post_init__(self, limits: Limits | None) -> None:
        set_ = object.__setattr__
        bounds = limits if limits is not None else DEFAULT_LIMITS
        if self.text is not None:
            if limits is not None:
                check_query(self.text, limits)
            elif not isinstance(self.text, str) or not self.text.strip():
                raise InvalidInputError(f"query must be a non-empty string, got {self.text!r:.80}")
            check_string(self.text, "query")
        if self.vector is not None:
            set_(self, "vector", check_vector(self.vector, None, "query vector"))
        set_(self, "k", check_k(self.k, "k", limits))
        set_(self, "mode", _enum(SearchMode, self.mode, "mode"))
        set_(self, "filter", parse_filter(self.filter, bounds))
        set_(self, "fusion", _enum(Fusion, self.fusion, "fusion"))
        set_(self, "alpha", _unit_interval(self.alpha, "alpha"))
        set_(self, "candidates", check_k(self.candidates, "candidates", limits))
        if self.mmr is not None:
            set_(self, "mmr", _unit_interval(self.mmr, "mmr"))
        set_(self, "tenant", check_tenant(self.tenant, bounds))
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, int) or self.rrf_k < 0:
            raise InvalidInputError(f"rrf_k must be a non-negative integer, got {self.rrf_k!r}")
        if self.field_weights is not None:
            set_(self, "field_weights", _field_weights(self.field_weights))
        if self.group_by is not None and (not isinstance(self.group_by, str) or not self.group_by):
            raise InvalidInputError(
                f"group_by must name a metadata field (a non-empty string), got {self.group_by!r}"
            )
        set_(self, "group_size", check_k(self.group_size, "group_size", limits))
        if isinstance(self.expand, bool) or not isinstance(self.expand, int) or self.expand < 0:
            raise InvalidInputError(
                f"expand must be a non-negative integer (chunks each side), got {self.expand!r}"
            )
        if self.expand > bounds.max_k:
            raise InvalidInputError(f"expand must be at most {bounds.max_k}, got {self.expand}")
        if not isinstance(self.highlight, bool):
            raise InvalidInputError(f"highlight must be True or False, got {self.highlight!r}")
        if self.decay is not None:
            set_(self, "decay", Decay.parse(self.decay))
        if self.rerank is not None:
            set_(self, "rerank", as_reranker(self.rerank))
        set_(self, "query_syntax", _enum(QuerySyntax, self.query_syntax, "query_syntax"))
        parsed = None
        if self.query_syntax is QuerySyntax.SIMPLE and self.text is not None:
            parsed = parse_query(self.text)
        set_(self, "parsed", parsed)
        if self.required is not None and not isinstance(self.required, ParsedQuery):
            raise InvalidInputError(
                "required is set by SearchRequest.core from a simple-syntax query; "
                f"got {self.required!r:.80}"
            )

    @staticmethod
    def option_names() -> tuple[str, ...]:
        """Every option a caller may set (all fields but the query itself)."""
        return tuple(
            f.name
            for f in dataclasses.fields(SearchRequest)
            if f.init and not f.metadata.get("internal")
        )[2:]

    def replace(self, **changes: Any) -> SearchRequest:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_depth(self, depth: int) -> SearchRequest:
        """A copy asking each leg for ``depth`` candidates, without validating again: for a
        router passing its own request on. A search whose legs are pooled (hybrid, or with
        MMR) keeps its ``k``, so a shard that ranks its own candidates ranks the top ``k``
        (its legs then hold at least ``k``); a plain one-leg search returns ``k``
        candidates, so its ``k`` becomes ``depth``."""
        copy = object.__new__(SearchRequest)
        for name in self.__slots__:
            object.__setattr__(copy, name, getattr(self, name))
        object.__setattr__(copy, "candidates", int(depth))
        if not (self.mode is SearchMode.HYBRID or self.mmr is not None):
            object.__setattr__(copy, "k", int(depth))
        return copy

    def core(self, limits: Limits | None = None) -> SearchRequest:
        """What a backend runs for this request: the answer-shaping options (``decay`` to
        ``query_syntax``) left out, the text without operators, and ``k`` raised to the pool
        those options work on: ``max(candidates, k * group_size)`` (at most ``max_k``). The
        request itself when it has none of them."""
        if not (self.shapes_answer or self.parsed or self.expand or self.highlight):
            return self
        copy = object.__new__(SearchRequest)
        for name in self.__slots__:
            object.__setattr__(copy, name, getattr(self, name))
        for name, default in _ANSWER_DEFAULTS.items():
            object.__setattr__(copy, name, default)
        object.__setattr__(copy, "parsed", None)
        object.__setattr__(copy, "text", self.scored_text)
        if self.parsed is not None and self.parsed.constrains:
            object.__setattr__(copy, "required", self.parsed)
        if self.shapes_answer:
            size = self.group_size if self.group_by is not None else 1
            pool = max(self.candidates, self.k * size)
            top = (limits or DEFAULT_LIMITS).max_k
            object.__setattr__(copy, "k", max(self.k, min(pool, top)))
        return copy

    @property
    def scored_text(self) -> str | None:
        """The text the legs score: the query, or its words without operators (``parsed``)."""
        return self.parsed.text if self.parsed is not None else self.text

    @property
    def shapes_answer(self) -> bool:
        """Does an option act on the ranked pool (``ragkit._answer``)?"""
        return (
            self.group_by is not None
            or self.decay is not None
            or self.rerank is not None
            or (self.parsed is not None and self.parsed.constrains)
        )

    @property
    def runs_dense(self) -> bool:
        return self.mode is not SearchMode.LEXICAL

    @property
    def runs_lexical(self) -> bool:
        return self.mode is not SearchMode.DENSE

    @property
    def fills_legs(self) -> bool:
        """Should a backend score each leg's candidates on the other leg too? Calibrated
        fusion of a hybrid search uses both scores of every candidate."""
        return self.mode is SearchMode.HYBRID and self.fusion is Fusion.CALIBRATED

    @property
    def depth(self) -> int:
        """Candidates each leg returns: the fusion/MMR pool, or just ``k`` for one plain leg."""
        if self.mode is SearchMode.HYBRID or self.mmr is not None:
            return max(self.candidates, self.k)
        return self.k

    def require_query(self) -> None:
        """Backends call this: the legs the mode runs need their half of the query."""
        if self.runs_dense and self.vector is None:
            raise InvalidInputError(f"a {self.mode.value} search needs a query vector")
        if self.runs_lexical and self.text is None:
            raise InvalidInputError(f"a {self.mode.value} search needs query text")

    def options_json(self) -> str:
        """The options as canonical JSON (cache keys, logs); the query is not included."""
        options = {name: getattr(self, name) for name in self.option_names()}
        options["filter"] = filter_to_json(self.filter)
        if self.required is not None:
            options["required"] = [list(self.required.required), list(self.required.excluded)]
        return json.dumps(options, sort_keys=True, default=str)

    def vector_bytes(self) -> bytes:
        return b"" if self.vector is None else np.asarray(self.vector, np.float32).tobytes()


#: the answer-shaping options (those after ``field_weights``) at their defaults: what
#: ``SearchRequest.core`` leaves out
_ANSWER_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(SearchRequest)
    if f.init
    and f.name
    in SearchRequest.option_names()[SearchRequest.option_names().index("field_weights") + 1 :]
}
