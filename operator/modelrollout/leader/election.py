"""Leader election over a coordination.k8s.io/v1 Lease, decided by pure functions: what this replica knows of
the lease (`Election`), what it saw now, and its own clock -> what to do (`Create`, `Update`, `Wait`, `Lost`).
The I/O is `leader.elector` (the loop) and `leader.lease` (the API calls).

The rules are client-go's (k8s.io/client-go/tools/leaderelection), so that the lease reads the same to anyone
who knows Kubernetes controllers:

- A lease is expired when its record (holder, renewTime, ...) has not changed for `leaseDurationSeconds` (the
  holder's own figure, from the record) measured on OUR monotonic clock from the moment WE saw it change. The
  timestamps in the record are written by another machine's clock and are never compared with ours: a skewed
  or stepped clock on either side cannot shorten a lease.
- Taking or renewing the lease is a write conditional on the resourceVersion we read: when two replicas try at
  once, the API server lets one win and answers the other 409 (the elector treats that as "someone else won").
- The leader must renew within `renewDeadline` of its last successful renewal (counted from when that request
  was SENT, the earliest the API server can have written it) or it stops: `renewDeadline < leaseDuration`
  leaves the difference as the margin between the old leader stopping and anyone else being able to start.
- A released lease (holder "") is free at once: a graceful shutdown hands over without waiting for expiry.
- `leaseTransitions` counts changes of holder (a release is not one; the next holder's acquisition is).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

# Lease times are MicroTime: RFC 3339 with microseconds, always UTC.
MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
# A standby polls every retryPeriod stretched by up to this share (client-go's jitter), so standbys that
# started together do not all ask at the same instant.
JITTER = 0.2
# What a release writes as the lease duration: client-go's value, so that an elector that does not treat an empty
# holder as free still sees the lease expire one second after it saw the release.
RELEASED_DURATION_S = 1


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The lease's spec, the part of it election is about."""

    holder: str  # "" when nobody holds it (released)
    duration_s: int  # leaseDurationSeconds, as declared by the holder
    acquired: datetime | None
    renewed: datetime | None
    transitions: int


@dataclass(frozen=True, slots=True)
class Timing:
    lease_duration_s: int
    renew_deadline_s: float
    retry_period_s: float

    def takeover_bound_s(self) -> float:
        """The longest a standby can take to hold a lease whose holder died just after renewing it: it sees that
        renewal up to one (jittered) retry period late, waits the lease duration from then, and asks again up to
        one retry period after it expired. API latency comes on top."""
        return self.lease_duration_s + 2 * (1 + JITTER) * self.retry_period_s


@dataclass(frozen=True, slots=True)
class Election:
    """What one replica knows of the lease; replaced by each step, never mutated."""

    identity: str
    observed: LeaseRecord | None = None  # the record as last read or written; None: no lease (or not read yet)
    observed_at: float | None = None  # monotonic time `observed` last CHANGED (first seen counts as a change)
    renewed_at: float | None = None  # monotonic time our last successful acquire/renew was sent; None: standby

    @property
    def leading(self) -> bool:
        return self.renewed_at is not None


@dataclass(frozen=True, slots=True)
class Create:
    """No lease exists: create it, holding it."""

    record: LeaseRecord


@dataclass(frozen=True, slots=True)
class Update:
    """Write this record over the one read (conditional on its resourceVersion): acquire or renew."""

    record: LeaseRecord
    acquiring: bool  # False: a renewal of a lease we already hold


@dataclass(frozen=True, slots=True)
class Wait:
    """Someone else holds a live lease; ask again later."""

    holder: str
    expires_in_s: float  # on our clock, if it is not renewed meanwhile


@dataclass(frozen=True, slots=True)
class Lost:
    """We were leading and no longer are: stop every writer now."""

    reason: str


Decision = Create | Update | Wait | Lost


def observe(election: Election, found: LeaseRecord | None, now: float) -> Election:
    """Take in the record just read. The expiry clock restarts only when the record changed: a lease that is
    renewed keeps changing (renewTime), a dead holder's lease does not."""
    if election.observed_at is not None and found == election.observed:
        return election
    return replace(election, observed=found, observed_at=now)


def deadline_passed(election: Election, now: float, timing: Timing) -> bool:
    """The leader has not renewed within renewDeadline: it must stop before anyone may consider the lease free."""
    return election.renewed_at is not None and now - election.renewed_at >= timing.renew_deadline_s


def decide(election: Election, now: float, wall: datetime, timing: Timing) -> Decision:
    """What to do with the lease as observed (call `observe` first). `now` is our monotonic clock, `wall` the
    time written into the record (informational for humans and other tools; never used to decide)."""
    if deadline_passed(election, now, timing):
        assert election.renewed_at is not None
        return Lost(f"not renewed for {now - election.renewed_at:.1f}s (renewDeadline {timing.renew_deadline_s:g}s)")
    record = election.observed
    if record is None:
        return Create(LeaseRecord(election.identity, timing.lease_duration_s, wall, wall, 0))
    if record.holder == election.identity:
        renewed = LeaseRecord(
            election.identity, timing.lease_duration_s, record.acquired or wall, wall, record.transitions
        )
        return Update(renewed, acquiring=not election.leading)
    if election.leading and record.holder:
        return Lost(f"the lease is held by {record.holder}")
    # A released lease (holder "", or cleared by hand) is free now; the conditional write settles any race.
    assert election.observed_at is not None  # set together with `observed`
    expires_in = election.observed_at + record.duration_s - now if record.holder else 0.0
    if expires_in > 0:
        return Wait(record.holder, expires_in)
    taken = LeaseRecord(election.identity, timing.lease_duration_s, wall, wall, record.transitions + 1)
    return Update(taken, acquiring=not election.leading)


def written(election: Election, record: LeaseRecord, sent_at: float, now: float) -> Election:
    """Our create or update of `record`, sent at `sent_at`, succeeded: we lead, renewed as of `sent_at`."""
    return replace(election, observed=record, observed_at=now, renewed_at=sent_at)


def stepped_down(election: Election) -> Election:
    """No longer leading (lost, or released)."""
    return replace(election, renewed_at=None)


def release(election: Election, wall: datetime) -> LeaseRecord | None:
    """The record that hands the lease over at once (client-go's ReleaseOnCancel); None when we do not hold it."""
    record = election.observed
    if not election.leading or record is None or record.holder != election.identity:
        return None
    return LeaseRecord("", RELEASED_DURATION_S, wall, wall, record.transitions)


def transitions_seen(before: LeaseRecord | None, after: LeaseRecord | None) -> int:
    """How many changes of holder the lease counted between two observations (0 on the first: a baseline)."""
    if before is None or after is None:
        return 0
    return max(0, after.transitions - before.transitions)


# --- the lease object ------------------------------------------------------------------------------------------


def _format_time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime(MICRO_TIME) if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:  # MicroTime, or a plain RFC 3339 time written by another tool
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def record_of(lease: dict[str, Any]) -> LeaseRecord:
    """A Lease object's record; missing fields read as client-go reads them (empty, zero)."""
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_s=int(spec.get("leaseDurationSeconds") or 0),
        acquired=_parse_time(spec.get("acquireTime")),
        renewed=_parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def lease_spec(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration_s,
        "acquireTime": _format_time(record.acquired),
        "renewTime": _format_time(record.renewed),
        "leaseTransitions": record.transitions,
    }


# --- who and where -----------------------------------------------------------------------------------------------


def identity(*, explicit: str | None, pod_name: str | None, hostname: str, suffix: str) -> str:
    """This process's holderIdentity: the explicit setting, else `<pod or host>_<random>` as controller-runtime
    does. The suffix makes each process a new candidate, so a restarted container never mistakes the lease its
    predecessor held for its own while that predecessor might still be writing."""
    if explicit:
        return explicit
    return f"{pod_name or hostname}_{suffix}"


def lease_namespace(
    *, explicit: str | None, pod_namespace: str | None, serviceaccount_namespace: str | None, watched: list[str]
) -> str | None:
    """Where the lease lives: the setting; else the operator's own namespace (POD_NAMESPACE from the downward API,
    or the ServiceAccount's namespace file in a pod); else, out of cluster, the one namespace watched. None when
    none applies (out of cluster, watching several or all namespaces): the setting is then required."""
    for candidate in (explicit, pod_namespace, serviceaccount_namespace):
        if candidate and candidate.strip():
            return candidate.strip()
    return watched[0] if len(watched) == 1 else None
