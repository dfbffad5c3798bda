"""How the share document follows the rollout (pure): the engine decides the roles and the candidate's percent
(status.stable, status.canary, status.weights); this turns each decision into the next share document
(modelrollout_contract.stream) with exact hand-overs, and says which revisions' consumers must run.

- A candidate's percent changes: a new epoch; the leader cuts it at its next batch.
- Promotion (the engine made the candidate stable; also strategy direct, and a hybrid spec's stream following the
  revision online promoted): first `leader -> candidate, 100, final`; once both revisions' committed offsets
  passed that cutover on every partition (their metrics), the candidate leads alone and the old leader's consumers
  go (it scores nothing after the cutover, and everything before it is committed).
- Rollback (the engine dropped the candidate): first `leader -> candidate, 0, final`; once the candidate passed it
  on every partition (its records before the cutover are scored), the leader goes on alone and the candidate's
  consumers go.

Nothing is waited for by time: by the epochs the consumers report (RevisionProgress)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from modelrollout.api.status import RevisionRef, StreamShare


@dataclass(frozen=True, slots=True)
class Reached:
    """Per revision, the lowest epoch its committed offsets reached and over how many partitions; and the input
    topic's partition count (None while no consumer reports it)."""

    epochs: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    partitions: int | None = None

    def passed(self, revision: str, epoch: int) -> bool:
        got = self.epochs.get(revision)
        return self.partitions is not None and got is not None and got[1] >= self.partitions and got[0] >= epoch


@dataclass(frozen=True, slots=True)
class ShareDecision:
    share: StreamShare
    running: frozenset[str]  # revisions whose consumers run
    waiting: str | None = None
    event: tuple[str, str] | None = None  # (reason, message) of a hand-over that completed


def _same(a: RevisionRef | None, b: RevisionRef | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a.revision == b.revision)


def _next(
    prev: StreamShare, leader: RevisionRef, follower: RevisionRef | None, percent: int, *, final: bool = False
) -> StreamShare:
    return StreamShare(epoch=prev.epoch + 1, leader=leader, follower=follower, percent=percent, final=final)


def _revisions(*refs: RevisionRef | None) -> frozenset[str]:
    return frozenset(ref.revision for ref in refs if ref is not None)


def next_share(
    prev: StreamShare | None, *, stable: RevisionRef, canary: RevisionRef | None, percent: int, reached: Reached
) -> ShareDecision:
    """The share after this pass, given the engine's roles (`canary` at `percent`) and the epochs reached."""
    wanted = _revisions(stable, canary)
    if prev is None:
        share = StreamShare(epoch=0, leader=stable, follower=canary, percent=percent if canary else 0)
        return ShareDecision(share, wanted)
    leader, follower = prev.leader, prev.follower
    if prev.final and follower is not None:
        # A hand-over under way finishes first, whatever the engine decided since: a final pair's shares never
        # change (its follower scores past the cutover without waiting for the leader).
        if prev.percent == 100:
            return _promote(prev, follower, wanted, reached)
        return _hand_back(prev, wanted, reached)
    if leader.revision != stable.revision:
        return _promote(prev, stable, wanted, reached)
    if follower is not None and (prev.final or not _same(follower, canary)):
        return _hand_back(prev, wanted, reached)
    share = StreamShare(epoch=prev.epoch, leader=stable, follower=canary, percent=percent if canary else 0)
    if share.model_copy(update={"epoch": prev.epoch}) != prev:
        share = share.model_copy(update={"epoch": prev.epoch + 1})
    return ShareDecision(share, wanted | _revisions(leader, follower))


def _promote(prev: StreamShare, stable: RevisionRef, wanted: frozenset[str], reached: Reached) -> ShareDecision:
    """`stable` is to lead in place of prev.leader: give it every record at one cutover, then let it lead."""
    leader, follower = prev.leader, prev.follower
    if follower is not None and follower.revision != stable.revision:
        return _hand_back(prev, wanted, reached)  # another candidate still holds a share: it hands it back first
    running = wanted | _revisions(leader, stable)
    if not (prev.final and prev.percent == 100 and follower is not None):
        waiting = f"revision {stable.revision} takes every record over from {leader.revision}"
        return ShareDecision(_next(prev, leader, stable, 100, final=True), running, waiting=waiting)
    if reached.passed(leader.revision, prev.epoch) and reached.passed(stable.revision, prev.epoch):
        message = f"revision {stable.revision} scores every record from epoch {prev.epoch}'s cutover on"
        return ShareDecision(_next(prev, stable, None, 0), wanted | _revisions(stable),
                             event=("StreamHandedOver", message))  # fmt: skip
    waiting = (f"the promotion's cutover (epoch {prev.epoch}) to be committed by {leader.revision} and "
               f"{stable.revision} on every partition")  # fmt: skip
    return ShareDecision(prev, running, waiting=waiting)


def _hand_back(prev: StreamShare, wanted: frozenset[str], reached: Reached) -> ShareDecision:
    """The follower leaves: its share goes back to the leader at one cutover, then it stops."""
    leader, follower = prev.leader, prev.follower
    assert follower is not None
    running = wanted | _revisions(leader, follower)
    if not (prev.final and prev.percent == 0):
        waiting = f"revision {follower.revision} hands its records back to {leader.revision}"
        return ShareDecision(_next(prev, leader, follower, 0, final=True), running, waiting=waiting)
    if reached.passed(follower.revision, prev.epoch):
        message = f"revision {follower.revision}'s records are back with {leader.revision} from epoch {prev.epoch}"
        return ShareDecision(_next(prev, leader, None, 0), wanted | _revisions(leader),
                             event=("StreamHandedBack", message))  # fmt: skip
    waiting = f"revision {follower.revision} to commit past the rollback's cutover (epoch {prev.epoch})"
    return ShareDecision(prev, running, waiting=waiting)
