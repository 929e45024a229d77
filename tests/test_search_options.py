"""Search options are declared once, on ``SearchRequest``: every public entry point accepts
exactly those and passes each one through (one search protocol, acceptance 3). Adding an
option to ``SearchRequest`` fails this test until every entry point takes it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from ragkit import HybridStore, SearchRequest
from ragkit.cli.main import _parser
from ragkit.decay import Decay
from ragkit.embeddings import HashingEmbedder
from ragkit.retrievers.langchain import HybridRetriever as LangChainRetriever
from ragkit.retrievers.llamaindex import HybridRetriever as LlamaIndexRetriever
from ragkit.store import SearchOptions
from ragkit.stores.langchain import SEARCH_KWARGS, RagkitVectorStore

OPTIONS = set(SearchRequest.option_names())


def _longest_first(query: str, hits: Any) -> list[float]:
    return [float(len(hit.text)) for hit in hits]


# A valid value, other than the default, for every option.
VALUES: dict[str, Any] = {
    "k": 3,
    "mode": "lexical",
    "filter": {"n": {"$gte": 0}},
    "fusion": "rrf",
    "alpha": 0.3,
    "candidates": 7,
    "mmr": 0.5,
    "tenant": None,
    "rrf_k": 5,
    "field_weights": {"text": 2.0},
    "group_by": "n",
    "group_size": 2,
    "expand": 1,
    "highlight": True,
    "decay": {"field": "n", "origin": 0, "scale": 5},
    "rerank": _longest_first,
    "query_syntax": "simple",
}


def _keyword_only(function: Callable[..., Any]) -> set[str]:
    return {
        name
        for name, p in inspect.signature(function).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def test_every_entry_point_declares_exactly_the_request_options() -> None:
    assert set(VALUES) == OPTIONS, "give the new option a test value above"
    assert set(get_type_hints(SearchOptions)) == OPTIONS
    assert _keyword_only(HybridStore.request) - {"vector"} == OPTIONS
    assert SEARCH_KWARGS | {"k"} == OPTIONS
    assert set(LangChainRetriever.model_fields) - {"store", *_base_fields()} == OPTIONS
    assert _keyword_only(LlamaIndexRetriever.__init__) == OPTIONS
    parsed = vars(_parser().parse_args(["search", "q", "--store", "x"]))
    assert set(parsed) >= OPTIONS, f"ragkit search lacks {sorted(OPTIONS - set(parsed))}"


def _base_fields() -> set[str]:
    from langchain_core.retrievers import BaseRetriever

    return set(BaseRetriever.model_fields)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[SearchRequest]:
    """The requests the store runs."""
    seen: list[SearchRequest] = []
    original = HybridStore.run

    def run(self: HybridStore, request: SearchRequest) -> Any:
        seen.append(request)
        return original(self, request)

    monkeypatch.setattr(HybridStore, "run", run)
    return seen


def _store(path: Path | None = None) -> HybridStore:
    store = HybridStore(path, embedder=HashingEmbedder(dim=16))
    store.add_texts([f"passage {i} words" for i in range(12)], [{"n": i} for i in range(12)])
    return store


def _check(request: SearchRequest, unset: frozenset[str] = frozenset()) -> None:
    for name in OPTIONS - {"mode", "filter", "fusion", "decay", *unset}:
        assert getattr(request, name) == VALUES[name], name
    assert request.decay == Decay.parse(VALUES["decay"])
    assert request.mode.value == VALUES["mode"] and request.fusion.value == VALUES["fusion"]
    assert request.filter is not None


def test_every_option_reaches_the_request_through_every_entry_point(
    captured: list[SearchRequest], tmp_path: Path
) -> None:
    from llama_index.core.schema import QueryBundle

    with _store(tmp_path / "kb") as store:
        store.search("passage", **VALUES)
        _check(captured.pop())
        RagkitVectorStore(store=store).similarity_search(
            "passage", k=VALUES["k"], **{k: v for k, v in VALUES.items() if k != "k"}
        )
        _check(captured.pop())
        LangChainRetriever(store=store).invoke("passage", **VALUES)
        _check(captured.pop())
        LangChainRetriever(store=store, **VALUES).invoke("passage")
        _check(captured.pop())
        LlamaIndexRetriever(store, **VALUES).retrieve(QueryBundle("passage"))
        _check(captured.pop())
    from ragkit.cli import main

    args = [
        "search", "passage", "--store", str(tmp_path / "kb"), "-k", "3", "--mode", "lexical",
        "--filter", '{"n": {"$gte": 0}}', "--fusion", "rrf", "--alpha", "0.3",
        "--candidates", "7", "--mmr", "0.5", "--rrf-k", "5", "--group-by", "n",
        "--field-weights", '{"text": 2}',
        "--group-size", "2", "--expand", "1", "--highlight", "--query-syntax", "simple",
        "--decay", '{"field": "n", "origin": 0, "scale": 5}',
    ]  # fmt: skip
    assert main(args) == 0
    _check(captured.pop(), unset=frozenset({"rerank"}))  # (--rerank: a model's directory)


def test_limits_are_checked_where_the_request_is_built() -> None:
    """One place checks a search against a store's Limits: SearchRequest, given them."""
    from ragkit.errors import InvalidInputError
    from ragkit.limits import Limits

    small = Limits(max_k=5, max_query_chars=10, max_tenant_chars=3)
    for bad in ({"k": 6}, {"candidates": 6}, {"text": "x" * 11}, {"tenant": "abcd"}):
        with pytest.raises(InvalidInputError):
            SearchRequest(**{"text": "q", **bad}, limits=small)  # type: ignore[arg-type]
    assert SearchRequest(text="q", k=6, candidates=6).k == 6  # no limits: no upper bound
    with (
        HybridStore(embedder=HashingEmbedder(dim=8), limits=small) as store,
        pytest.raises(InvalidInputError, match=r"Limits\.max_k"),
    ):
        store.request("q", k=6)
