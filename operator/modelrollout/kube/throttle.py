"""Client-side limits on what the operator asks of the API server, so that no bug and no fleet can flood it
(kopf #504): a token bucket over every request (client-go's `--kube-api-qps`/`--kube-api-burst`), and the wait
before retrying a request the API server shed (429 from API Priority and Fairness, or a 5xx with Retry-After), as
client-go does: the server's Retry-After, never less than a floor, never more than a ceiling, with jitter so that
many waiting callers do not come back at once."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# A 429 without Retry-After (or with a value we cannot read) waits this long.
DEFAULT_RETRY_AFTER_S = 1.0


@dataclass
class TokenBucket:
    """`rate` requests a second on average, up to `burst` at once after a quiet spell."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _at: float = field(init=False)
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self._tokens = float(self.burst)
        self._at = self.clock()

    def wait_s(self) -> float:
        """Take a token; how long to wait before the request it allows (0 when one was there)."""
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        async with self._lock:  # one waiter at a time: the tokens are handed out in order
            delay = self.wait_s()
        if delay > 0:
            await asyncio.sleep(delay)


def retry_after_s(header: str | None, attempt: int, *, ceiling_s: float, rng: random.Random | None = None) -> float:
    """The wait before retry `attempt` (1-based) of a shed request: the server's Retry-After seconds (an integer,
    per RFC 9110; a date is not used by the API server) or the default, doubled per attempt, capped, plus up to
    10 % jitter."""
    try:
        base = float(header) if header is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        base = DEFAULT_RETRY_AFTER_S
    wait = min(max(base, DEFAULT_RETRY_AFTER_S / 2) * 2.0 ** (attempt - 1), ceiling_s)
    return wait * (1.0 + 0.1 * (rng or random).random())
