"""OpenTelemetry spans and metrics for every stage (a no-op until an SDK is configured).

Span names: ``ragkit.search`` (root) with children ``ragkit.cache.lookup``, ``ragkit.embed``,
``ragkit.search_dense`` and ``ragkit.search_lexical`` (a LocalShard's legs), ``ragkit.scatter``
and ``ragkit.stats`` (a ShardedStore's rounds, with one ``ragkit.host`` span per host call:
host, partitions, hedged, failed; an in-process host's legs nest below it), ``ragkit.fuse``,
``ragkit.hydrate``; writes: ``ragkit.write`` with ``ragkit.embed``, ``ragkit.upsert`` and
``ragkit.replicate``. Metrics: ``ragkit.stage.duration`` (ms, by stage),
``ragkit.cache.requests`` (by cache kind and hit), ``ragkit.shard.errors`` and
``ragkit.shard.retries``. Query text is recorded only when a store asks for it
(``record_query_text=True``); no key, token or other secret is ever an attribute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

_tracer = trace.get_tracer("ragkit")
_meter = metrics.get_meter("ragkit")
_stage_ms = _meter.create_histogram(
    "ragkit.stage.duration", unit="ms", description="time spent in each stage"
)
_cache_requests = _meter.create_counter(
    "ragkit.cache.requests", description="cache lookups by kind and outcome"
)
_shard_errors = _meter.create_counter("ragkit.shard.errors", description="failed shard calls")
_shard_retries = _meter.create_counter("ragkit.shard.retries", description="shard call retries")
_ingest = _meter.create_counter(
    "ragkit.ingest.records", description="ingestion: chunks embedded, written, deleted, ..."
)


class _Installed:
    yes = False


def _configured() -> bool:
    """Has the application installed an OpenTelemetry SDK (tracing or metrics)? Until it
    has, the API's providers are proxies that would record nothing, and a stage costs one
    check instead of ~10 us of span and context bookkeeping.

    The API's own getters read environment variables on every call (5 us each); until a
    provider is set, its module globals are None, which costs two attribute reads to see.
    A provider, once set, stays: the answer is then remembered."""
    if _Installed.yes:
        return True
    if (
        _TRACER_GLOBALS is not None
        and _METER_GLOBALS is not None
        and getattr(_TRACER_GLOBALS, "_TRACER_PROVIDER", None) is None
        and getattr(_METER_GLOBALS, "_METER_PROVIDER", None) is None
    ):
        return False
    _Installed.yes = not (
        type(trace.get_tracer_provider()) is trace.ProxyTracerProvider
        and type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    )
    return _Installed.yes


def enabled() -> bool:
    """Will stages record anything (has the application installed an OpenTelemetry SDK)?
    Callers skip building span attributes when they will not."""
    return _configured()


def _api_globals() -> tuple[Any, Any]:
    """Where the OpenTelemetry API keeps the installed providers (None if it moved)."""
    try:
        import opentelemetry.metrics._internal as meter_module
    except ImportError:  # pragma: no cover - another API layout: use the public getters
        return None, None
    if not hasattr(trace, "_TRACER_PROVIDER") or not hasattr(meter_module, "_METER_PROVIDER"):
        return None, None  # pragma: no cover
    return trace, meter_module


_TRACER_GLOBALS, _METER_GLOBALS = _api_globals()


#: What ``stage`` returns until an SDK is installed: one shared, reusable no-op.
_NO_SPAN = nullcontext(trace.INVALID_SPAN)


def stage(name: str, **attributes: Any) -> AbstractContextManager[trace.Span]:
    """A span ``ragkit.<name>`` plus its duration in the stage histogram."""
    if not _configured():
        return _NO_SPAN
    return _traced(name, attributes)


@contextmanager
def _traced(name: str, attributes: dict[str, Any]) -> Iterator[trace.Span]:
    started = time.perf_counter()
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with _tracer.start_as_current_span(f"ragkit.{name}", attributes=attrs) as span:
        try:
            yield span
        finally:
            _stage_ms.record((time.perf_counter() - started) * 1000, {"stage": name})


def cache_outcome(span: trace.Span, kind: str, hit: bool) -> None:
    span.set_attribute("ragkit.cache.kind", kind)
    span.set_attribute("ragkit.cache.hit", hit)
    _cache_requests.add(1, {"kind": kind, "hit": hit})


def shard_error(shard: str) -> None:
    _shard_errors.add(1, {"shard": shard})


def shard_retry(shard: str) -> None:
    _shard_retries.add(1, {"shard": shard})


def ingested(kind: str, n: int) -> None:
    """Count ingestion work (``kind``: embedded, reused, unchanged, upserted, deleted,
    retried, dead_letter, event)."""
    if n:
        _ingest.add(n, {"kind": kind})


def start_span(name: str, **attributes: Any) -> trace.Span:
    """A span ``ragkit.<name>`` under the current one that is not made current: for work that
    finishes elsewhere (a host call answered on another thread). End it with ``span.end()``."""
    if not _configured():
        return trace.INVALID_SPAN
    attrs = {k: v for k, v in attributes.items() if v is not None}
    return _tracer.start_span(f"ragkit.{name}", attributes=attrs)


def span_context(span: trace.Span) -> Any:
    """A context whose current span is ``span`` (to run or submit work under it)."""
    return trace.set_span_in_context(span)


def current_context() -> Any:
    """The active trace context, to carry into worker threads."""
    return otel_context.get_current()


@contextmanager
def in_context(ctx: Any) -> Iterator[None]:
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
