"""Client-side token buckets that keep API Gateway control-plane calls within AWS's limits.

AWS documents, per account and region: 10 requests per second with a burst of 40 for the
control plane as a whole, and 5 per second for ``CreateApiKey`` and ``DeleteApiKey``
(https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html, "API Gateway quotas
for configuring and running a REST API"). Past those AWS answers 429 TooManyRequests; botocore's
``standard`` retry mode then retries with jittered exponential backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["ControlPlaneLimiter", "TokenBucket"]


class TokenBucket:
    """A thread-safe token bucket: ``rate`` tokens per second, at most ``capacity`` stored.

    :meth:`acquire` blocks until a token is free and returns the seconds it waited.
    """

    def __init__(self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be > 0 tokens/s and capacity >= 1 token")
        self.rate = rate
        self.capacity = capacity
        self._tokens = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


class ControlPlaneLimiter:
    """Two buckets: every call takes from ``all_calls``; key writes also from ``key_writes``.

    Defaults are AWS's published limits (10/s burst 40; 5/s for Create/DeleteApiKey). The key-write
    bucket's capacity is its rate (one second of burst), since AWS documents no burst for it.
    """

    KEY_WRITES = frozenset({"CreateApiKey", "DeleteApiKey"})

    def __init__(self, rate: float = 10.0, burst: int = 40, key_writes_per_second: float = 5.0):
        self.all_calls = TokenBucket(rate, burst)
        self.key_writes = TokenBucket(key_writes_per_second, max(1.0, key_writes_per_second))
        self.waited_seconds = 0.0
        self.calls = 0

    def before_call(self, operation: str) -> None:
        waited = 0.0
        if operation in self.KEY_WRITES:
            waited += self.key_writes.acquire()
        waited += self.all_calls.acquire()
        self.waited_seconds += waited
        self.calls += 1
