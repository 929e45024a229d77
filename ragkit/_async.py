"""Async twins of blocking methods, written once: ``aupsert = in_thread(upsert)``.

A twin runs the method in a worker thread (``asyncio.to_thread``), looked up by name on the
instance when called, so a subclass that overrides the blocking method gets a twin of its own
override; a backend with a native async call overrides the twin itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


def in_thread(
    method: Callable[Concatenate[S, P], R],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """The async twin of ``method``, with its signature."""
    name = method.__name__

    async def twin(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = await asyncio.to_thread(getattr(self, name), *args, **kwargs)
        return result

    twin.__name__ = f"a{name}"
    twin.__qualname__ = method.__qualname__.rsplit(".", 1)[0] + f".a{name}"
    twin.__doc__ = f"``{name}`` in a worker thread (an async twin)."
    return twin
