"""How the share document follows the engine's roles (modes.stream.share.next_share): a new epoch for every change
of the shares, and hand-overs that complete only once the consumers' committed offsets passed the final cutover on
every partition of the topic."""

from __future__ import annotations

import random

import pytest

from modelrollout.api.status import RevisionRef, StreamShare
from modelrollout.modes.stream.share import Reached, ShareDecision, next_share
from modelrollout_contract.stream import Member, ShareDocument

A = RevisionRef(revision="aaaa0001", version="1")
B = RevisionRef(revision="bbbb0002", version="2")
C = RevisionRef(revision="cccc0003", version="3")
PARTITIONS = 3
NOTHING = Reached()


def share(
    epoch: int, leader: RevisionRef, follower: RevisionRef | None = None, percent: int = 0, *, final: bool = False
) -> StreamShare:
    return StreamShare(epoch=epoch, leader=leader, follower=follower, percent=percent, final=final)


def reached(partitions: int | None = PARTITIONS, **epochs: tuple[int, int]) -> Reached:
    """`a=(epoch, partitions reported)`: the lowest epoch revision A's committed offsets reached, over how many."""
    names = {"a": A.revision, "b": B.revision, "c": C.revision}
    return Reached(epochs={names[k]: v for k, v in epochs.items()}, partitions=partitions)


def step(
    prev: StreamShare | None,
    *,
    stable: RevisionRef,
    canary: RevisionRef | None = None,
    percent: int = 0,
    seen: Reached = NOTHING,
) -> ShareDecision:
    return next_share(prev, stable=stable, canary=canary, percent=percent, reached=seen)


def running(*refs: RevisionRef) -> frozenset[str]:
    return frozenset(r.revision for r in refs)


# --- the first share and percent changes ------------------------------------------------------------------------


def test_the_first_share_is_epoch_zero_led_by_the_stable_revision() -> None:
    alone = step(None, stable=A)
    assert alone == ShareDecision(share(0, A), running(A))
    with_candidate = step(None, stable=A, canary=B, percent=20)
    assert with_candidate == ShareDecision(share(0, A, B, 20), running(A, B))
    # A percent without a candidate is no share of anyone's.
    assert step(None, stable=A, percent=40).share == share(0, A)


def test_a_percent_change_raises_the_epoch_and_the_same_decision_keeps_it() -> None:
    prev = share(3, A, B, 10)
    same = step(prev, stable=A, canary=B, percent=10)
    assert same == ShareDecision(prev, running(A, B)), "the same decision is the same document, same epoch"
    more = step(prev, stable=A, canary=B, percent=30)
    assert more == ShareDecision(share(4, A, B, 30), running(A, B))
    joined = step(share(3, A), stable=A, canary=B, percent=10)
    assert joined == ShareDecision(share(4, A, B, 10), running(A, B))
    assert step(share(3, A), stable=A) == ShareDecision(share(3, A), running(A))


# --- promotion ------------------------------------------------------------------------------------------------


def test_a_promotion_first_gives_the_candidate_every_record_at_a_final_cutover() -> None:
    decision = step(share(4, A, B, 50), stable=B)
    assert decision.share == share(5, A, B, 100, final=True)
    assert decision.running == running(A, B), "the old leader still chooses the cutover"
    assert decision.waiting == f"revision {B.revision} takes every record over from {A.revision}"
    assert decision.event is None


@pytest.mark.parametrize(
    "seen",
    [
        pytest.param(NOTHING, id="nothing-reported"),
        pytest.param(reached(None, a=(5, 3), b=(5, 3)), id="partitions-unknown"),
        pytest.param(reached(a=(5, 3), b=(5, 2)), id="candidate-on-fewer-partitions-than-the-topic"),
        pytest.param(reached(a=(5, 2), b=(5, 3)), id="old-leader-on-fewer-partitions-than-the-topic"),
        pytest.param(reached(a=(4, 3), b=(5, 3)), id="old-leader-before-the-cutover"),
        pytest.param(reached(a=(5, 3), b=(4, 3)), id="candidate-before-the-cutover"),
        pytest.param(reached(a=(5, 3)), id="candidate-not-reporting"),
        pytest.param(reached(b=(6, 3)), id="old-leader-not-reporting"),
        pytest.param(reached(c=(5, 3), b=(5, 3)), id="another-revision-reporting"),
    ],
)
def test_a_promotion_waits_until_both_revisions_passed_the_cutover_on_every_partition(seen: Reached) -> None:
    handing = share(5, A, B, 100, final=True)
    decision = step(handing, stable=B, seen=seen)
    assert decision.share == handing, "no new epoch while waiting"
    assert decision.running == running(A, B)
    assert decision.waiting == (
        f"the promotion's cutover (epoch 5) to be committed by {A.revision} and {B.revision} on every partition"
    )
    assert decision.event is None


@pytest.mark.parametrize(
    "seen",
    [reached(a=(5, 3), b=(5, 3)), reached(a=(6, 4), b=(7, 3))],
    ids=["at-the-cutover", "past-it-on-more-partitions"],
)
def test_the_candidate_leads_alone_once_both_passed_and_the_old_leader_stops(seen: Reached) -> None:
    decision = step(share(5, A, B, 100, final=True), stable=B, seen=seen)
    assert decision.share == share(6, B)
    assert decision.running == running(B), "the old leader's consumers go"
    assert decision.waiting is None
    assert decision.event == (
        "StreamHandedOver",
        f"revision {B.revision} scores every record from epoch 5's cutover on",
    )


def test_a_direct_promotion_without_a_follower_hands_over_the_same_way() -> None:
    started = step(share(0, A), stable=B)
    assert started.share == share(1, A, B, 100, final=True)
    assert started.running == running(A, B)
    assert started.waiting is not None
    assert step(started.share, stable=B, seen=reached(a=(1, 3))).share == started.share
    done = step(started.share, stable=B, seen=reached(a=(1, 3), b=(1, 3)))
    assert done.share == share(2, B)
    assert done.running == running(B)
    assert done.event is not None
    assert done.event[0] == "StreamHandedOver"


# --- rollback -------------------------------------------------------------------------------------------------


def test_a_rollback_hands_the_candidates_records_back_at_a_final_cutover() -> None:
    decision = step(share(4, A, B, 30), stable=A)
    assert decision.share == share(5, A, B, 0, final=True)
    assert decision.running == running(A, B), "the candidate scores its records before the cutover"
    assert decision.waiting == f"revision {B.revision} hands its records back to {A.revision}"
    assert decision.event is None


@pytest.mark.parametrize(
    "seen",
    [
        pytest.param(NOTHING, id="nothing-reported"),
        pytest.param(reached(None, b=(5, 3)), id="partitions-unknown"),
        pytest.param(reached(b=(5, 2)), id="fewer-partitions-than-the-topic"),
        pytest.param(reached(a=(9, 3), b=(4, 3)), id="candidate-before-the-cutover"),
    ],
)
def test_a_rollback_waits_for_the_candidate_only(seen: Reached) -> None:
    back = share(5, A, B, 0, final=True)
    decision = step(back, stable=A, seen=seen)
    assert decision.share == back
    assert decision.running == running(A, B)
    assert decision.waiting == f"revision {B.revision} to commit past the rollback's cutover (epoch 5)"
    done = step(back, stable=A, seen=reached(b=(5, 3)))  # the leader need not report anything
    assert done.share == share(6, A)
    assert done.running == running(A), "the candidate's consumers go"
    assert done.waiting is None
    assert done.event == (
        "StreamHandedBack",
        f"revision {B.revision}'s records are back with {A.revision} from epoch 5",
    )


def test_a_new_candidate_waits_until_the_previous_follower_handed_its_share_back() -> None:
    first = step(share(4, A, B, 30), stable=A, canary=C, percent=10)
    assert first.share == share(5, A, B, 0, final=True)
    assert first.running == running(A, B, C), "the new candidate's consumers start meanwhile, with no share"
    assert first.waiting is not None
    assert step(first.share, stable=A, canary=C, percent=10).share == first.share
    back = step(first.share, stable=A, canary=C, percent=10, seen=reached(b=(5, 3)))
    assert back.share == share(6, A)
    assert back.running == running(A, C)
    assert back.event is not None
    assert back.event[0] == "StreamHandedBack"
    joined = step(back.share, stable=A, canary=C, percent=10)
    assert joined == ShareDecision(share(7, A, C, 10), running(A, C))


def test_retrying_the_same_candidate_after_a_rollback_goes_through_the_leader_alone() -> None:
    rolled_back = step(share(4, A, B, 30), stable=A).share
    assert rolled_back == share(5, A, B, 0, final=True)
    retried = step(rolled_back, stable=A, canary=B, percent=10)
    assert retried.share == rolled_back, "a final pair keeps its shares: the retry waits for the hand-back"
    assert retried.running == running(A, B)
    assert retried.waiting is not None
    back = step(rolled_back, stable=A, canary=B, percent=10, seen=reached(b=(5, 3)))
    assert back.share == share(6, A), "the leader alone, at a cutover of its own"
    assert back.running == running(A, B), "the retried candidate keeps running, without a share"
    again = step(back.share, stable=A, canary=B, percent=10)
    assert again == ShareDecision(share(7, A, B, 10), running(A, B))


# --- a final pair keeps its shares ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canary", "percent"),
    [(None, 0), (C, 10), (C, 100)],
    ids=["promoted", "next-rollout-started", "next-rollout-at-100"],
)
def test_after_a_final_100_the_next_share_is_only_the_hand_over(canary: RevisionRef | None, percent: int) -> None:
    promoted = share(5, A, B, 100, final=True)
    waiting = step(promoted, stable=B, canary=canary, percent=percent)
    assert waiting.share == promoted
    done = step(promoted, stable=B, canary=canary, percent=percent, seen=reached(a=(5, 3), b=(5, 3)))
    assert done.share == share(6, B)
    assert done.running == running(B, *([canary] if canary else []))
    if canary is not None:
        assert step(done.share, stable=B, canary=canary, percent=percent).share == share(7, B, canary, percent)


@pytest.mark.parametrize(
    ("canary", "percent"), [(None, 0), (B, 50), (C, 10)], ids=["rolled-back", "retried", "another-candidate"]
)
def test_after_a_final_0_the_next_share_is_only_the_hand_back(canary: RevisionRef | None, percent: int) -> None:
    rolled_back = share(5, A, B, 0, final=True)
    assert step(rolled_back, stable=A, canary=canary, percent=percent).share == rolled_back
    done = step(rolled_back, stable=A, canary=canary, percent=percent, seen=reached(b=(5, 3)))
    assert done.share == share(6, A)


# A final pair promises its consumers that no later epoch changes their shares (modelrollout_contract.stream:
# the follower scores past a final cutover without waiting for the leader's commits). These engine decisions
# arrive while a hand-over still waits (a slow or unreachable Prometheus keeps it waiting) and must not undo it.
def test_a_later_promotion_does_not_undo_a_final_100_still_waiting() -> None:
    promoted = share(5, A, B, 100, final=True)
    decision = step(promoted, stable=C)  # strategy direct: C promoted while A -> B still waits for its epochs
    assert decision.share == promoted or decision.share == share(6, B)


def test_promoting_the_rolled_back_candidate_does_not_undo_a_final_0_still_waiting() -> None:
    rolled_back = share(5, A, B, 0, final=True)
    decision = step(rolled_back, stable=B)  # retry, then promote --full, while the hand-back still waits
    assert decision.share == rolled_back or decision.share == share(6, A)


# --- properties over any sequence of decisions ------------------------------------------------------------------


def _members(s: StreamShare) -> set[str]:
    return {r.revision for r in (s.leader, s.follower) if r is not None}


@pytest.mark.parametrize("seed", range(20))
def test_every_share_is_a_valid_document_and_no_revision_stops_before_its_hand_over(seed: int) -> None:
    rng = random.Random(seed)
    refs = [A, B, C]
    groups = {A.revision: "g", B.revision: "g-b", C.revision: "g-c"}
    prev: StreamShare | None = None
    for _ in range(200):
        stable = rng.choice(refs)
        canary = rng.choice([None, *(r for r in refs if r != stable)])
        percent = rng.choice([0, 10, 50, 100])
        epoch = prev.epoch if prev else 0
        seen = Reached(
            epochs={
                r.revision: (epoch + rng.choice([-1, 0, 1]), rng.choice([2, 3])) for r in refs if rng.random() < 0.8
            },
            partitions=rng.choice([None, PARTITIONS, PARTITIONS]),
        )
        decision = next_share(prev, stable=stable, canary=canary, percent=percent, reached=seen)
        new = decision.share
        ShareDocument(  # the contract's own rules: a follower of its own, final only at 0 or 100
            epoch=new.epoch,
            leader=Member(revision=new.leader.revision, group=groups[new.leader.revision]),
            follower=Member(revision=new.follower.revision, group=groups[new.follower.revision])
            if new.follower
            else None,
            percent=new.percent,
            final=new.final,
        )
        assert _members(new) <= decision.running, "whoever holds a share runs"
        assert {stable.revision, *([canary.revision] if canary else [])} <= decision.running
        if prev is None:
            assert new.epoch == 0
        else:
            assert new.epoch == prev.epoch + (new != prev), "one epoch per change, none without one"
            stopped = _members(prev) - decision.running
            for revision in stopped:
                assert decision.event is not None, "a revision holding a share stops only at a hand-over"
                assert seen.passed(revision, prev.epoch), f"{revision} stopped before passing epoch {prev.epoch}"
        assert (decision.waiting is not None) == new.final, "a hand-over says what it waits for while it stands"
        prev = new
