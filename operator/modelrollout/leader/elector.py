"""The loop that takes and keeps the lease: every retry period it reads the lease, asks `leader.election` what to
do, and does it. A thin shell: every rule is in `election`.

Losing the lease ends the process (`on_lost`, which `main` makes an immediate non-zero exit), as client-go's
leaders do (OnStoppedLeading -> os.Exit): tearing down Kopf, the resync loop, the wake-up timers and every
in-flight pass one by one could leave one of them writing for a while; an exit stops them all at once, and
Kubernetes restarts the container as a standby. `check` is the same decision made before every API call of the
operator's machinery (the KubeClient's guard), so a leader whose renewals were held up stops at its next call
rather than at the loop's next round.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import ClientError
from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.leader.election import (
    JITTER,
    Create,
    Election,
    LeaseRecord,
    Lost,
    Timing,
    Update,
    Wait,
    deadline_passed,
    decide,
    observe,
    release,
    stepped_down,
    transitions_seen,
    written,
)
from modelrollout.leader.lease import LeaseConflict, LeaseStore
from modelrollout.telemetry import LEADER, LEADER_TRANSITIONS

logger = logging.getLogger(__name__)


class NotLeader(RuntimeError):
    """An API call by the operator's machinery on a replica that does not hold the lease (only reachable where
    `on_lost` returns, as in tests: in the operator it exits)."""


class LeaderElector:
    def __init__(
        self,
        store: LeaseStore,
        *,
        identity: str,
        timing: Timing,
        on_lost: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._timing = timing
        self._on_lost = on_lost
        self._clock = clock
        self._wall = wall
        self._jitter = jitter
        self._election = Election(identity=identity)
        self._version: str | None = None  # resourceVersion of the lease as last read or written
        self._waiting_on: str | None = None  # the holder last reported, so a standby logs changes only
        self.leading = asyncio.Event()  # set while this replica holds the lease
        self.read_once = asyncio.Event()  # set once the lease has been read (or found missing): readiness
        self.last_round: float | None = None  # monotonic end of the last round, for liveness

    @property
    def identity(self) -> str:
        return self._election.identity

    @property
    def is_leader(self) -> bool:
        return self._election.leading

    @property
    def holder(self) -> str | None:
        """The holder as last seen ("" released, None no lease or not read yet)."""
        return self._election.observed.holder if self._election.observed else None

    def check(self) -> None:
        """The fence: return only while this replica holds the lease within its renew deadline."""
        if deadline_passed(self._election, self._clock(), self._timing):
            self._lose("not renewed within the renew deadline (noticed before an API call)")
        if not self._election.leading:
            raise NotLeader(f"{self.identity} does not hold the lease")

    async def run(self) -> None:
        """Rounds until cancelled; a failed round (API error, timeout, conflict) is retried next period."""
        while True:
            await self.round()
            await asyncio.sleep(self._pause())

    async def round(self) -> None:
        sent = self._clock()
        try:
            async with asyncio.timeout(self._request_timeout(sent)):
                await self._try(sent)
        except LeaseConflict as exc:
            logger.debug("lease: %s; someone else wrote first", exc)
        except TimeoutError:
            logger.warning("lease: no answer from the API server within %.1fs", self._request_timeout(sent))
        except (ApiException, ClientError, OSError) as exc:  # the deadline below decides whether it matters yet
            logger.warning("lease: %s: %s", type(exc).__name__, exc)
        if deadline_passed(self._election, self._clock(), self._timing):
            self._lose(f"not renewed within the renew deadline ({self._timing.renew_deadline_s:g}s)")
        self.last_round = self._clock()

    async def _try(self, sent: float) -> None:
        found = await self._store.read()
        before = self._election.observed
        self._election = observe(self._election, found[0] if found else None, self._clock())
        self._version = found[1] if found else None
        self._count_transitions(before, self._election.observed)
        self.read_once.set()
        decision = decide(self._election, self._clock(), self._wall(), self._timing)
        if isinstance(decision, Lost):
            self._lose(decision.reason)
        elif isinstance(decision, Wait):
            if decision.holder != self._waiting_on:
                self._waiting_on = decision.holder
                logger.info("standby: lease held by %s (expires in %.1fs unless renewed)",
                            decision.holder, decision.expires_in_s)  # fmt: skip
        elif isinstance(decision, Create):
            self._version = await self._store.create(decision.record)
            self._took(decision.record, sent, acquiring=True)
        elif isinstance(decision, Update):
            assert self._version is not None  # an Update follows a read that found the lease
            self._version = await self._store.update(decision.record, self._version)
            self._took(decision.record, sent, acquiring=decision.acquiring)

    def _took(self, record: LeaseRecord, sent: float, *, acquiring: bool) -> None:
        before = self._election.observed
        self._election = written(self._election, record, sent, self._clock())
        self._count_transitions(before, record)
        if acquiring:
            self._waiting_on = None
            LEADER.set(1)
            self.leading.set()
            logger.info("leading: %s holds the lease (transitions %d)", self.identity, record.transitions)

    def _count_transitions(self, before: LeaseRecord | None, after: LeaseRecord | None) -> None:
        seen = transitions_seen(before, after)
        if seen:
            LEADER_TRANSITIONS.inc(seen)

    def _lose(self, reason: str) -> None:
        was_leading = self._election.leading
        self._election = stepped_down(self._election)
        self.leading.clear()
        LEADER.set(0)
        if was_leading:
            self._on_lost(reason)  # exits in the operator; returns in tests, which then see a standby

    async def release(self) -> None:
        """Hand the lease over at once (holder cleared), if we hold it; call only once every writer has stopped.
        Best effort: a failed release leaves the lease to expire."""
        record = release(self._election, self._wall())
        self._election = stepped_down(self._election)
        self.leading.clear()
        LEADER.set(0)
        if record is None or self._version is None:
            return
        try:
            async with asyncio.timeout(self._timing.renew_deadline_s):
                self._version = await self._store.update(record, self._version)
        except (LeaseConflict, TimeoutError, ApiException, ClientError, OSError) as exc:
            logger.warning("lease: not released (%s: %s); it expires in %ds", type(exc).__name__, exc,
                           self._timing.lease_duration_s)  # fmt: skip
            return
        logger.info("released the lease")

    def _pause(self) -> float:
        """Until the next round: a retry period (a standby's stretched by jitter), and never past the leader's
        renew deadline, so that a leader whose renewals fail stops on time."""
        timing = self._timing
        if not self._election.leading:
            return timing.retry_period_s * (1 + JITTER * self._jitter())
        assert self._election.renewed_at is not None
        left = self._election.renewed_at + timing.renew_deadline_s - self._clock()
        return max(0.0, min(timing.retry_period_s, left))

    def _request_timeout(self, sent: float) -> float:
        """A leader's round may not outlast its renew deadline; a standby's is bounded by the same figure."""
        if self._election.renewed_at is None:
            return self._timing.renew_deadline_s
        return max(0.001, self._election.renewed_at + self._timing.renew_deadline_s - sent)
