"""Issue 6: OpenTelemetry span trees, attributes, and what is never recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragkit import HybridStore
from ragkit.backends import ShardedStore
from ragkit.embeddings import HashingEmbedder, OpenAIEmbedder

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _sdk() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)  # once per process; ragkit's tracer is a proxy


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER


def tree(spans: list[ReadableSpan], root_name: str = "ragkit.search") -> dict[str, Any]:
    """The children (by name) of the last root span called ``root_name``."""
    root = [s for s in spans if s.name == root_name][-1]
    by_parent: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.parent is not None:
            by_parent.setdefault(span.parent.span_id, []).append(span)

    def walk(span: ReadableSpan) -> dict[str, Any]:
        return {c.name: walk(c) for c in by_parent.get(span.context.span_id, [])}

    return {root.name: walk(root)}


@pytest.fixture
def store() -> Iterator[HybridStore]:
    with HybridStore(embedder=HashingEmbedder(dim=32), result_cache=True) as s:
        s.add_texts([f"passage {i} about topic{i % 5}" for i in range(30)])
        yield s


def test_hybrid_search_span_tree(store: HybridStore, spans: InMemorySpanExporter) -> None:
    store.search("topic3 passage", k=3)
    assert tree(spans.get_finished_spans()) == {
        "ragkit.search": {
            "ragkit.embed": {},
            "ragkit.cache.lookup": {},
            "ragkit.search_dense": {},
            "ragkit.search_lexical": {},
            "ragkit.fuse": {},
            "ragkit.hydrate": {},
        }
    }
    root = [s for s in spans.get_finished_spans() if s.name == "ragkit.search"][-1]
    assert root.attributes["ragkit.mode"] == "hybrid" and root.attributes["ragkit.k"] == 3
    assert root.attributes["ragkit.hits"] == 3
    dense = [s for s in spans.get_finished_spans() if s.name == "ragkit.search_dense"][-1]
    assert dense.attributes["ragkit.hits"] > 0


@pytest.mark.parametrize(
    ("mode", "legs"),
    [("dense", {"ragkit.embed", "ragkit.search_dense"}), ("lexical", {"ragkit.search_lexical"})],
)
def test_single_leg_searches_have_only_their_leg(
    store: HybridStore, spans: InMemorySpanExporter, mode: str, legs: set[str]
) -> None:
    store.search("topic1", k=2, mode=mode)
    children = set(tree(spans.get_finished_spans())["ragkit.search"])
    assert children == legs | {"ragkit.cache.lookup", "ragkit.hydrate"}


def test_cache_miss_then_hit(store: HybridStore, spans: InMemorySpanExporter) -> None:
    store.search("topic4", k=2)
    store.search("topic4", k=2)
    lookups = [s for s in spans.get_finished_spans() if s.name == "ragkit.cache.lookup"]
    assert [s.attributes["ragkit.cache.hit"] for s in lookups] == [False, True]
    embeds = [s for s in spans.get_finished_spans() if s.name == "ragkit.embed"]
    assert [s.attributes["ragkit.cache.hit"] for s in embeds] == [False, True]
    assert set(tree(spans.get_finished_spans())["ragkit.search"]) == {
        "ragkit.embed",
        "ragkit.cache.lookup",
    }  # the hit skipped the backend entirely


def test_sharded_search_has_a_span_per_host_call(spans: InMemorySpanExporter) -> None:
    router = ShardedStore(3, partitions=3, replicas=1)
    with HybridStore(backend=router, embedder=HashingEmbedder(dim=32)) as store:
        store.add_texts([f"passage {i} about topic{i % 5}" for i in range(30)])
        spans.clear()
        store.search("topic2", k=3, mode="dense")
    scatter = tree(spans.get_finished_spans())["ragkit.search"]["ragkit.scatter"]
    assert scatter == {"ragkit.host": {"ragkit.search_dense": {}}}  # three calls, one name
    finished = spans.get_finished_spans()
    scatter_span = [s for s in finished if s.name == "ragkit.scatter"][-1]
    host_spans = [
        s
        for s in finished
        if s.name == "ragkit.host"
        and s.parent is not None
        and s.parent.span_id == scatter_span.context.span_id
    ]
    assert sorted(s.attributes["ragkit.host"] for s in host_spans) == ["h0", "h1", "h2"]
    assert all(s.attributes["ragkit.partitions"] == 1 for s in host_spans)
    assert not any(s.attributes["ragkit.failed"] for s in host_spans)


def test_writes_trace_embedding_and_upsert(store: HybridStore, spans: InMemorySpanExporter) -> None:
    store.add_texts(["one more passage"])
    assert tree(spans.get_finished_spans(), "ragkit.write") == {
        "ragkit.write": {"ragkit.embed": {}, "ragkit.upsert": {}}
    }


def test_no_secret_and_by_default_no_query_text_is_exported(spans: InMemorySpanExporter) -> None:
    from test_embeddings import FakeEmbeddingsServer

    server = FakeEmbeddingsServer()
    key, query = "sk-live-SECRET-123", "confidential merger plans"
    try:
        embedder = OpenAIEmbedder(
            "text-embedding-3-small", api_key=key, base_url=server.url, dimensions=3
        )
        for record_text in (False, True):
            spans.clear()
            with HybridStore(embedder=embedder, record_query_text=record_text) as store:
                store.add_texts(["merger plans were discussed", "lunch menu"])
                store.search(query, k=1)
            values = [str(v) for s in spans.get_finished_spans() for v in s.attributes.values()]
            assert not any(key in v for v in values)
            assert any(query in v for v in values) is record_text
    finally:
        server.close()


def test_langchain_callbacks_receive_ragkit_timings_and_cache_status(store: HybridStore) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    from ragkit.retrievers.langchain import HybridRetriever

    events: list[tuple[str, Any]] = []

    class Capture(BaseCallbackHandler):
        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            events.append((name, data))

    retriever = HybridRetriever(store=store, k=2)
    retriever.invoke("topic2", config={"callbacks": [Capture()]})
    retriever.invoke("topic2", config={"callbacks": [Capture()]})
    assert [name for name, _ in events] == ["ragkit_search", "ragkit_search"]
    first, second = (data for _, data in events)
    assert first["result_cache_hit"] is False and second["result_cache_hit"] is True
    assert second["embedding_cache_hit"] is True and first["latency_ms"] > 0
    assert first["mode"] == "hybrid" and first["hits"] == 2


def test_llamaindex_dispatcher_gets_ragkit_spans_and_events(store: HybridStore) -> None:
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler

    from ragkit.retrievers.llamaindex import HybridRetriever, RagkitSearchEvent

    seen: list[Any] = []

    class Capture(BaseEventHandler):
        @classmethod
        def class_name(cls) -> str:
            return "Capture"

        def handle(self, event: Any, **kwargs: Any) -> None:
            if isinstance(event, RagkitSearchEvent):
                seen.append(event)

    root = get_dispatcher()
    handler, spans = Capture(), SimpleSpanHandler()
    root.add_event_handler(handler)
    root.add_span_handler(spans)
    try:
        HybridRetriever(store, k=2).retrieve("topic1")
    finally:
        root.event_handlers.remove(handler)
        root.span_handlers.remove(spans)
    assert len(seen) == 1 and seen[0].hits == 2 and seen[0].mode == "hybrid"
    assert seen[0].latency_ms is not None and seen[0].latency_ms > 0
    assert any("HybridRetriever._retrieve" in span.id_ for span in spans.completed_spans)
