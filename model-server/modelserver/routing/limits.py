"""Per-key rate limits: a token bucket per API key, in one router process (so a Deployment of N router replicas
admits up to N times a key's rate: set the rate per replica). Pure: the clock is passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second flow into a bucket holding at most `burst`; a request takes one. It starts full, so a
    client may send `burst` requests at once, then `rate` a second."""

    rate: float
    burst: int
    tokens: float
    stamp: float  # when `tokens` was last brought up to date (seconds, a monotonic clock)

    @classmethod
    def full(cls, rate: float, burst: int, now: float) -> TokenBucket:
        return cls(rate, burst, float(burst), now)

    def take(self, now: float) -> float:
        """0.0 when a token was taken (the request is admitted), else the seconds until one will be there."""
        if now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def retry_after(wait_s: float) -> int:
    """The Retry-After value (whole seconds, RFC 9110 10.2.3) for a wait: rounded up, at least 1."""
    return max(1, math.ceil(wait_s))
