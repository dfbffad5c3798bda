"""The cutover protocol of a stream rollout, pure: the cutovers carried in an offset's metadata (and trimmed to fit
it), a partition's history of cutovers, which revision a cutover gives a bucket, how the leader chooses cutovers
and how any other consumer waits for the one governing a record; and, simulated with both revisions reading one
topic in random batches while the shares change, that every record is scored by exactly one of them, the one its
governing cutover names (a rollout, a rollback, a promotion that hands the lead over)."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field

import pytest

from modelrollout_contract.sticky import BUCKETS, message_bucket
from modelrollout_contract.stream import Member, ShareDocument
from modelserver.stream.cutover import (
    METADATA_MAX_CHARS,
    METADATA_PREFIX,
    Cutover,
    History,
    Partition,
    Placed,
    Shares,
    decode,
    encode,
)

R1, R2 = "r1", "r2"
G1, G2 = "shop.churn", "shop.churn-r2"
P0: Partition = ("events", 0)
P1: Partition = ("events", 1)


def document(
    epoch: int,
    *,
    leader: str = R1,
    follower: str | None = None,
    percent: int = 0,
    final: bool = False,
) -> ShareDocument:
    groups = {R1: G1, R2: G2}
    return ShareDocument(
        epoch=epoch,
        leader=Member(revision=leader, group=groups[leader]),
        follower=None if follower is None else Member(revision=follower, group=groups[follower]),
        percent=percent,
        final=final,
    )


def cut(offset: int, epoch: int, percent: int = 0, *, follower: str | None = R2, final: bool = False) -> Cutover:
    """A cutover the leader r1 chose."""
    return Cutover(offset, epoch, percent, R1, follower, final)


def placed(partition: Partition, offsets: range, bucket: int | None = None) -> list[Placed]:
    """Records of a partition; their buckets spread over every share unless one is given."""
    return [Placed(partition, o, (o * 613) % BUCKETS if bucket is None else bucket) for o in offsets]


# --- the cutovers in an offset's metadata -------------------------------------------------------------------------


def test_cutovers_read_back_from_the_metadata_they_are_written_to() -> None:
    cutovers = [
        Cutover(0, 0, 0, R1, None, False),
        Cutover(10, 1, 30, R1, R2, False),
        Cutover(10, 2, 50, R1, R2, False),
        Cutover(25, 3, 100, R1, R2, True),
        Cutover(40, 4, 0, R2, None, False),
    ]
    text = encode(cutovers)
    assert text.startswith(METADATA_PREFIX)
    assert decode(text) == cutovers
    assert decode(encode([])) == []
    # the rows are compact: [epoch, offset, percent, leader, follower ("" for none), final]
    assert json.loads(text[len(METADATA_PREFIX) :])[1] == [1, 10, 30, R1, R2, 0]


def test_decoded_cutovers_are_in_offset_order_whatever_the_order_of_the_rows() -> None:
    rows = [[2, 30, 50, R1, R2, 0], [0, 0, 0, R1, "", 0], [1, 10, 10, R1, R2, 0]]
    assert [c.epoch for c in decode(METADATA_PREFIX + json.dumps(rows))] == [0, 1, 2]


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "abc",
        '[[0,0,0,"r1","",0]]',  # our rows without our prefix: another tool's metadata
        "mr1:",
        "mr1:not json",
        "mr1:null",
        "mr1:7",
        "mr1:[1,2]",
        "mr1:[[0,0,0]]",
        'mr1:[[0,0,0,"r1","",0,9]]',
        'mr1:[["x",0,0,"r1","",0]]',
        'mr1:{"a":1}',
    ],
)
def test_metadata_that_is_not_ours_or_malformed_has_no_cutovers(text: str | None) -> None:
    assert decode(text) == []


def test_malformed_cutovers_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelserver.stream.cutover"):
        assert decode("mr1:[[0,0,0]]") == []
        assert decode("another tool's metadata") == []  # not ours: not a problem, not logged
    assert len(caplog.records) == 1
    assert "malformed cutovers" in caplog.records[0].getMessage()


def test_the_oldest_cutovers_are_dropped_to_fit_kafkas_metadata_limit() -> None:
    long_a, long_b = "a" * 63, "b" * 63
    cutovers = [Cutover(i * 10, i, i % 101, long_a, long_b, False) for i in range(200)]
    text = encode(cutovers)
    assert len(text) <= METADATA_MAX_CHARS
    kept = decode(text)
    assert 1 < len(kept) < len(cutovers)
    assert kept == cutovers[-len(kept) :]  # the newest, the last one always among them
    # as many as fit: one more row would not
    one_more = [c.row() for c in cutovers[-len(kept) - 1 :]]
    assert len(METADATA_PREFIX + json.dumps(one_more, separators=(",", ":"))) > METADATA_MAX_CHARS
    # what fits is not trimmed
    assert decode(encode(cutovers[-5:])) == cutovers[-5:]


# --- a partition's history ------------------------------------------------------------------------------------------


def history_of(*cutovers: Cutover) -> History:
    history = History()
    for cutover in cutovers:
        history.add(cutover)
    return history


def test_the_last_cutover_at_or_before_an_offset_governs_it() -> None:
    e1, e2, e3 = cut(10, 1, 10), cut(20, 2, 30), cut(20, 3, 50)
    history = history_of(e1, e2, e3)
    assert history.at(0) is None
    assert history.at(9) is None  # before the first cutover
    assert history.at(10) == e1
    assert history.at(15) == e1
    assert history.at(19) == e1
    assert history.at(20) == e3  # two epochs at one offset: the later governs
    assert history.at(10**9) == e3
    assert history.last == e3
    assert History().at(5) is None
    assert History().last is None


def test_a_cutover_is_added_only_after_the_last_one() -> None:
    history = history_of(cut(10, 1), cut(20, 2))
    for stale in (cut(20, 2), cut(20, 1), cut(15, 3), cut(5, 9)):
        with pytest.raises(ValueError, match="is not after"):
            history.add(stale)
    history.add(cut(20, 3))  # the same offset, a later epoch
    history.add(cut(21, 4))
    assert [c.epoch for c in history.cutovers] == [1, 2, 3, 4]


def test_merged_cutovers_are_one_per_epoch_in_offset_order() -> None:
    history = history_of(cut(10, 1), cut(20, 2))
    history.merge([cut(30, 3), cut(10, 1), cut(0, 0), cut(20, 2)])
    assert history.cutovers == [cut(0, 0), cut(10, 1), cut(20, 2), cut(30, 3)]
    history.merge([])
    assert len(history.cutovers) == 4
    fresh = History()
    fresh.merge(decode(encode([cut(5, 2), cut(5, 1)])))
    assert fresh.cutovers == [cut(5, 1), cut(5, 2)]
    assert fresh.at(5) == cut(5, 2)


def test_the_cutovers_of_an_aborted_batch_are_dropped() -> None:
    history = history_of(cut(0, 0), cut(10, 1), cut(20, 2), cut(30, 3))
    history.drop_from(20)
    assert history.cutovers == [cut(0, 0), cut(10, 1)]
    history.drop_from(100)
    assert history.cutovers == [cut(0, 0), cut(10, 1)]
    history.drop_from(0)
    assert history.cutovers == []


# --- which revision a cutover gives a bucket ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "bucket", "follower_scores"),
    [
        (0, 0, False),
        (0, BUCKETS - 1, False),
        (10, 0, True),
        (10, 10 * 100 - 1, True),
        (10, 10 * 100, False),
        (10, BUCKETS - 1, False),
        (30, 30 * 100 - 1, True),
        (30, 30 * 100, False),
        (100, 0, True),
        (100, 100 * 100 - 1, True),
    ],
)
def test_the_follower_scores_the_buckets_below_its_percent_and_the_leader_the_others(
    percent: int, bucket: int, follower_scores: bool
) -> None:
    cutover = Cutover(0, 1, percent, R1, R2, False)
    assert cutover.scores(R2, bucket) is follower_scores
    assert cutover.scores(R1, bucket) is not follower_scores
    assert cutover.scores("r3", bucket) is False  # a revision the cutover does not name scores nothing


def test_every_bucket_is_scored_by_exactly_one_of_the_pair_at_every_percent() -> None:
    for percent in range(101):
        cutover = Cutover(0, 1, percent, R1, R2, percent in (0, 100))
        follower = [b for b in range(BUCKETS) if cutover.scores(R2, b)]
        assert all(cutover.scores(R1, b) != cutover.scores(R2, b) for b in range(0, BUCKETS, 7))
        assert len(follower) == percent * 100  # raising the percent only moves buckets to the follower
        assert follower == list(range(percent * 100))


def test_without_a_follower_the_leader_scores_every_bucket() -> None:
    alone = Cutover(0, 0, 0, R1, None, False)
    assert all(alone.scores(R1, b) for b in (0, 999, BUCKETS - 1))
    assert not any(alone.scores(R2, b) for b in (0, 999, BUCKETS - 1))


def test_a_cutover_takes_the_documents_shares() -> None:
    assert Cutover.of(document(3, follower=R2, percent=40), 17) == Cutover(17, 3, 40, R1, R2, False)
    assert Cutover.of(document(0), 0) == Cutover(0, 0, 0, R1, None, False)
    assert Cutover.of(document(5, follower=R2, percent=100, final=True), 9).final


# --- the leader -----------------------------------------------------------------------------------------------------


def test_without_a_share_document_nothing_is_decided() -> None:
    shares = Shares(R1)
    decision = shares.decide([*placed(P0, range(3, 6)), *placed(P1, range(8, 9))])
    assert decision.decided == [False] * 4
    assert decision.mine == [False] * 4
    assert decision.seek == {P0: 3, P1: 8}
    assert decision.chosen == {}
    assert decision.waiting == "no share document yet"
    assert not shares.leads
    assert shares.pending_cuts({P0: 3}) == {}


def test_the_leader_alone_cuts_the_first_epoch_at_its_first_record_and_scores_everything() -> None:
    shares = Shares(R1)
    assert shares.use(document(0))
    assert shares.leads
    records = [*placed(P0, range(7, 10)), *placed(P1, range(3, 5))]
    decision = shares.decide(records)
    assert decision.decided == [True] * 5
    assert decision.mine == [True] * 5
    assert decision.seek == {}
    assert decision.waiting is None
    assert decision.chosen == {P0: Cutover(7, 0, 0, R1, None, False), P1: Cutover(3, 0, 0, R1, None, False)}
    assert shares.histories[P0].cutovers == [Cutover(7, 0, 0, R1, None, False)]
    assert decode(shares.metadata(P0)) == [Cutover(7, 0, 0, R1, None, False)]
    # the next batch of the same epoch cuts nothing
    again = shares.decide(placed(P0, range(10, 12)))
    assert again.chosen == {}
    assert again.mine == [True, True]


def test_a_new_epoch_is_cut_at_each_partitions_first_record_after_it_was_read() -> None:
    shares = Shares(R1)
    shares.use(document(0))
    shares.decide([*placed(P0, range(0, 10)), *placed(P1, range(0, 4))])
    assert shares.use(document(1, follower=R2, percent=30))
    # a batch interleaving the partitions: each cuts at its own first offset
    records = [Placed(P1, 4, 2999), Placed(P0, 10, 2999), Placed(P0, 11, 3000), Placed(P1, 5, 3000)]
    decision = shares.decide(records)
    assert decision.chosen == {P0: Cutover(10, 1, 30, R1, R2, False), P1: Cutover(4, 1, 30, R1, R2, False)}
    assert decision.decided == [True] * 4
    assert decision.mine == [False, False, True, True]  # buckets below 3000 are the follower's now
    # the records before the cutover stay the old epoch's, all the leader's
    assert shares.histories[P0].at(9) == Cutover(0, 0, 0, R1, None, False)
    before = shares.decide([Placed(P0, 9, 0), Placed(P1, 3, 0)])
    assert before.chosen == {}
    assert before.mine == [True, True]
    assert shares.epoch_at(P0, 9) == 0
    assert shares.epoch_at(P0, 10) == 1
    assert shares.epoch_at(P1, 4) == 1


def test_the_cutovers_of_an_aborted_batch_are_chosen_again_at_the_same_place() -> None:
    shares = Shares(R1)
    shares.use(document(0))
    shares.decide(placed(P0, range(0, 10)))
    shares.use(document(1, follower=R2, percent=30))
    batch = [*placed(P0, range(10, 15)), *placed(P1, range(0, 3))]
    first = shares.decide(batch)
    assert set(first.chosen) == {P0, P1}
    shares.forget(first.chosen)
    assert shares.histories[P0].cutovers == [Cutover(0, 0, 0, R1, None, False)]
    assert shares.histories[P1].cutovers == []
    again = shares.decide(batch)
    assert again.chosen == first.chosen
    assert again.mine == first.mine
    assert shares.histories[P0].cutovers == [Cutover(0, 0, 0, R1, None, False), first.chosen[P0]]


def test_a_stale_document_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    shares = Shares(R1)
    assert shares.use(document(2, follower=R2, percent=30))
    assert not shares.use(document(2, follower=R2, percent=30))  # the same: unchanged
    with caplog.at_level(logging.WARNING, logger="modelserver.stream.cutover"):
        assert not shares.use(document(1, follower=R2, percent=10))
    assert shares.document == document(2, follower=R2, percent=30)
    assert "ignoring share document epoch 1" in caplog.text
    assert shares.use(document(3, follower=R2, percent=50))
    assert shares.document is not None
    assert shares.document.epoch == 3


def test_a_final_pair_is_not_changed_by_a_later_document(caplog: pytest.LogCaptureFixture) -> None:
    shares = Shares(R1)
    shares.use(document(4, follower=R2, percent=100, final=True))
    decision = shares.decide(placed(P0, range(50, 53)))
    assert decision.chosen == {P0: Cutover(50, 4, 100, R1, R2, True)}
    assert decision.mine == [False] * 3  # promoted: every record is the follower's
    shares.use(document(5, follower=R2, percent=50))
    with caplog.at_level(logging.ERROR, logger="modelserver.stream.cutover"):
        later = shares.decide(placed(P0, range(53, 56)))
        assert shares.pending_cuts({P1: 0, P0: 56}) == {P1: Cutover(0, 5, 50, R1, R2, False)}
    assert later.chosen == {}
    assert later.decided == [True] * 3
    assert later.mine == [False] * 3
    assert shares.histories[P0].cutovers == [Cutover(50, 4, 100, R1, R2, True)]
    assert "epoch 5 is not acted on: its leader gave every record to its follower for good at epoch 4" in caplog.text
    # a rolled-back pair is final as well
    rolled = Shares(R1)
    rolled.use(document(2, follower=R2, percent=0, final=True))
    rolled.decide(placed(P0, range(5)))
    rolled.use(document(3, follower=R2, percent=30))
    assert rolled.decide(placed(P0, range(5, 8))).chosen == {}
    assert rolled.histories[P0].last == Cutover(0, 2, 0, R1, R2, True)


def test_idle_partitions_are_cut_at_their_positions_once_per_epoch() -> None:
    shares = Shares(R1)
    shares.use(document(0))
    assert shares.pending_cuts({P0: 5, P1: 0}) == {
        P0: Cutover(5, 0, 0, R1, None, False),
        P1: Cutover(0, 0, 0, R1, None, False),
    }
    assert shares.pending_cuts({P0: 5, P1: 0}) == {}
    assert shares.pending_cuts({P0: 9, P1: 3}) == {}
    # a record at the cut position is governed by it, and cuts nothing more
    decision = shares.decide(placed(P0, range(5, 7)))
    assert decision.chosen == {}
    assert decision.mine == [True, True]
    shares.use(document(1, follower=R2, percent=20))
    assert shares.pending_cuts({P0: 7}) == {P0: Cutover(7, 1, 20, R1, R2, False)}
    assert shares.pending_cuts({P0: 7, P1: 0}) == {P1: Cutover(0, 1, 20, R1, R2, False)}
    assert shares.pending_cuts({P0: 8, P1: 1}) == {}
    # a later epoch at the same idle position: two cutovers at one offset, the later governs
    shares.use(document(2, follower=R2, percent=40))
    assert shares.pending_cuts({P1: 0}) == {P1: Cutover(0, 2, 40, R1, R2, False)}
    assert shares.histories[P1].at(0) == Cutover(0, 2, 40, R1, R2, False)
    assert shares.epoch_at(P1, 0) == 2


def test_only_the_leader_cuts_idle_partitions() -> None:
    follower = Shares(R2)
    follower.use(document(1, follower=R2, percent=20))
    assert not follower.leads
    assert follower.pending_cuts({P0: 0}) == {}
    assert follower.histories.get(P0) is None or follower.histories[P0].cutovers == []


# --- any other consumer ---------------------------------------------------------------------------------------------


def following(committed: int | None, *cutovers: Cutover, percent: int = 30) -> Shares:
    shares = Shares(R2)
    shares.use(document(max([c.epoch for c in cutovers], default=0), follower=R2, percent=percent))
    shares.learn_leader(P0, committed, encode(cutovers))
    return shares


def test_the_follower_decides_the_records_the_leader_committed_past_by_the_leaders_cutovers() -> None:
    shares = following(15, cut(0, 0, follower=None), cut(10, 1, 30))
    assert not shares.leads
    records = [Placed(P0, o, b) for o, b in ((8, 0), (9, 0), (10, 2999), (11, 3000), (14, 0))]
    records += [Placed(P0, o, 0) for o in range(15, 19)]
    decision = shares.decide(records)
    assert decision.decided == [True] * 5 + [False] * 4
    assert decision.mine == [False, False, True, False, True] + [False] * 4
    assert decision.seek == {P0: 15}
    assert decision.chosen == {}
    assert decision.waiting == "the leader has not committed this far"
    # the leader commits further: the waiting records are decided
    shares.learn_leader(P0, 40, encode([cut(0, 0, follower=None), cut(10, 1, 30)]))
    assert shares.decide([Placed(P0, o, 0) for o in range(15, 19)]).decided == [True] * 4


def test_each_partition_waits_on_its_own_leaders_offset() -> None:
    shares = following(20, cut(0, 0, follower=None), cut(5, 1, 30))
    records = [Placed(P1, 0, 0), Placed(P0, 18, 0), Placed(P1, 1, 0), Placed(P0, 19, 0), Placed(P0, 20, 0)]
    decision = shares.decide(records)  # nothing known of P1: all of it waits
    assert decision.decided == [False, True, False, True, False]
    assert decision.mine == [False, True, False, True, False]
    assert decision.seek == {P1: 0, P0: 20}


def test_a_partition_stops_at_its_first_undecided_record() -> None:
    # committed 12 but the cutovers name a final one at 14 (an offset it cannot know yet): 12 and 13 wait, and so
    # does 14 behind them, though a final cutover would decide it on its own
    shares = following(12, cut(0, 0, follower=None), cut(10, 1, 30), cut(14, 2, 100, final=True))
    decision = shares.decide([Placed(P0, o, 0) for o in range(10, 17)])
    assert decision.decided == [True, True, False, False, False, False, False]
    assert decision.seek == {P0: 12}
    assert shares.decide([Placed(P0, o, 0) for o in range(14, 17)]).decided == [True] * 3


def test_records_before_any_cutover_that_the_leader_committed_are_nobodys_else() -> None:
    shares = Shares(R2)
    shares.use(document(1, follower=R2, percent=100, final=False))
    shares.learn_leader(P0, 5, "another tool's metadata")
    decision = shares.decide([Placed(P0, o, 0) for o in range(7)])
    assert decision.decided == [True] * 5 + [False] * 2
    assert decision.mine == [False] * 7


def test_a_final_cutover_decides_the_records_past_the_leaders_offset() -> None:
    promoted = following(20, cut(0, 0, follower=None), cut(20, 1, 100, final=True))
    decision = promoted.decide([Placed(P0, o, b) for o, b in ((19, 0), (20, 0), (21, BUCKETS - 1), (500, 5))])
    assert decision.decided == [True] * 4
    assert decision.mine == [False, True, True, True]
    assert decision.waiting is None
    rolled_back = following(20, cut(0, 0, follower=None), cut(10, 1, 10), cut(20, 2, 0, final=True))
    decision = rolled_back.decide([Placed(P0, o, 0) for o in (19, 20, 21, 500)])
    assert decision.decided == [True] * 4
    assert decision.mine == [True, False, False, False]
    # a non-final cutover at the same place would make them wait
    waiting = following(20, cut(0, 0, follower=None), cut(20, 1, 100))
    assert waiting.decide([Placed(P0, 20, 0)]).decided == [False]


def test_a_leader_offset_that_is_gone_makes_the_follower_wait() -> None:
    shares = following(20, cut(0, 0, follower=None), cut(5, 1, 30))
    assert shares.decide([Placed(P0, 10, 0)]).decided == [True]
    for gone in (None, -1001):
        shares.learn_leader(P0, 20, None)
        shares.learn_leader(P0, gone, None)
        assert P0 not in shares.leader_committed
        assert shares.decide([Placed(P0, 10, 0)]).decided == [False]
    # the cutovers learned before stay
    assert shares.histories[P0].cutovers == [cut(0, 0, follower=None), cut(5, 1, 30)]


def test_a_revision_the_document_does_not_name_scores_nothing() -> None:
    shares = Shares("r3")
    shares.use(document(1, follower=R2, percent=30))
    shares.learn_leader(P0, 30, encode([cut(0, 0, follower=None), cut(10, 1, 30)]))
    decision = shares.decide([Placed(P0, o, b) for o in (5, 15, 25) for b in (0, 9999)])
    assert decision.decided == [True] * 6
    assert decision.mine == [False] * 6


# --- a promoted leader ----------------------------------------------------------------------------------------------


def test_a_promoted_leader_waits_for_its_predecessors_final_cutover() -> None:
    shares = following(20, cut(0, 0, follower=None), cut(10, 1, 30))
    shares.use(document(2, leader=R2))  # promoted before the old leader's final cutover is known
    assert shares.leads
    decision = shares.decide([Placed(P0, o, 0) for o in (12, 13)])
    assert decision.decided == [False, False]
    assert decision.seek == {P0: 12}
    assert decision.chosen == {}
    assert decision.waiting == "the previous leader's final cutover is not known"
    assert shares.pending_cuts({P0: 12}) == {}
    assert shares.histories[P0].last == cut(10, 1, 30)


def test_a_promoted_leader_acts_on_its_predecessors_cutovers_then_cuts_past_the_final_one() -> None:
    shares = following(20, cut(0, 0, follower=None), cut(10, 1, 30), cut(15, 2, 100, final=True))
    shares.use(document(3, leader=R2))
    records = [Placed(P0, o, b) for o, b in ((12, 2999), (13, 3000), (14, 0))]
    records += [Placed(P0, o, b) for o, b in ((15, BUCKETS - 1), (16, 0))]
    decision = shares.decide(records)
    assert decision.decided == [True] * 5
    assert decision.mine == [True, False, True, True, True]
    assert decision.chosen == {P0: Cutover(15, 3, 0, R2, None, False)}  # at the final cutover, not before
    assert shares.histories[P0].at(15) == Cutover(15, 3, 0, R2, None, False)
    assert shares.epoch_at(P0, 14) == 1
    assert shares.epoch_at(P0, 15) == 3


def test_a_promoted_leader_past_the_final_cutover_cuts_at_its_next_record() -> None:
    shares = following(20, cut(0, 0, follower=None), cut(15, 2, 100, final=True))
    shares.use(document(3, leader=R2))
    assert shares.pending_cuts({P0: 18}) == {P0: Cutover(18, 3, 0, R2, None, False)}
    assert shares.decide([Placed(P0, 18, 0)]).mine == [True]


def test_the_epoch_at_a_position() -> None:
    shares = Shares(R1)
    assert shares.epoch_at(P0, 0) is None
    shares.use(document(0))
    shares.decide(placed(P0, range(3, 5)))
    assert shares.epoch_at(P0, 2) is None
    assert shares.epoch_at(P0, 3) == 0
    shares.use(document(1, follower=R2, percent=10))
    assert shares.pending_cuts({P0: 5}) == {P0: Cutover(5, 1, 10, R1, R2, False)}
    assert (shares.epoch_at(P0, 4), shares.epoch_at(P0, 5), shares.epoch_at(P0, 10**6)) == (0, 1, 1)
    assert shares.epoch_at(P1, 0) is None


# --- the protocol, simulated ----------------------------------------------------------------------------------------


@dataclass
class Consumer:
    """One revision's consumer group (one member owning every partition) as the simulation runs it."""

    revision: str
    group: str
    partitions: list[Partition]
    shares: Shares = field(init=False)
    position: dict[Partition, int] = field(init=False)
    max_batch: int = 9  # records of each partition per batch, at most
    seen: int = 0  # the newest document it has read (an index into the documents written so far)

    def __post_init__(self) -> None:
        self.shares = Shares(self.revision)
        self.position = dict.fromkeys(self.partitions, 0)


# A document the operator writes next, and what it waits for first (Simulation.gate_open).
Step = tuple[str, ShareDocument]


class Simulation:
    """Two revisions reading the same partitions in random batches, committing (or aborting) each, reading the
    other group's committed offsets and cutovers only as committed, seeing each new document late, restarting now
    and then; the documents written one after another as the schedule allows."""

    def __init__(
        self, seed: int, schedule: list[Step], *, partitions: int = 1, tail: int = 100, follower_batch: int = 9
    ) -> None:
        self.rng = random.Random(seed)
        self.partitions = [("events", p) for p in range(partitions)]
        # each partition's records (their buckets), written while the schedule runs and `tail` steps after it
        self.buckets: dict[Partition, list[int]] = {p: [] for p in self.partitions}
        self.tail = tail
        self.schedule = list(schedule)
        self.documents = [document(0)]
        self.consumers = {
            R1: Consumer(R1, G1, self.partitions),
            R2: Consumer(R2, G2, self.partitions, max_batch=follower_batch),
        }
        self.promoted_behind = False  # the candidate was promoted before it committed past the final cutover
        self.commits: dict[str, dict[Partition, tuple[int, str]]] = {G1: {}, G2: {}}
        self.committed_cutovers: dict[Partition, dict[int, Cutover]] = {p: {} for p in self.partitions}
        self.scored: dict[tuple[Partition, int], list[str]] = {}
        self.waits = 0
        self.aborts = 0
        self.restarts = 0

    def end(self, partition: Partition) -> int:
        return len(self.buckets[partition])

    def produce(self) -> None:
        if not self.schedule:
            if self.tail == 0:
                return
            self.tail -= 1
        for p in self.partitions:
            for _ in range(self.rng.randint(0, 2)):
                self.buckets[p].append(message_bucket(self._key(), p[1], self.end(p)))

    def _key(self) -> bytes | None:
        if self.rng.random() < 0.2:
            return None  # keyless: the bucket of its partition and offset
        return f"user-{self.rng.randrange(60)}".encode()

    # the operator

    def maybe_write_document(self) -> None:
        """The next document, now and then; a promotion as soon as its gate opens."""
        if not self.schedule:
            return
        gate, next_document = self.schedule[0]
        if (gate != "any" or self.rng.random() < 0.02) and self.gate_open(gate):
            if next_document.leader.revision == R2:
                self.promoted_behind = not self.gate_open("follower passed the final cutover")
            self.schedule.pop(0)
            self.documents.append(next_document)

    def gate_open(self, gate: str) -> bool:
        """Whether the operator may write the next document: at once, or (a promotion) once the final cutover is
        in the candidate group's committed offsets of every partition (which any of its members restores: a
        promoted leader reads no other group's offsets), and, for `passed`, that group committed past it."""
        if gate == "any":
            return True
        if gate == "the candidate scored":
            return any(R2 in scored for scored in self.scored.values())
        final = self.documents[-1]
        assert final.final
        for p in self.partitions:
            offset, metadata = self.commits[G2].get(p, (0, ""))
            known = [c for c in decode(metadata) if c.epoch == final.epoch]
            if not known:
                return False
            if gate == "follower passed the final cutover" and offset < known[0].offset:
                return False
        assert gate in ("follower passed the final cutover", "follower knows the final cutover")
        return True

    # a consumer's loop

    def step(self, consumer: Consumer) -> None:
        self.produce()
        if self.rng.random() < 0.01:
            self.restart(consumer)
        self.refresh(consumer)
        shares = consumer.shares
        batch = self.batch(consumer)
        if not batch:
            if shares.leads:
                chosen = shares.pending_cuts(dict(consumer.position))
                if chosen and not self.aborted(shares, chosen):
                    self.commit(consumer, {p: c.offset for p, c in chosen.items()}, [])
            return
        decision = shares.decide(batch)
        if decision.seek:
            self.waits += 1
        next_offsets: dict[Partition, int] = {}
        mine: list[tuple[Partition, int]] = []
        last: dict[Partition, int] = {}
        for record, decided, ours in zip(batch, decision.decided, decision.mine, strict=True):
            last[record.partition] = record.offset
            if decided:
                # the decided records of a partition are those before its first undecided one
                assert record.offset < decision.seek.get(record.partition, self.end(record.partition))
                next_offsets[record.partition] = record.offset + 1
                if ours:
                    mine.append((record.partition, record.offset))
            else:
                assert not ours
        assert set(decision.chosen) <= set(next_offsets)  # a cutover is committed with records past it
        if self.aborted(shares, decision.chosen):
            return  # read again from the batch's first records
        for p, offset in last.items():
            consumer.position[p] = decision.seek.get(p, offset + 1)
        if next_offsets:
            self.commit(consumer, next_offsets, mine)

    def refresh(self, consumer: Consumer) -> None:
        """The newest document the consumer has read (late, perhaps), and now and then the leader group's committed
        offsets with their cutovers (Coordination.refresh)."""
        rng, shares = self.rng, consumer.shares
        consumer.seen = rng.randint(consumer.seen, len(self.documents) - 1)
        shares.use(self.documents[consumer.seen])
        if rng.random() < 0.1 and consumer.seen > 0:
            assert not shares.use(self.documents[rng.randrange(consumer.seen)])  # a stale read changes nothing
        if not shares.leads and rng.random() < 0.6:
            assert shares.document is not None
            leader_commits = self.commits[shares.document.leader.group]
            for p in self.partitions:
                offset, metadata = leader_commits.get(p, (None, None))
                shares.learn_leader(p, offset, metadata)

    def batch(self, consumer: Consumer) -> list[Placed]:
        """Up to a few records of each partition from the consumer's position, the partitions interleaved."""
        queues = []
        for p in self.partitions:
            start = consumer.position[p]
            end = min(self.end(p), start + self.rng.randint(0, consumer.max_batch))
            queues.append([Placed(p, o, self.buckets[p][o]) for o in range(start, end)])
        batch = []
        while any(queues):
            queue = self.rng.choice([q for q in queues if q])
            batch.append(queue.pop(0))
        return batch

    def aborted(self, shares: Shares, chosen: dict[Partition, Cutover]) -> bool:
        if self.rng.random() >= 0.08:
            return False
        self.aborts += 1
        shares.forget(chosen)
        return True

    def commit(self, consumer: Consumer, next_offsets: dict[Partition, int], mine: list[tuple[Partition, int]]) -> None:
        """The batch's transaction: its outputs, its offsets and their metadata, at once."""
        commits = self.commits[consumer.group]
        for p, offset in next_offsets.items():
            assert offset >= commits.get(p, (0, ""))[0]
            metadata = consumer.shares.metadata(p)
            commits[p] = (offset, metadata)
            for cutover in decode(metadata):
                known = self.committed_cutovers[p].setdefault(cutover.epoch, cutover)
                assert known == cutover, f"epoch {cutover.epoch} committed as {known} and as {cutover}"
        for record in mine:
            self.scored.setdefault(record, []).append(consumer.revision)

    def restart(self, consumer: Consumer) -> None:
        """A new process: it resumes from its group's committed offsets, with their cutovers."""
        self.restarts += 1
        consumer.shares = Shares(consumer.revision)
        for p in self.partitions:
            offset, metadata = self.commits[consumer.group].get(p, (0, ""))
            consumer.shares.history(p).merge(decode(metadata))
            consumer.position[p] = offset

    # the run

    def finished(self) -> bool:
        """Every document written and read, every record read by both, the last epoch cut in every partition."""
        if self.schedule or self.tail:
            return False
        last = self.documents[-1]
        leader = self.consumers[last.leader.revision].shares
        return (
            all(c.seen == len(self.documents) - 1 for c in self.consumers.values())
            and all(c.position[p] == self.end(p) for c in self.consumers.values() for p in self.partitions)
            and all(leader.epoch_at(p, self.end(p)) == last.epoch for p in self.partitions)
        )

    def run(self, max_steps: int = 30_000) -> None:
        for _ in range(max_steps):
            self.maybe_write_document()
            self.step(self.consumers[self.rng.choice((R1, R2))])
            if self.finished():
                return
        raise AssertionError(f"no progress after {max_steps} steps: documents {self.documents}, schedule "
                             f"{self.schedule}, positions {[c.position for c in self.consumers.values()]}")  # fmt: skip

    def check_exactly_once(self) -> None:
        for p in self.partitions:
            governing = History()
            governing.merge(self.committed_cutovers[p].values())
            for offset in range(self.end(p)):
                cutover = governing.at(offset)
                assert cutover is not None, f"{p}@{offset}: no cutover"
                bucket = self.buckets[p][offset]
                expected = cutover.follower if cutover.scores(cutover.follower or "", bucket) else cutover.leader
                assert self.scored.get((p, offset), []) == [expected], (
                    f"{p}@{offset} (bucket {bucket}, governed by {cutover}) scored by "
                    f"{self.scored.get((p, offset), [])}, expected [{expected}]"
                )


ROLLOUT: list[Step] = [
    ("any", document(1, follower=R2, percent=0)),
    ("any", document(2, follower=R2, percent=10)),
    ("any", document(3, follower=R2, percent=30)),
    ("any", document(4, follower=R2, percent=50)),
    ("any", document(5, follower=R2, percent=100, final=True)),
]
ROLLBACK: list[Step] = [
    ("any", document(1, follower=R2, percent=10)),
    ("the candidate scored", document(2, follower=R2, percent=0, final=True)),
    ("any", document(3)),  # the candidate is gone
]
SEEDS = range(12)


def run(seed: int, schedule: list[Step], partitions: int, *, follower_batch: int = 9) -> Simulation:
    simulation = Simulation(seed, schedule, partitions=partitions, follower_batch=follower_batch)
    simulation.run()
    simulation.check_exactly_once()
    if follower_batch >= simulation.consumers[R1].max_batch:
        assert simulation.waits > 0  # the follower, as fast as the leader, did have to wait for it
    epochs = {e for p in simulation.partitions for e in simulation.committed_cutovers[p]}
    assert max(epochs) == simulation.documents[-1].epoch
    return simulation


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_rollout_scores_every_record_exactly_once(seed: int, partitions: int) -> None:
    simulation = run(seed, ROLLOUT, partitions)
    scorers = [who for scored in simulation.scored.values() for who in scored]
    assert R1 in scorers
    assert R2 in scorers
    # promoted: past the final cutover every record is the candidate's
    final = simulation.committed_cutovers[simulation.partitions[0]][5]
    assert all(
        simulation.scored[(simulation.partitions[0], o)] == [R2]
        for o in range(final.offset, simulation.end(simulation.partitions[0]))
    )


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_rollback_scores_every_record_exactly_once(seed: int, partitions: int) -> None:
    simulation = run(seed, ROLLBACK, partitions)
    for p in simulation.partitions:
        # rolled back at the final cutover, or at the candidate's removal if the leader read both at once
        back = min(c.offset for c in simulation.committed_cutovers[p].values() if c.epoch >= 2)
        assert all(simulation.scored[(p, o)] == [R1] for o in range(back, simulation.end(p)))
    assert any(simulation.scored[(p, o)] == [R2] for p in simulation.partitions for o in range(simulation.end(p)))


@pytest.mark.parametrize("gate", ["follower passed the final cutover", "follower knows the final cutover"])
@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_promotion_hands_the_lead_over_with_every_record_scored_exactly_once(
    seed: int, partitions: int, gate: str
) -> None:
    # a slow candidate, so that it is promoted while behind its final cutover when the gate allows it
    simulation = run(seed, [*ROLLOUT, (gate, document(6, leader=R2))], partitions, follower_batch=3)
    if gate == "follower passed the final cutover":
        assert not simulation.promoted_behind
    for p in simulation.partitions:
        handed_over = simulation.committed_cutovers[p][6]
        assert (handed_over.leader, handed_over.follower, handed_over.percent) == (R2, None, 0)
        assert handed_over.offset >= simulation.committed_cutovers[p][5].offset
        assert all(simulation.scored[(p, o)] == [R2] for o in range(handed_over.offset, simulation.end(p)))
    assert simulation.consumers[R2].shares.leads
    assert not simulation.consumers[R1].shares.leads


def test_the_simulation_does_promote_a_candidate_still_behind_its_final_cutover() -> None:
    """The promotion above with the gate `knows` is not vacuous: the promoted leader scores records before its
    predecessor's final cutover by the predecessor's cutovers (Shares._own_era)."""
    behind = 0
    for seed in SEEDS:
        simulation = Simulation(seed, [*ROLLOUT, ("follower knows the final cutover", document(6, leader=R2))],
                                partitions=1, follower_batch=3)  # fmt: skip
        simulation.run()
        simulation.check_exactly_once()
        behind += simulation.promoted_behind
    assert behind >= 2
