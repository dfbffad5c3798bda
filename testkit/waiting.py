"""Polling helpers for tests that wait on a real system to converge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float, interval: float = 0.25, what: str
) -> T:
    """Await `probe` until it returns something other than None; fail with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            result = await probe()
        except Exception as exc:  # noqa: BLE001 - a transient API error is a reason to retry, not to stop
            result, last = None, exc
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last error: {last!r})")
        await asyncio.sleep(interval)


def wait_until(
    probe: Callable[[], T | None], *, within: float, interval: float = 0.05, what: str | Callable[[], str]
) -> T:
    """Call `probe` until it returns something other than None (False counts as None); fail with `what` (a text,
    or a function giving one, e.g. a process's log) after `within` seconds. The synchronous `eventually`, for
    tests that drive processes from threads; unlike it, a probe's exception is not retried (it is the test's)."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {within:.0f}s waiting for {said}")
        time.sleep(interval)
