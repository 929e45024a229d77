"""What the router knows about each host's health: a circuit breaker and recent latencies."""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Breaker:
    """After ``threshold`` consecutive failures (errors, or calls that never answered) a host
    is avoided for ``reset_s`` seconds while another replica can serve, then tried again."""

    threshold: int
    reset_s: float
    failures: int = 0
    open_until: float = 0.0
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


class Latencies:
    """Recent call latencies, for the hedge delay: a call slower than a few times the median
    is probably stuck behind something, and asking another replica is cheaper than waiting."""

    def __init__(self, size: int = 256) -> None:
        self._seen: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._seen.append(seconds)

    def hedge_delay(self, floor_s: float, ceiling_s: float) -> float:
        with self._lock:
            median = statistics.median(self._seen) if len(self._seen) >= 8 else ceiling_s
        return min(ceiling_s, max(floor_s, 4.0 * median))
