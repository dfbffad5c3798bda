"""KeyedLocks: one pass per key at a time, and no lock kept for a key nobody holds or waits for."""

from __future__ import annotations

import asyncio

from modelrollout.keyed_locks import KeyedLocks


async def test_holders_of_one_key_take_turns_and_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("a"):
            order.append("a1 in")
            first_in.set()
            await release.wait()
            order.append("a1 out")

    async def second() -> None:
        await first_in.wait()
        async with locks.hold("a"):
            order.append("a2 in")

    async def other() -> None:
        await first_in.wait()
        async with locks.hold("b"):
            order.append("b in")

    tasks = [asyncio.create_task(f()) for f in (first, second, other)]
    await first_in.wait()
    await asyncio.sleep(0.01)
    assert order == ["a1 in", "b in"]
    assert len(locks) == 1, "b's lock went with its holder; a's is held and waited for"
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["a1 in", "b in", "a1 out", "a2 in"]
    assert len(locks) == 0


async def test_a_failing_holder_releases_and_forgets_the_key() -> None:
    locks = KeyedLocks()
    try:
        async with locks.hold("a"):
            raise RuntimeError("pass failed")
    except RuntimeError:
        pass
    assert len(locks) == 0
    async with locks.hold("a"):
        assert len(locks) == 1


async def test_waiting_says_whether_someone_already_queues_behind_the_holder() -> None:
    locks = KeyedLocks()
    held, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with locks.hold("a"):
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("a"):
            pass

    task = asyncio.create_task(holder())
    await held.wait()
    assert not locks.waiting("a")
    queued = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert locks.waiting("a")
    assert not locks.waiting("b")
    release.set()
    await asyncio.gather(task, queued)
    assert not locks.waiting("a")
    assert len(locks) == 0
