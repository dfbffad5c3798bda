"""Adaptive micro-batching: concurrent requests share one model call.

A batch closes when it reaches `max_batch_size` rows, when `max_wait` has passed since its first request, or
as soon as no other request is on its way (`arriving() == 0` and nothing queued): so a lone request never
waits, and under concurrency requests pile up while the previous batch runs and go together in the next.
Requests are never split; one larger than `max_batch_size` runs alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modelserver.runtimes.base import Array, Prediction


class BatcherStopped(Exception):
    """The batcher was stopped (its model unloaded or replaced) before this request reached it."""


@dataclass(slots=True)
class _Pending:
    x: Array
    future: asyncio.Future[Prediction]


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[Array], Prediction],
        *,
        max_batch_size: int,
        max_wait_s: float,
        arriving: Callable[[], int],
        on_batch: Callable[[int], None],
    ) -> None:
        self._predict = predict
        self._max_rows = max_batch_size
        self._max_wait = max_wait_s
        self._arriving = arriving
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # set while nothing is queued, collected or predicted
        self._idle.set()
        self.stopped = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self, *, drain_s: float = 0.0) -> None:
        """Stop taking requests; those queued or in the batch being collected are answered first, for up to
        `drain_s` (a model unloaded or replaced under load), then any left are cancelled."""
        self.stopped = True
        if drain_s > 0 and not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pending in self._queue:
            pending.future.cancel()
        self._queue.clear()

    async def submit(self, x: Array) -> Prediction:
        """The prediction for `x`, from a batched model call; BatcherStopped once stop() began."""
        if self.stopped:
            raise BatcherStopped
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        self._queue.append(_Pending(x, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = await self._collect()
                self._execute(batch)
            self._idle.set()

    async def _collect(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        rows = len(batch[0].x)
        deadline = time.monotonic() + self._max_wait
        idle_spins = 0
        while rows < self._max_rows:
            if self._queue:
                if rows + len(self._queue[0].x) > self._max_rows:
                    break
                item = self._queue.popleft()
                batch.append(item)
                rows += len(item.x)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._arriving() > 0:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                continue
            # Nobody is known to be coming, but requests whose bytes are already read may not have reached
            # the data plane yet: give the event loop two turns to run them before closing the batch.
            if idle_spins == 2:
                break
            idle_spins += 1
            await asyncio.sleep(0)
        return batch

    def _execute(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.cancelled()]
        if not live:
            return
        x = live[0].x if len(live) == 1 else np.concatenate([p.x for p in live])
        self._on_batch(len(x))
        try:
            prediction = self._predict(x)
        except Exception as exc:  # noqa: BLE001 - every caller of this batch gets the model's failure
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        start = 0
        for pending in live:
            stop = start + len(pending.x)
            if not pending.future.done():
                pending.future.set_result(prediction.rows(start, stop))
            start = stop
