"""Per-key limits on requests, in this process: requests per second (a token bucket) and requests
in flight. Beyond them a request is answered 429 with ``Retry-After`` and a message naming the
limit. A key without such limits costs nothing here (:meth:`Quotas.admit` returns at once).

The bucket is a few lines (tokens refilled at ``rate_per_s``, at most ``burst`` held); a rate
limiting library (``limits``, ``aiolimiter``) would bring fixed or moving windows, or waiting,
where a bucket with an exact Retry-After is what a 429 needs. The counts are per process: with
``--workers N`` a key may send N times its rate in all (docs/security.md says so). The open
streams of a key are counted where the streams are (the stream store), so that limit holds
across processes and servers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.auth.principals import Principal, rate_message
from service.errors import TooManyRequests


class Quotas:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # key id → [tokens, when last refilled]
        self._inflight: dict[str, int] = {}

    def admit(self, p: Principal) -> Callable[[], None] | None:
        """Count one request of ``p`` (429 past a limit); returns what ends it (None: nothing
        to end)."""
        limits = p.limits
        if not limits.metered:
            return None
        if limits.rate_per_s is not None:
            self._take(p, limits.rate_per_s, limits.burst or max(1, int(limits.rate_per_s)))
        most = limits.max_concurrent
        if most is None:
            return None
        held = self._inflight.get(p.id, 0)
        if held >= most:
            raise TooManyRequests(
                f"key {p.id!r} has {held} requests in flight, its limit (max_concurrent={most} "
                "in the keys file); retry when one is answered",
                1,
            )
        self._inflight[p.id] = held + 1
        return lambda: self._done(p.id)

    def _done(self, kid: str) -> None:
        left = self._inflight.get(kid, 1) - 1
        if left > 0:
            self._inflight[kid] = left
        else:
            self._inflight.pop(kid, None)

    def _take(self, p: Principal, rate: float, burst: int) -> None:
        now = self.clock()
        bucket = self._buckets.get(p.id)
        if bucket is None:
            bucket = self._buckets[p.id] = [float(burst), now]
        tokens = min(float(burst), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            raise rate_message(p, rate, burst, (1.0 - tokens) / rate)
        bucket[0] = tokens - 1.0

    def in_flight(self, kid: str) -> int:
        return self._inflight.get(kid, 0)
