"""One lock per key, kept only while someone holds or waits for it: passes of one ModelDeployment never overlap,
and the operator keeps no lock for an object no pass is working on (a fleet's churn would otherwise grow the
table forever)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            _, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def waiting(self, key: Hashable) -> bool:
        """Whether someone already waits for `key` behind its holder (a further waiter would add nothing)."""
        _, users = self._locks.get(key, (None, 0))
        return users >= 2
