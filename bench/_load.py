"""Closed-loop load from client threads, shared by the benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def run_clients(call: Callable[[int], object], clients: int, seconds: float) -> tuple[int, float]:
    """``clients`` threads each call ``call(i)`` back to back (``i`` starts at the thread's
    number and steps by ``clients``, so the threads spread over the queries) until
    ``seconds`` have passed; returns the calls completed and the wall time they took."""
    done = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(seed: int) -> None:
        nonlocal done
        i = seed
        while time.perf_counter() < stop_at:
            call(i)
            i += clients
            with lock:
                done += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done, time.perf_counter() - started
