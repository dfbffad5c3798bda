"""A stream rollout's shares against a real Kafka broker: two `modelserver stream` processes (revision r1 leading in
group g1, revision r2 following in group g2) read one topic while records keep coming, and a share document
(a file here; the operator's ConfigMap in the e2e tests) moves r2 through 10% and 50% to 100% and hands it the
lead, or rolls it back. Through every change, a kill -9 of either consumer and a broker restart, the output holds
exactly one prediction per input record (by partition and offset), each scored by the revision its cutover
names, and each share matches the document's percent."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from testkit.kafka import KafkaBroker
from testkit.models import Classifiers
from testkit.topics import Feeder, Stream, Topics, check_shares, exactly_once, histories, read_all
from testkit.waiting import wait_until

from modelrollout_contract import metrics as names
from modelrollout_contract.stream import Member, ShareDocument, to_document
from modelserver.routing.sources import FileSource
from modelserver.stream.coordination import READ_TIMEOUT_S, Coordination, DocumentFeed
from modelserver.stream.cutover import Shares as CutoverShares

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
KEYS = 20_000  # distinct keys: a 10% share of them is 10% +- 0.2 (one sd) of the records
VERSION_OF = {"1": "r1", "2": "r2"}
COORDINATOR_MOVING = {KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR,
                      KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT, KafkaError._TRANSPORT}  # fmt: skip


@pytest.fixture
def tag() -> str:
    """This test's: its topics and consumer groups are its own (the broker is the module's)."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def topics(broker: KafkaBroker, tag: str) -> Topics:
    made = Topics(f"events-{tag}", f"scores-{tag}", f"dead-{tag}")
    broker.create_topics({made.input: PARTITIONS, made.output: PARTITIONS, made.dlq: 1})
    return made


def revisions(tag: str) -> tuple[Member, Member]:
    return Member(revision="r1", group=f"g1-{tag}"), Member(revision="r2", group=f"g2-{tag}")


class Shares:
    """The share document, written atomically (a rename) as the operator's ConfigMap would change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.epoch = -1

    def write(self, leader: Member, follower: Member | None = None, percent: int = 0, *, final: bool = False) -> int:
        self.epoch += 1
        document = ShareDocument(epoch=self.epoch, leader=leader, follower=follower, percent=percent, final=final)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(to_document(document))
        os.replace(scratch, self.path)
        return self.epoch


class Kubelet:
    """Restarts a supervised consumer that exits or is killed, as a Deployment's restartPolicy Always does (a
    kill -9 is then followed by a restart, and so is a consumer that exits on a hung client after a broker
    restart: modelserver.stream.delivery.Hung)."""

    def __init__(self, *streams: Stream) -> None:
        self.supervised = set(streams)
        self.restarts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                for stream in self.supervised:
                    if not stream.alive:
                        stream.stop()
                        stream.start(wait=False)
                        self.restarts[stream.name] += 1

    def retire(self, stream: Stream) -> int | None:
        """Stop supervising `stream` and stop it (SIGTERM); its exit code."""
        with self._lock:
            self.supervised.discard(stream)
        return stream.stop()

    def __enter__(self) -> Kubelet:
        for stream in self.supervised:
            stream.start()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for stream in self.supervised:
            stream.stop(graceful=False)


def ends(broker: KafkaBroker, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ends", "enable.auto.commit": False})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        consumer.close()


def epochs_reached(stream: Stream, topic: str, epoch: int) -> bool:
    """Every partition's committed offset is governed by `epoch` or a later one (False while the consumer is
    restarting: the kubelet brings it back)."""
    try:
        return all(
            stream.metric(names.STREAM_CUTOVER_EPOCH, topic=topic, partition=str(p)) >= epoch for p in range(PARTITIONS)
        )
    except httpx.HTTPError:
        return False


def wait_epoch(streams: list[Stream], topic: str, epoch: int, within: float = 90) -> None:
    def reached() -> bool:
        return all(epochs_reached(s, topic, epoch) for s in streams)

    def state() -> str:
        seen = {
            s.name: [s.metric(names.STREAM_CUTOVER_EPOCH, topic=topic, partition=str(p)) for p in range(PARTITIONS)]
            for s in streams
            if s.alive
        }
        return f"epoch {epoch} on every partition; epochs now {seen}\n" + "\n".join(s.describe() for s in streams)

    wait_until(reached, within=within, interval=0.2, what=state)


def wait_caught_up(broker: KafkaBroker, stream: Stream, topic: str, within: float = 120) -> None:
    target = ends(broker, topic)

    def done() -> bool:
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": stream.group,
                             "enable.auto.commit": False, "isolation.level": "read_uncommitted"})  # fmt: skip
        try:
            got = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        finally:
            consumer.close()
        return all(tp.offset >= target[tp.partition] for tp in got)

    wait_until(done, within=within, interval=0.25, what=lambda: f"{stream.name} at {target}\n{stream.describe()}")


def pair(
    broker: KafkaBroker, topics: Topics, models: Classifiers, directory: Path, *, r1: Member, r2: Member
) -> tuple[Shares, Stream, Stream]:
    """The share document (r1 leading alone) and the two revisions' consumers (not started): r1 the stable model
    as version 1, r2 the healthy candidate as version 2."""
    shares = Shares(directory / "stream.json")
    shares.write(r1)
    flags = ("--share-file", str(shares.path), "--max-batch", "200")
    first = Stream(directory, broker, topics, models.stable, *flags, "--revision", r1.revision, group=r1.group,
                   version="1")  # fmt: skip
    second = Stream(directory, broker, topics, models.healthy, *flags, "--revision", r2.revision, group=r2.group,
                    version="2")  # fmt: skip
    return shares, first, second


def test_a_canary_by_message_share_through_kills_and_a_broker_restart_scores_every_record_exactly_once(
    broker: KafkaBroker, topics: Topics, models: Classifiers, tmp_path: Path, tag: str
) -> None:
    R1, R2 = revisions(tag)
    shares, r1, r2 = pair(broker, topics, models, tmp_path, r1=R1, r2=R2)
    value = json.dumps(models.dataset.rows[0].tolist()).encode()
    with Kubelet(r1, r2) as kubelet, Feeder(broker, topics.input, value) as feeder:
        time.sleep(3)
        ten = shares.write(R1, R2, 10)
        wait_epoch([r1], topics.input, ten)
        time.sleep(4)
        fifty = shares.write(R1, R2, 50)
        wait_epoch([r1], topics.input, fifty)
        time.sleep(2)
        r2.stop(graceful=False)  # kill -9 of the follower mid-stream (the kubelet restarts it)
        time.sleep(3)
        r1.stop(graceful=False)  # ... and of the leader
        time.sleep(3)
        broker.restart()
        time.sleep(3)
        promoted = shares.write(R1, R2, 100, final=True)
        wait_epoch([r1, r2], topics.input, promoted)
        handed = shares.write(R2)
        wait_epoch([r2], topics.input, handed)
        time.sleep(2)
        placed = feeder.stop()
        assert kubelet.retire(r1) == 0
        wait_caught_up(broker, r2, topics.input)
    print(f"restarts: {dict(kubelet.restarts)}")
    assert len(placed) > 40_000, f"only {len(placed)} records were produced"
    outputs = read_all(broker, topics.output, PARTITIONS)
    exactly_once(outputs, dict.fromkeys(placed, 0))
    governed = histories(broker, topics.input, PARTITIONS, R1.group, R2.group)
    share = check_shares(outputs, placed, governed, VERSION_OF, "r2")
    print(f"{len(placed)} records; r2's share per epoch: {share}")
    assert abs(share[ten] - 0.10) <= 0.02, share
    assert abs(share[fifty] - 0.50) <= 0.02, share
    assert share[promoted] == share[handed] == 1.0
    assert read_all(broker, topics.dlq, 1) == []


def test_a_rollback_hands_the_candidates_share_back_at_exact_offsets(
    broker: KafkaBroker, topics: Topics, models: Classifiers, tmp_path: Path, tag: str
) -> None:
    R1, R2 = revisions(tag)
    shares, r1, r2 = pair(broker, topics, models, tmp_path, r1=R1, r2=R2)
    value = json.dumps(models.dataset.rows[0].tolist()).encode()
    with Kubelet(r1, r2) as kubelet, Feeder(broker, topics.input, value) as feeder:
        time.sleep(2)
        thirty = shares.write(R1, R2, 30)
        wait_epoch([r1], topics.input, thirty)
        time.sleep(3)
        back = shares.write(R1, R2, 0, final=True)
        wait_epoch([r1, r2], topics.input, back)
        alone = shares.write(R1)
        wait_epoch([r1], topics.input, alone)
        assert kubelet.retire(r2) == 0
        time.sleep(2)
        placed = feeder.stop()
        wait_caught_up(broker, r1, topics.input)
    outputs = read_all(broker, topics.output, PARTITIONS)
    exactly_once(outputs, dict.fromkeys(placed, 0))
    governed = histories(broker, topics.input, PARTITIONS, R1.group, R2.group)
    share = check_shares(outputs, placed, governed, VERSION_OF, "r2")
    print(f"{len(placed)} records; r2's share per epoch: {share}")
    assert abs(share[thirty] - 0.30) <= 0.02
    assert share[back] == share[alone] == 0.0


def test_a_follower_reads_the_leaders_offsets_through_a_broker_restart(
    broker: KafkaBroker, topics: Topics, tag: str, tmp_path: Path
) -> None:
    """A follower reads the leader group's committed offsets all through a broker restart (every
    REFRESH_WAITING_S, as while its records wait), and learns the leader's first commit after it. Through the admin
    API, such reads killed the process (SIGSEGV in librdkafka on a "not coordinator" answer) or timed out forever
    (confluentinc/librdkafka#5511)."""
    R1, R2 = revisions(tag)
    owned = [(topics.input, p) for p in range(PARTITIONS)]

    def commit(offset: int) -> None:
        """As the leader's consumer does: a refusal while the group's coordinator moves or loads (the restarted
        broker still reading the group's offsets: COORDINATOR_LOAD_IN_PROGRESS) is tried again."""
        leader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": R1.group})

        def committed() -> bool:
            try:
                leader.commit(offsets=[TopicPartition(t, p, offset) for t, p in owned], asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() not in COORDINATOR_MOVING:
                    raise
                return False
            return True

        try:
            wait_until(committed, within=30, interval=0.2, what=f"the leader's commit of offset {offset}")
        finally:
            leader.close()

    made: list[str] = []

    def reader(group: str) -> Consumer:
        made.append(group)
        return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})

    shares = CutoverShares(R2.revision)
    shares.use(ShareDocument(epoch=1, leader=R1, follower=R2, percent=10, final=False))
    coordination = Coordination(shares, DocumentFeed(FileSource(tmp_path / "unused.json", interval_s=1)), reader)

    def learned(offset: int) -> bool:
        coordination.refresh(owned, waiting=True)
        return shares.leader_committed == dict.fromkeys(owned, offset)

    try:
        commit(5)
        wait_until(lambda: learned(5), within=10, what="the leader's offsets before the restart")
        restarted = threading.Event()
        reading = threading.Thread(target=wait_until, args=(lambda: restarted.is_set() or learned(-1),),
                                   kwargs={"within": 120, "what": "the restart"})  # fmt: skip
        reading.start()
        broker.restart()
        restarted.set()
        reading.join()
        commit(9)
        wait_until(lambda: learned(9), within=2 * READ_TIMEOUT_S + 10, what="the leader's offsets after the restart")
    finally:
        coordination.close()
    print(f"readers made: {len(made)}")
