"""Calling many shards at once: deadlines, retries, circuit breakers, early return."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from ragkit.backends.base import Shard
from ragkit.errors import InvalidInputError
from ragkit.tracing import current_context, in_context, shard_error, shard_retry, stage

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Bad input fails the same way every time; anything else (a dead actor, a dropped
    connection, a timeout) may succeed on retry."""
    return not isinstance(exc, InvalidInputError)


@dataclass
class Breaker:
    """Per-shard circuit breaker: after ``threshold`` consecutive failures the shard is
    skipped for ``reset_s`` seconds, then tried again (half-open)."""

    threshold: int
    reset_s: float
    failures: int = 0
    open_until: float = 0.0
    retries: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def allows(self) -> bool:
        with self.lock:
            return self.failures < self.threshold or time.monotonic() >= self.open_until

    def succeeded(self) -> None:
        with self.lock:
            self.failures = 0

    def failed(self) -> None:
        with self.lock:
            self.failures += 1
            self.errors += 1
            if self.failures >= self.threshold:
                self.open_until = time.monotonic() + self.reset_s

    @property
    def state(self) -> str:
        if self.failures < self.threshold:
            return "closed"
        return "open" if time.monotonic() < self.open_until else "half-open"


@dataclass
class FanOutResult:
    results: dict[str, Any]
    failed: dict[str, str]  # shard name -> why it has no result


class FanOut:
    """Runs one call on several shards in a thread pool, bounded by a deadline."""

    def __init__(
        self,
        *,
        deadline_s: float,
        retries: int,
        breaker_threshold: int,
        breaker_reset_s: float,
        max_workers: int,
    ) -> None:
        self.deadline_s = deadline_s
        self.retries = retries
        self.breaker_threshold = breaker_threshold
        self.breaker_reset_s = breaker_reset_s
        self.breakers: dict[str, Breaker] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ragkit-fanout")

    def breaker(self, name: str) -> Breaker:
        if name not in self.breakers:
            self.breakers[name] = Breaker(self.breaker_threshold, self.breaker_reset_s)
        return self.breakers[name]

    def _with_retries(
        self, name: str, shard: Shard, call: Callable[[Shard], T], give_up_at: float, ctx: Any
    ) -> T:
        with in_context(ctx), stage("shard", **{"ragkit.shard": name}) as span:
            try:
                result = self._attempts(name, shard, call, give_up_at, span)
            except Exception:
                shard_error(name)
                span.set_attribute("ragkit.shard.failed", True)
                raise
            if isinstance(result, list):
                span.set_attribute("ragkit.shard.results", len(result))
            return result

    def _attempts(
        self, name: str, shard: Shard, call: Callable[[Shard], T], give_up_at: float, span: Any
    ) -> T:
        breaker = self.breaker(name)
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.retries + 1)
            | stop_after_delay(max(0.0, give_up_at - time.monotonic())),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                retries = attempt.retry_state.attempt_number - 1
                if retries:
                    breaker.retries += 1
                    shard_retry(name)
                    span.set_attribute("ragkit.shard.retries", retries)
                return call(shard)
        raise AssertionError("unreachable")  # pragma: no cover

    def run(
        self,
        shards: Sequence[tuple[str, Shard]],
        call: Callable[[Shard], T],
        *,
        enough: int | None = None,
        hedge_after_s: float | None = None,
        deadline_s: float | None = None,
        timeouts_are_failures: bool = True,
    ) -> FanOutResult:
        """Call every shard; return when all answered, the deadline passed, or (after
        ``hedge_after_s``) when ``enough`` shards answered. Never raises for a shard's
        failure: failures are reported in ``failed``. Input errors are re-raised."""
        deadline = time.monotonic() + (deadline_s or self.deadline_s)
        futures: dict[Future[T], str] = {}
        out = FanOutResult({}, {})
        for name, shard in shards:
            if not self.breaker(name).allows():
                out.failed[name] = "circuit open"
                continue
            ctx = current_context()
            futures[self._pool.submit(self._with_retries, name, shard, call, deadline, ctx)] = name
        pending = set(futures)
        hedge_at = None if hedge_after_s is None else time.monotonic() + hedge_after_s
        while pending:
            now = time.monotonic()
            if now >= deadline:
                break
            if (
                hedge_at is not None
                and enough is not None
                and now >= hedge_at
                and len(out.results) >= enough
            ):
                for future in pending:
                    out.failed[futures[future]] = "hedged: not waited for"
                return out
            until = deadline if hedge_at is None or now >= hedge_at else hedge_at
            done, pending = wait(pending, timeout=until - now, return_when=FIRST_COMPLETED)
            for future in done:
                name = futures[future]
                exc = future.exception()
                if exc is None:
                    out.results[name] = future.result()
                    self.breaker(name).succeeded()
                elif isinstance(exc, InvalidInputError):
                    raise exc
                else:
                    out.failed[name] = f"{type(exc).__name__}: {exc}"
                    self.breaker(name).failed()
        for future in pending:
            name = futures[future]
            out.failed[name] = f"no answer within {deadline_s or self.deadline_s:g}s"
            if timeouts_are_failures:
                self.breaker(name).failed()
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
