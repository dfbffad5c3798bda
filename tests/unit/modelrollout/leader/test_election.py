"""The election rules, case by case: who creates, renews, waits, takes over, and when a leader has lost."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from modelrollout.leader.election import (
    Create,
    Election,
    LeaseRecord,
    Lost,
    Timing,
    Update,
    Wait,
    deadline_passed,
    decide,
    identity,
    lease_namespace,
    lease_spec,
    observe,
    record_of,
    release,
    stepped_down,
    transitions_seen,
    written,
)

TIMING = Timing(lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)
WALL = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
EARLIER = WALL - timedelta(hours=1)
ME, OTHER = "operator-0_aaaa", "operator-1_bbbb"


def held_by(holder: str, *, transitions: int = 4, duration_s: int = 15, renewed: datetime = EARLIER) -> LeaseRecord:
    return LeaseRecord(holder, duration_s, EARLIER, renewed, transitions)


def seen(record: LeaseRecord | None, at: float, **fields: float | None) -> Election:
    """An election that saw `record` at monotonic time `at`."""
    return replace(observe(Election(identity=ME), record, at), **fields)  # type: ignore[arg-type]


# --- a standby ----------------------------------------------------------------------------------------------------


def test_no_lease_is_created_holding_it_with_no_transition_yet() -> None:
    decision = decide(seen(None, 100.0), 100.0, WALL, TIMING)
    assert decision == Create(LeaseRecord(ME, 15, WALL, WALL, 0))


def test_a_live_lease_of_another_is_waited_for_until_it_expires_on_our_clock() -> None:
    election = seen(held_by(OTHER), 100.0)
    assert decide(election, 100.0, WALL, TIMING) == Wait(OTHER, 15.0)
    assert decide(election, 114.5, WALL, TIMING) == Wait(OTHER, 0.5)


def test_an_expired_lease_is_taken_over_counting_one_transition() -> None:
    election = seen(held_by(OTHER, transitions=4), 100.0)
    decision = decide(election, 115.0, WALL, TIMING)
    assert decision == Update(LeaseRecord(ME, 15, WALL, WALL, 5), acquiring=True)


def test_expiry_uses_the_holders_declared_duration_not_ours() -> None:
    election = seen(held_by(OTHER, duration_s=60), 100.0)
    assert isinstance(decide(election, 115.0, WALL, TIMING), Wait)
    assert isinstance(decide(election, 160.0, WALL, TIMING), Update)


def test_the_record_times_are_never_trusted_a_lease_renewed_long_ago_by_its_clock_is_still_live() -> None:
    # renewTime an hour in the past (a skewed clock, or ours): what counts is that we saw it change just now.
    election = seen(held_by(OTHER, renewed=WALL - timedelta(hours=1)), 100.0)
    assert isinstance(decide(election, 101.0, WALL, TIMING), Wait)


def test_a_renewed_lease_restarts_the_expiry_clock_an_unchanged_one_does_not() -> None:
    election = seen(held_by(OTHER), 100.0)
    unchanged = observe(election, held_by(OTHER), 110.0)
    assert unchanged.observed_at == 100.0
    renewed = observe(unchanged, held_by(OTHER, renewed=WALL), 110.0)
    assert renewed.observed_at == 110.0
    assert decide(unchanged, 116.0, WALL, TIMING) == Update(LeaseRecord(ME, 15, WALL, WALL, 5), acquiring=True)
    assert decide(renewed, 116.0, WALL, TIMING) == Wait(OTHER, 9.0)


def test_a_new_holder_restarts_the_expiry_clock_too() -> None:
    election = observe(seen(held_by(OTHER), 100.0), held_by("operator-2_cccc", transitions=5), 112.0)
    assert decide(election, 120.0, WALL, TIMING) == Wait("operator-2_cccc", 7.0)


def test_a_released_lease_is_free_at_once() -> None:
    election = seen(held_by("", duration_s=1, transitions=4), 100.0)
    assert decide(election, 100.0, WALL, TIMING) == Update(LeaseRecord(ME, 15, WALL, WALL, 5), acquiring=True)


def test_a_lease_naming_us_that_we_do_not_lead_is_ours_to_renew_without_a_transition() -> None:
    # The same identity after a restart (an explicit MODELROLLOUT_LEADER_IDENTITY): we were the holder.
    election = seen(held_by(ME, transitions=4), 100.0)
    decision = decide(election, 100.0, WALL, TIMING)
    assert decision == Update(LeaseRecord(ME, 15, EARLIER, WALL, 4), acquiring=True)


# --- the leader ---------------------------------------------------------------------------------------------------


def leader(at: float = 100.0, *, transitions: int = 4) -> Election:
    """We took the lease with a request sent at `at`."""
    mine = LeaseRecord(ME, 15, EARLIER, EARLIER, transitions)
    return written(Election(identity=ME), mine, at, at + 0.01)


def test_the_leader_renews_keeping_its_acquire_time_and_transitions() -> None:
    election = observe(leader(), LeaseRecord(ME, 15, EARLIER, EARLIER, 4), 102.0)
    decision = decide(election, 102.0, WALL, TIMING)
    assert decision == Update(LeaseRecord(ME, 15, EARLIER, WALL, 4), acquiring=False)


def test_a_renewal_counts_from_when_it_was_sent() -> None:
    election = written(leader(100.0), LeaseRecord(ME, 15, EARLIER, WALL, 4), 108.0, 109.5)
    assert election.renewed_at == 108.0
    assert not deadline_passed(election, 117.9, TIMING)
    assert deadline_passed(election, 118.0, TIMING)


def test_the_leader_has_lost_once_not_renewed_for_the_renew_deadline_whatever_the_lease_says() -> None:
    election = observe(leader(100.0), LeaseRecord(ME, 15, EARLIER, EARLIER, 4), 109.0)
    assert isinstance(decide(election, 109.99, WALL, TIMING), Update)
    lost = decide(election, 110.0, WALL, TIMING)
    assert isinstance(lost, Lost)
    assert "renewDeadline 10s" in lost.reason


def test_the_leader_has_lost_when_someone_else_holds_the_lease() -> None:
    election = observe(leader(), held_by(OTHER, transitions=5), 101.0)
    assert decide(election, 101.0, WALL, TIMING) == Lost(f"the lease is held by {OTHER}")


def test_a_leader_whose_lease_was_cleared_takes_it_again() -> None:
    election = observe(leader(), held_by("", transitions=4), 101.0)
    assert decide(election, 101.0, WALL, TIMING) == Update(LeaseRecord(ME, 15, WALL, WALL, 5), acquiring=False)


def test_a_leader_whose_lease_was_deleted_creates_it_again() -> None:
    election = observe(leader(), None, 101.0)
    assert decide(election, 101.0, WALL, TIMING) == Create(LeaseRecord(ME, 15, WALL, WALL, 0))


def test_the_renew_deadline_leaves_a_margin_before_anyone_else_may_take_over() -> None:
    """The leader stops renew_deadline after its last renewal was SENT; a standby that saw that renewal (at the
    earliest when it was sent) waits lease_duration from then. Hence never two leaders at once."""
    election = leader(100.0)
    standby = seen(LeaseRecord(ME, 15, EARLIER, WALL, 4), 100.0)
    standby = replace(standby, identity=OTHER)
    for now in (105.0, 109.9, 110.0, 114.9):
        leads = not deadline_passed(election, now, TIMING)
        takes = isinstance(decide(standby, now, WALL, TIMING), Update)
        assert not (leads and takes), now
    assert isinstance(decide(standby, 115.0, WALL, TIMING), Update)


# --- release, transitions -------------------------------------------------------------------------------------------


def test_release_clears_the_holder_keeps_the_transitions_and_expires_in_a_second() -> None:
    assert release(leader(transitions=7), WALL) == LeaseRecord("", 1, WALL, WALL, 7)


def test_nothing_to_release_unless_we_lead_and_hold_it() -> None:
    assert release(seen(held_by(OTHER), 100.0), WALL) is None
    assert release(stepped_down(leader()), WALL) is None
    assert release(observe(leader(), held_by(OTHER), 101.0), WALL) is None


def test_transitions_are_counted_between_two_observations_only() -> None:
    assert transitions_seen(None, held_by(OTHER, transitions=9)) == 0
    assert transitions_seen(held_by(OTHER, transitions=4), held_by(ME, transitions=5)) == 1
    assert transitions_seen(held_by(OTHER, transitions=4), held_by(OTHER, transitions=7)) == 3
    assert transitions_seen(held_by(OTHER, transitions=4), None) == 0
    assert transitions_seen(held_by(OTHER, transitions=4), held_by(OTHER, transitions=0)) == 0  # recreated


def test_timing_bound_of_a_takeover_after_the_leader_died() -> None:
    assert TIMING.takeover_bound_s() == pytest.approx(15 + 2 * 1.2 * 2)


# --- the Lease object ------------------------------------------------------------------------------------------


def test_a_record_round_trips_through_the_lease_spec_in_micro_time() -> None:
    record = LeaseRecord(ME, 15, EARLIER, WALL, 3)
    spec = lease_spec(record)
    assert spec == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-11-24T11:00:00.123456Z",
        "renewTime": "2026-11-24T12:00:00.123456Z",
        "leaseTransitions": 3,
    }
    assert record_of({"spec": spec}) == record


def test_a_lease_written_by_someone_else_reads_with_defaults_for_what_it_lacks() -> None:
    assert record_of({"spec": {}}) == LeaseRecord("", 0, None, None, 0)
    assert record_of({}) == LeaseRecord("", 0, None, None, 0)
    plain = record_of({"spec": {"holderIdentity": OTHER, "renewTime": "2026-11-24T12:00:00Z", "acquireTime": "x"}})
    assert plain.renewed == datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert plain.acquired is None


# --- who and where ------------------------------------------------------------------------------------------------


def test_identity_is_the_setting_else_pod_or_host_with_a_suffix() -> None:
    assert identity(explicit="fixed", pod_name="pod-1", hostname="host", suffix="ab12") == "fixed"
    assert identity(explicit=None, pod_name="pod-1", hostname="host", suffix="ab12") == "pod-1_ab12"
    assert identity(explicit="", pod_name=None, hostname="host", suffix="ab12") == "host_ab12"


@pytest.mark.parametrize(
    ("explicit", "pod", "account", "watched", "expected"),
    [
        ("ops", "pod-ns", "sa-ns", ["a"], "ops"),
        (None, "pod-ns", "sa-ns", ["a"], "pod-ns"),
        (None, None, "sa-ns\n", ["a"], "sa-ns"),
        (None, "", " ", ["a"], "a"),
        (None, None, None, ["a", "b"], None),
        (None, None, None, [], None),
    ],
)
def test_the_lease_namespace_rule(
    explicit: str | None, pod: str | None, account: str | None, watched: list[str], expected: str | None
) -> None:
    found = lease_namespace(explicit=explicit, pod_namespace=pod, serviceaccount_namespace=account, watched=watched)
    assert found == expected
