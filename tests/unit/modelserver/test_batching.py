"""Micro-batching with a real model: concurrent requests share calls, answers go back to the right caller."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from modelserver.batching import BatcherStopped, MicroBatcher
from modelserver.runtimes.base import Array, Prediction


class Recorder:
    """Doubles its input and records the batch sizes it was called with."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, x: Array) -> Prediction:
        self.calls.append(len(x))
        if self.fail:
            raise ValueError("model exploded")
        return Prediction(x[:, 0] * 2)


def batcher(model: Recorder, *, size: int = 8, arriving: int = 0, wait: float = 5.0) -> MicroBatcher:
    return MicroBatcher(model, max_batch_size=size, max_wait_s=wait, arriving=lambda: arriving, on_batch=lambda n: None)


def rows(*values: float) -> np.ndarray[Any, Any]:
    return np.array([[v] for v in values])


async def test_queued_requests_share_one_call_and_get_their_own_rows() -> None:
    model = Recorder()
    b = batcher(model)
    b.start()
    try:
        # All submitted before the batcher task runs: they are queued together.
        results = await asyncio.gather(*(b.submit(rows(i, i + 0.5)) for i in range(4)))
    finally:
        await b.stop()
    assert model.calls == [8]
    for i, result in enumerate(results):
        assert result.values.tolist() == [2 * i, 2 * i + 1]


async def test_batches_never_exceed_the_size_and_requests_are_never_split() -> None:
    model = Recorder()
    b = batcher(model, size=4)
    b.start()
    try:
        results = await asyncio.gather(b.submit(rows(1, 2, 3)), b.submit(rows(4, 5)), b.submit(rows(*range(6))))
    finally:
        await b.stop()
    assert model.calls == [3, 2, 6]
    assert results[1].values.tolist() == [8, 10]


async def test_a_lone_request_does_not_wait_for_company() -> None:
    model = Recorder()
    # max_wait of an hour: if the batcher waited for company, this test would hang (pytest-timeout ends it).
    b = batcher(model, wait=3600)
    b.start()
    try:
        result = await b.submit(rows(7))
    finally:
        await b.stop()
    assert result.values.tolist() == [14]


async def test_model_failure_reaches_every_caller_of_the_batch() -> None:
    b = batcher(Recorder(fail=True))
    b.start()
    try:
        outcomes = await asyncio.gather(b.submit(rows(1)), b.submit(rows(2)), return_exceptions=True)
    finally:
        await b.stop()
    assert all(isinstance(o, ValueError) for o in outcomes)


@pytest.mark.timeout(10)
async def test_waits_while_requests_are_arriving() -> None:
    model = Recorder()
    arriving = {"n": 1}
    b = MicroBatcher(model, max_batch_size=8, max_wait_s=3600, arriving=lambda: arriving["n"], on_batch=lambda n: None)
    b.start()
    try:
        first = asyncio.ensure_future(b.submit(rows(1)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert model.calls == []  # someone is on the way: the batch stays open
        arriving["n"] = 0
        second = await b.submit(rows(2))
        assert (await first).values.tolist() == [2]
        assert second.values.tolist() == [4]
    finally:
        await b.stop()
    assert model.calls == [2]


async def test_a_stop_with_drain_answers_what_is_queued_and_refuses_what_comes_after() -> None:
    model = Recorder()
    b = batcher(model, size=2, arriving=1, wait=0.05)  # someone "arriving": batches wait out max_wait
    b.start()
    queued = [asyncio.create_task(b.submit(rows(i))) for i in range(5)]
    await asyncio.sleep(0)  # all five queued; the first batch is being collected
    await b.stop(drain_s=5.0)
    assert [t.result().values.tolist() for t in queued] == [[0], [2], [4], [6], [8]]  # none cancelled
    with pytest.raises(BatcherStopped):
        await b.submit(rows(9))


async def test_a_stop_without_drain_cancels_what_is_queued() -> None:
    b = batcher(Recorder(), size=1, arriving=1, wait=0.05)
    b.start()
    queued = [asyncio.create_task(b.submit(rows(i))) for i in range(3)]
    await asyncio.sleep(0)
    await b.stop()
    await asyncio.gather(*queued, return_exceptions=True)
    assert any(t.cancelled() for t in queued)
