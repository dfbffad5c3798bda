"""The elector's loop over an in-memory lease and a hand-driven clock: one leader at a time, takeover after
expiry, conflicts lose quietly, a leader that cannot renew (or whose calls are held up) is out at its deadline,
and a release hands over at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.leader.election import LeaseRecord, Timing
from modelrollout.leader.elector import LeaderElector, NotLeader
from modelrollout.leader.lease import LeaseConflict
from modelrollout.telemetry import REGISTRY

TIMING = Timing(lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class MemoryLease:
    """A LeaseStore with the API server's optimistic concurrency: each write bumps the resourceVersion."""

    record: LeaseRecord | None = None
    version: int = 0
    failure: Exception | None = None
    hang: bool = False
    writes: list[LeaseRecord] = field(default_factory=list)
    meddle: list[LeaseRecord] = field(default_factory=list)  # written by "someone else" between a read and a write

    async def read(self) -> tuple[LeaseRecord, str] | None:
        if self.hang:
            await asyncio.Event().wait()
        if self.failure is not None:
            raise self.failure
        return (self.record, str(self.version)) if self.record is not None else None

    def _write(self, record: LeaseRecord) -> str:
        self.record, self.version = record, self.version + 1
        self.writes.append(record)
        return str(self.version)

    async def create(self, record: LeaseRecord) -> str:
        if self.meddle:
            self._write(self.meddle.pop())
        if self.record is not None:
            raise LeaseConflict("exists")
        return self._write(record)

    async def update(self, record: LeaseRecord, resource_version: str) -> str:
        if self.meddle:
            self._write(self.meddle.pop())
        if resource_version != str(self.version):
            raise LeaseConflict("changed")
        return self._write(record)


class Replica:
    def __init__(self, name: str, store: MemoryLease, clock: Clock) -> None:
        self.lost: list[str] = []
        self.elector = LeaderElector(
            store,
            identity=name,
            timing=TIMING,
            on_lost=self.lost.append,
            clock=clock,
            # The times written move on as real ones do (a renewal is a change); never read back to decide.
            wall=lambda: datetime.fromtimestamp(clock.now, UTC),
            jitter=lambda: 0.0,
        )

    async def round(self) -> None:
        await self.elector.round()


def leads(replica: Replica) -> bool:
    return replica.elector.is_leader


def leader_gauge() -> float | None:
    return REGISTRY.get_sample_value("modelrollout_leader")


def transitions() -> float:
    return REGISTRY.get_sample_value("modelrollout_leader_transitions_total") or 0.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryLease:
    return MemoryLease()


async def test_the_first_replica_creates_the_lease_and_leads_at_once(store: MemoryLease, clock: Clock) -> None:
    a = Replica("a", store, clock)
    assert not a.elector.read_once.is_set()
    await a.round()
    assert leads(a)
    assert a.elector.leading.is_set()
    assert a.elector.read_once.is_set()
    assert store.record is not None
    assert store.record.holder == "a"
    assert leader_gauge() == 1
    a.elector.check()  # the fence lets its calls through


async def test_a_second_replica_waits_then_takes_over_a_lease_no_longer_renewed(
    store: MemoryLease, clock: Clock
) -> None:
    a, b = Replica("a", store, clock), Replica("b", store, clock)
    await a.round()
    await b.round()
    assert not leads(b)
    assert b.elector.read_once.is_set()
    assert b.elector.holder == "a"
    with pytest.raises(NotLeader):
        b.elector.check()  # a standby's machinery is not running; if it were, it could not call the API

    # a renews every 2 s while b watches: b never takes it
    for _ in range(10):
        clock.now += 2
        await a.round()
        await b.round()
    assert leads(a)
    assert not leads(b)

    # a stops renewing (killed): b takes over once it has seen no change for 15 s of its own clock
    counted = transitions()
    clock.now += 14.9
    await b.round()
    assert not leads(b)
    clock.now += 0.1
    await b.round()
    assert leads(b)
    assert store.record is not None
    assert (store.record.holder, store.record.transitions) == ("b", 1)
    assert transitions() == counted + 1


async def test_a_leader_that_finds_the_lease_taken_is_out(store: MemoryLease, clock: Clock) -> None:
    a = Replica("a", store, clock)
    await a.round()
    store.record = LeaseRecord("b", 15, None, None, 1)  # b took it (a was paused, say)
    store.version += 1
    clock.now += 2
    await a.round()
    assert a.lost == ["the lease is held by b"]
    assert not leads(a)
    assert not a.elector.leading.is_set()
    assert leader_gauge() == 0


async def test_a_leader_that_cannot_renew_is_out_at_its_renew_deadline(store: MemoryLease, clock: Clock) -> None:
    a = Replica("a", store, clock)
    await a.round()
    store.failure = ApiException(status=500, reason="etcd timed out")
    for _ in range(4):
        clock.now += 2
        await a.round()
    assert leads(a)
    assert not a.lost
    clock.now += 2
    await a.round()
    assert not leads(a)
    assert a.lost == ["not renewed within the renew deadline (10s)"]


async def test_the_fence_stops_a_leader_whose_renewals_were_held_up_before_its_next_call(
    store: MemoryLease, clock: Clock
) -> None:
    a = Replica("a", store, clock)
    await a.round()
    clock.now += 9.9
    a.elector.check()
    clock.now += 0.1  # the loop has not run (a paused process, a blocked event loop): the next call is refused
    with pytest.raises(NotLeader):
        a.elector.check()
    assert a.lost == ["not renewed within the renew deadline (noticed before an API call)"]


async def test_a_request_that_hangs_cannot_outlast_the_renew_deadline(store: MemoryLease, clock: Clock) -> None:
    a = Replica("a", store, clock)
    await a.round()
    store.hang = True
    clock.now += 9.95  # 50 ms of real time left until the deadline: the round's timeout
    await asyncio.wait_for(a.round(), timeout=2)
    assert leads(a)  # the timeout is measured by the event loop; our clock has not moved
    clock.now += 0.05
    await asyncio.wait_for(a.round(), timeout=2)
    assert not leads(a)


async def test_when_two_race_for_a_free_lease_the_conditional_write_picks_one(store: MemoryLease, clock: Clock) -> None:
    a, b = Replica("a", store, clock), Replica("b", store, clock)
    store.meddle.append(LeaseRecord("a", 15, None, None, 0))  # a's create lands between b's read and b's create
    await b.round()
    assert not leads(b)
    assert not b.lost
    store.record = LeaseRecord("", 1, None, None, 3)  # released
    store.meddle.append(LeaseRecord("a", 15, None, None, 4))  # a takes it between b's read and b's update
    await b.round()
    assert not leads(b)
    await a.round()
    assert leads(a)


async def test_a_release_hands_over_at_once(store: MemoryLease, clock: Clock) -> None:
    a, b = Replica("a", store, clock), Replica("b", store, clock)
    await a.round()
    await b.round()
    await a.elector.release()
    assert not leads(a)
    assert not a.lost
    assert store.record is not None
    assert store.record.holder == ""
    await b.round()  # no waiting for expiry
    assert leads(b)
    assert store.record is not None
    assert (store.record.holder, store.record.transitions) == ("b", 1)


async def test_a_standby_has_nothing_to_release(store: MemoryLease, clock: Clock) -> None:
    a, b = Replica("a", store, clock), Replica("b", store, clock)
    await a.round()
    await b.round()
    writes = len(store.writes)
    await b.elector.release()
    assert len(store.writes) == writes


async def test_a_failed_release_leaves_the_lease_to_expire(store: MemoryLease, clock: Clock) -> None:
    a = Replica("a", store, clock)
    await a.round()
    store.meddle.append(LeaseRecord("b", 15, None, None, 1))
    await a.elector.release()  # conflict: logged, not raised
    assert not leads(a)
    assert store.record is not None
    assert store.record.holder == "b"


async def test_the_run_loop_renews_every_retry_period_and_stops_on_cancel(store: MemoryLease) -> None:
    fast = Timing(lease_duration_s=1, renew_deadline_s=0.5, retry_period_s=0.02)
    elector = LeaderElector(store, identity="a", timing=fast, on_lost=lambda reason: None)
    running = asyncio.create_task(elector.run())
    await asyncio.wait_for(elector.leading.wait(), timeout=2)
    await asyncio.sleep(0.2)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert len(store.writes) >= 5  # a create, then renewals
    assert {r.holder for r in store.writes} == {"a"}
