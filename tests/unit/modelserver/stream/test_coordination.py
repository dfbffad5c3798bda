"""The I/O shell of a stream rollout's coordination, with in-memory readers: a consumer that does not lead reads the
leader group's committed offsets through a reader of that group, made again when the leader group changes and when
a read timed out (librdkafka can keep a broker decommissioned by a restart as the group's coordinator, and a
client that does never recovers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from testkit.waiting import wait_until

from modelrollout_contract.stream import Member, ShareDocument
from modelserver.routing.sources import FileSource
from modelserver.stream import coordination as module
from modelserver.stream.coordination import Coordination, DocumentFeed
from modelserver.stream.cutover import Partition, Shares

OWNED: list[Partition] = [("events", 0), ("events", 1)]
R1, R2 = Member(revision="r1", group="g1"), Member(revision="r2", group="g2")
FOLLOWING = ShareDocument(epoch=3, leader=R1, follower=R2, percent=10, final=False)


@dataclass
class FakeReader:
    """A consumer of `group` that answers `committed` from `answers`, one per call (an error is raised)."""

    group: str
    answers: list[dict[Partition, int] | KafkaException]
    asked: list[float] = field(default_factory=list)
    closed: bool = False

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        assert not self.closed
        self.asked.append(timeout)
        answer = self.answers.pop(0)
        if isinstance(answer, KafkaException):
            raise answer
        none = -1001  # librdkafka's OFFSET_INVALID: the group has no offset for the partition
        return [TopicPartition(tp.topic, tp.partition, answer.get((tp.topic, tp.partition), none)) for tp in partitions]

    def close(self) -> None:
        self.closed = True


@dataclass
class Readers:
    """Hands out the prepared readers in order, checking each is made for the group it serves."""

    prepared: list[FakeReader]
    made: list[FakeReader] = field(default_factory=list)

    def __call__(self, group: str) -> FakeReader:
        reader = self.prepared.pop(0)
        assert reader.group == group
        self.made.append(reader)
        return reader


def error(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


def follower(readers: Readers, tmp_path: Path, document: ShareDocument = FOLLOWING) -> Coordination:
    shares = Shares("r2")
    shares.use(document)
    feed = DocumentFeed(FileSource(tmp_path / "none.json", interval_s=1))
    return Coordination(shares, feed, readers)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def every_call_refreshes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "REFRESH_IDLE_S", 0.0)


def test_the_leaders_committed_offsets_are_learned_through_one_reader_of_its_group(tmp_path: Path) -> None:
    reader = FakeReader("g1", [{OWNED[0]: 40, OWNED[1]: 7}, {OWNED[0]: 41}])
    coordination = follower(readers := Readers([reader]), tmp_path)
    coordination.refresh(OWNED, waiting=False)
    assert coordination.shares.leader_committed == {OWNED[0]: 40, OWNED[1]: 7}
    coordination.refresh(OWNED, waiting=False)
    assert coordination.shares.leader_committed == {OWNED[0]: 41}, "a partition the leader has not committed"
    assert readers.made == [reader]
    assert reader.asked == [module.READ_TIMEOUT_S] * 2


def test_a_timed_out_read_closes_the_reader_and_the_next_read_uses_a_new_one(tmp_path: Path) -> None:
    stuck = FakeReader("g1", [error(KafkaError._TIMED_OUT)])
    fresh = FakeReader("g1", [{OWNED[0]: 12, OWNED[1]: 5}])
    coordination = follower(Readers([stuck, fresh]), tmp_path)
    coordination.refresh(OWNED, waiting=False)
    wait_until(lambda: stuck.closed, within=5, what="the stuck reader closed (on a thread of its own)")
    assert coordination.shares.leader_committed == {}
    coordination.refresh(OWNED, waiting=False)
    assert coordination.shares.leader_committed == {OWNED[0]: 12, OWNED[1]: 5}


def test_other_errors_keep_the_reader(tmp_path: Path) -> None:
    reader = FakeReader("g1", [error(KafkaError.GROUP_AUTHORIZATION_FAILED), {OWNED[0]: 1}])
    coordination = follower(Readers([reader]), tmp_path)
    coordination.refresh(OWNED, waiting=False)
    coordination.refresh(OWNED, waiting=False)
    assert not reader.closed
    assert coordination.shares.leader_committed == {OWNED[0]: 1}


def test_a_new_leader_group_gets_a_new_reader_and_the_old_one_is_closed(tmp_path: Path) -> None:
    old, new = FakeReader("g1", [{OWNED[0]: 3}]), FakeReader("g3", [{OWNED[0]: 8}])
    coordination = follower(Readers([old, new]), tmp_path)
    coordination.refresh(OWNED, waiting=False)
    r3 = Member(revision="r3", group="g3")
    coordination.shares.use(FOLLOWING.model_copy(update={"epoch": 4, "leader": r3}))
    coordination.refresh(OWNED, waiting=False)
    assert old.closed
    assert not new.closed
    assert coordination.shares.leader_committed == {OWNED[0]: 8}
    coordination.close()
    assert new.closed


def test_a_leader_reads_nobodys_offsets(tmp_path: Path) -> None:
    leading = FOLLOWING.model_copy(update={"leader": R2, "follower": None, "percent": 0})
    coordination = follower(Readers([]), tmp_path, leading)
    coordination.refresh(OWNED, waiting=False)
    coordination.close()
