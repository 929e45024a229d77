"""Retrying calls to a remote engine on transient errors (tenacity, exponential backoff)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential


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
