"""`modelserver stream` as a process against a real Kafka broker (testkit.kafka: one KRaft node on loopback):
every input record scored exactly once (counted by the outputs' source headers, read committed), also across a
SIGKILL inside a transaction and a restart, and across a member joining the group mid-stream; poison records
dead-lettered with their reason while the good ones are scored; a SIGTERM that exits 0 with everything consumed
committed; two consumer groups splitting the records by key share; at-least-once without a dead-letter topic."""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from testkit.kafka import KafkaBroker
from testkit.models import Classifiers, ModelArtifact, train_classifiers
from testkit.ports import free_port
from testkit.processes import ManagedProcess
from testkit.waiting import wait_until

from modelrollout_contract import metrics as names
from modelrollout_contract.sticky import message_bucket

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
Place = tuple[int, int]  # (partition, offset) of an input record


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as running:
        yield running


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Classifiers:
    return train_classifiers(tmp_path_factory.mktemp("models"))


@dataclass(frozen=True)
class Topics:
    input: str
    output: str
    dlq: str


@pytest.fixture
def topics(broker: KafkaBroker) -> Topics:
    """Topics of this test alone (the broker is the module's)."""
    tag = uuid.uuid4().hex[:8]
    made = Topics(f"events-{tag}", f"scores-{tag}", f"dead-{tag}")
    broker.create_topics({made.input: PARTITIONS, made.output: PARTITIONS, made.dlq: 1})
    return made


class Stream(ManagedProcess):
    """One `modelserver stream` process: ready once /ready answers 200 (the group assigned it partitions)."""

    def __init__(self, directory: Path, broker: KafkaBroker, topics: Topics, model: ModelArtifact, *args: str,
                 group: str, instance: str = "consumer-0", version: str = "1", dlq: bool = True) -> None:  # fmt: skip
        self.port = free_port()
        self.group = group
        command = [
            sys.executable, "-m", "modelserver", "stream", "--bootstrap-servers", broker.bootstrap,
            "--input-topic", topics.input, "--output-topic", topics.output, "--group", group,
            "--instance-id", instance, "--model-name", "cancer", "--model-version", version,
            "--metrics-port", str(self.port), "--log-text", *args,
        ]  # fmt: skip
        if dlq:
            command += ["--dead-letter-topic", topics.dlq]
        super().__init__(command, name=f"stream {group}/{instance}",
                         log_path=directory / f"stream-{group}-{instance}.log",
                         ready_url=f"http://127.0.0.1:{self.port}/ready", env=model.server_env())  # fmt: skip

    def metric(self, name: str, **labels: str) -> float:
        """The value of the series `name` of /metrics with these labels (among others); 0 when absent."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{", 1)[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
                return float(value)
        return 0.0


@pytest.fixture
def streams(tmp_path: Path) -> Iterator[list[Stream]]:
    """Every Stream a test starts is stopped after it; its log is in the failure message."""
    started: list[Stream] = []
    yield started
    for stream in started:
        stream.stop(graceful=False)


def start(streams: list[Stream], stream: Stream) -> Stream:
    streams.append(stream)
    stream.start()
    return stream


# ---- the topics as a client sees them


def row_value(models: Classifiers, i: int, *, as_object: bool) -> bytes:
    row = models.dataset.rows[i % len(models.dataset)].tolist()
    if as_object:
        return json.dumps({**{f"f{j}": v for j, v in enumerate(row)}, "id": i}).encode()
    return json.dumps(row).encode()


def produce(broker: KafkaBroker, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> dict[Place, int]:
    """Produce (key, value) records; where each landed -> its index in `records`."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "enable.idempotence": True})
    placed: dict[Place, int] = {}
    failed: list[str] = []

    def delivered(index: int) -> object:
        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failed.append(str(error))
            else:
                placed[(message.partition() or 0, message.offset() or 0)] = index

        return report

    for index, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered(index))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0
    assert not failed, failed[:3]
    assert len(placed) == len(records)
    return placed


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def source(self) -> Place:
        return int(self.headers["source-partition"]), int(self.headers["source-offset"])


def read_all(broker: KafkaBroker, topic: str, partitions: int, *, committed_only: bool = True) -> list[Read]:
    """Every message of `topic` as a read_committed consumer sees it now (up to each partition's end)."""
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        "enable.partition.eof": True,
        "enable.auto.commit": False,
    })  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found: list[Read] = []
    ended: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while len(ended) < partitions:
            assert time.monotonic() < deadline, f"{topic}: no end of partitions {set(range(partitions)) - ended}"
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    ended.add(message.partition() or 0)
                    continue
                headers = {k: v for k, v in message.headers() or [] if isinstance(v, bytes)}
                found.append(Read(message.partition() or 0, message.offset() or 0, message.key(), message.value(),
                                  headers))  # fmt: skip
    finally:
        consumer.close()
    return found


def committed(broker: KafkaBroker, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (0 where none). read_uncommitted: a transaction's offsets that
    are pending (sent, the transaction not ended) do not count and do not hold the answer back until it ends."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted"})  # fmt: skip
    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in answer}


def wait_committed(broker: KafkaBroker, stream: Stream, topic: str, total: int, within: float = 120) -> None:
    def done() -> bool:
        assert stream.alive, stream.describe()
        return sum(committed(broker, stream.group, topic).values()) >= total

    wait_until(done, within=within, interval=0.25, what=lambda: f"{total} records committed\n{stream.describe()}")


def exactly_once(outputs: list[Read], placed: dict[Place, int]) -> None:
    """One output per input record, none for anything else."""
    counts = Counter(out.source for out in outputs)
    duplicated = {place: n for place, n in counts.items() if n > 1}
    assert not duplicated, f"{len(duplicated)} records scored more than once, e.g. {list(duplicated.items())[:5]}"
    lost = set(placed) - set(counts)
    assert not lost, f"{len(lost)} records never scored, e.g. {sorted(lost)[:5]}"
    assert set(counts) == set(placed)


# ---- the tests


def test_every_record_is_scored_exactly_once_with_the_models_answer(
    broker: KafkaBroker, topics: Topics, models: Classifiers, streams: list[Stream], tmp_path: Path
) -> None:
    total = 20_000
    records = [(f"user-{i % 1000}".encode(), row_value(models, i, as_object=i % 2 == 0)) for i in range(total)]
    placed = produce(broker, topics.input, records)
    assert {p for p, _ in placed} == set(range(PARTITIONS))
    stream = start(streams, Stream(tmp_path, broker, topics, models.stable, "--passthrough", "id",
                                   group="exactly"))  # fmt: skip
    began = time.monotonic()
    wait_committed(broker, stream, topics.input, total)
    elapsed = time.monotonic() - began

    outputs = read_all(broker, topics.output, PARTITIONS)
    exactly_once(outputs, placed)
    for out in outputs:
        index = placed[out.source]
        value = json.loads(out.value or b"")
        assert out.key == records[index][0]
        assert value["prediction"] == models.stable.predictions[index % len(models.dataset)]
        assert set(value["probabilities"]) == {"0", "1"}
        assert (value["model"], value["version"]) == ("cancer", "1")
        assert value["id"] == (index if index % 2 == 0 else None)
        assert (out.headers["model"], out.headers["version"], out.headers["source-topic"]) == (
            b"cancer", b"1", topics.input.encode()
        )  # fmt: skip
    assert read_all(broker, topics.dlq, 1) == []
    assert stream.metric(names.STREAM_RECORDS, result="scored") == total
    assert stream.metric(names.STREAM_RECORDS, result="dead_lettered") == 0
    assert stream.metric(names.STREAM_TRANSACTIONS, result="committed") >= total / 500
    assert stream.metric(names.STREAM_TRANSACTIONS, result="aborted") == 0
    assert stream.metric(names.STREAM_END_TO_END + "_count") == total
    assert stream.metric(names.STREAM_BATCH_RECORDS + "_sum") == total
    for partition in range(PARTITIONS):
        assert stream.metric(names.STREAM_CONSUMER_LAG, topic=topics.input, partition=str(partition)) == 0
    print(f"20,000 records scored and committed in {elapsed:.1f}s")


def ends(admin: AdminClient, topic: str, isolation: IsolationLevel) -> list[int]:
    asked = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(PARTITIONS)}
    answers = admin.list_offsets(asked, isolation_level=isolation, request_timeout=5)
    return [answers[tp].result().offset for tp in asked]


def open_transaction(admin: AdminClient, topic: str) -> bool:
    """Whether `topic` holds records of a transaction not yet ended: its last stable offset (the end a
    read_committed reader sees) is below its high watermark on some partition."""
    stable = ends(admin, topic, IsolationLevel.READ_COMMITTED)
    return any(lso < hw for lso, hw in zip(stable, ends(admin, topic, IsolationLevel.READ_UNCOMMITTED), strict=True))


SETTLE_S = 1.0


def freeze_inside_a_transaction(admin: AdminClient, stream: Stream, output: str, within: float = 60) -> None:
    """SIGSTOP the consumer while its transaction has records on the broker: poll the output's ends, stop the
    process when a transaction is open, and keep it stopped if the transaction is still open then (else SIGCONT
    and try again)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert stream.alive, stream.describe()
        if open_transaction(admin, output):
            stream.process.send_signal(signal.SIGSTOP)
            # A commit the process sent just before it stopped still completes on the broker: look again once
            # such an in-flight request has had time to land (seen under the whole suite's load: open at the stop,
            # committed a moment later).
            time.sleep(SETTLE_S)
            if open_transaction(admin, output):
                return
            stream.process.send_signal(signal.SIGCONT)
    raise AssertionError(f"never caught the consumer inside a transaction within {within:.0f}s")


def test_a_consumer_killed_mid_transaction_and_restarted_loses_and_repeats_nothing(
    broker: KafkaBroker, topics: Topics, models: Classifiers, streams: list[Stream], tmp_path: Path
) -> None:
    total = 20_000
    records = [(f"user-{i % 997}".encode(), row_value(models, i, as_object=False)) for i in range(total)]
    placed = produce(broker, topics.input, records)
    # 25 ms per model call, 100 records a batch: about 200 transactions, time to kill it in one of them
    stream = start(streams, Stream(tmp_path, broker, topics, models.slow(25), "--max-batch", "100", group="killed"))
    wait_until(lambda: sum(committed(broker, "killed", topics.input).values()) >= 2_000, within=120, interval=0.1,
               what=lambda: f"2,000 records committed\n{stream.describe()}")  # fmt: skip
    admin = broker.admin()
    freeze_inside_a_transaction(admin, stream, topics.output)
    stream.stop(graceful=False)  # SIGKILL, as a crash: its transaction stays open, its outputs on the broker
    assert open_transaction(admin, topics.output)
    at_kill = sum(committed(broker, "killed", topics.input).values())
    assert at_kill < total, "the consumer had finished before it was killed: nothing was tested"

    stream.start()  # same instance id and transactional id: fences the dead one, aborts its transaction
    wait_committed(broker, stream, topics.input, total)
    outputs = read_all(broker, topics.output, PARTITIONS)
    exactly_once(outputs, placed)
    for out in outputs:
        assert out.key == records[placed[out.source]][0]
    assert not open_transaction(admin, topics.output)
    # the dead process's outputs are on the broker, aborted: a read_uncommitted reader sees them, nobody else
    aborted = len(read_all(broker, topics.output, PARTITIONS, committed_only=False)) - total
    assert aborted > 0
    print(f"killed with {at_kill} records committed and {aborted} outputs in its open transaction")


def test_poison_records_are_dead_lettered_with_their_reason_and_the_rest_is_scored(
    broker: KafkaBroker, topics: Topics, models: Classifiers, streams: list[Stream], tmp_path: Path
) -> None:
    good = row_value(models, 0, as_object=False)
    features = json.loads(row_value(models, 1, as_object=True))
    poison = {
        b"not json {": "not_json",
        b'"a string"': "wrong_type",
        json.dumps({**features, "f3": "12.5"}).encode(): "wrong_type",
        json.dumps({k: v for k, v in features.items() if k != "f7"}).encode(): "missing_field",
        good.replace(b"[", b"[NaN, ", 1).rsplit(b",", 1)[0] + b"]": "non_finite",
        json.dumps(features).encode().replace(b'"f2": ', b'"f2": Infinity, "x": ', 1): "non_finite",
        json.dumps(json.loads(good)[:-1]).encode(): "wrong_length",
    }
    records: list[tuple[bytes | None, bytes | None]] = []
    expected: dict[int, str] = {}  # index of a poison record -> its reason
    for i in range(1_500):
        if i % 50 == 7:
            value, reason = list(poison.items())[(i // 50) % len(poison)]
            expected[len(records)] = reason
            records.append((f"bad-{i}".encode(), value))
        else:
            records.append((f"user-{i}".encode(), good))
    records.append((b"tombstone", None))
    expected[len(records) - 1] = "not_json"
    placed = produce(broker, topics.input, records)
    stream = start(streams, Stream(tmp_path, broker, topics, models.stable, group="poison"))
    wait_committed(broker, stream, topics.input, len(records))

    letters = read_all(broker, topics.dlq, 1)
    assert sorted(placed[letter.source] for letter in letters) == sorted(expected)
    for letter in letters:
        index = placed[letter.source]
        assert letter.headers["reason"].decode() == expected[index], letter.headers["error"]
        assert letter.headers["error"]
        assert (letter.key, letter.value) == records[index]  # the record as it came
    outputs = read_all(broker, topics.output, PARTITIONS)
    assert sorted(placed[out.source] for out in outputs) == sorted(set(range(len(records))) - set(expected))
    assert stream.alive
    assert stream.metric(names.STREAM_RECORDS, result="dead_lettered") == len(expected)
    assert stream.metric(names.STREAM_RECORDS, result="scored") == len(records) - len(expected)

    # and it goes on: records after the poison are scored too
    later = produce(broker, topics.input, [(b"late", good)] * 10)
    wait_committed(broker, stream, topics.input, len(records) + 10)
    assert len(read_all(broker, topics.output, PARTITIONS)) == len(outputs) + len(later)


def test_sigterm_mid_stream_exits_0_with_everything_consumed_committed(
    broker: KafkaBroker, topics: Topics, models: Classifiers, streams: list[Stream], tmp_path: Path
) -> None:
    total = 20_000
    placed = produce(broker, topics.input, [(f"u{i}".encode(), row_value(models, i, as_object=False))
                                            for i in range(total)])  # fmt: skip
    stream = start(streams, Stream(tmp_path, broker, topics, models.slow(25), "--max-batch", "100", group="term"))
    wait_until(lambda: sum(committed(broker, "term", topics.input).values()) >= 2_000, within=120, interval=0.1,
               what=lambda: f"2,000 records committed\n{stream.describe()}")  # fmt: skip
    began = time.monotonic()
    stream.process.send_signal(signal.SIGTERM)
    code = stream.process.wait(30)
    assert code == 0, stream.describe()
    assert time.monotonic() - began < 10
    assert "stopped; every batch consumed is committed" in stream.log()

    offsets = committed(broker, "term", topics.input)
    assert 0 < sum(offsets.values()) < total, "not stopped mid-stream: nothing was tested"
    outputs = read_all(broker, topics.output, PARTITIONS)
    # what is committed is exactly what was scored: every record below the committed offsets, once, no other
    below = {place for place in placed if place[1] < offsets[place[0]]}
    exactly_once(outputs, {place: placed[place] for place in below})


def test_two_groups_with_complementary_key_shares_score_every_record_once_between_them(
    broker: KafkaBroker, topics: Topics, models: Classifiers, streams: list[Stream], tmp_path: Path
) -> None:
    total = 6_000
    records = [(None if i % 10 == 0 else f"user-{i % 701}".encode(), row_value(models, i, as_object=True))
               for i in range(total)]  # fmt: skip
    placed = produce(broker, topics.input, records)
    stable = Stream(tmp_path, broker, topics, models.stable, "--key-from", "3000", "--key-to", "10000",
                    group="stable", version="1")  # fmt: skip
    canary = Stream(tmp_path, broker, topics, models.healthy, "--key-from", "0", "--key-to", "3000",
                    group="canary", version="2")  # fmt: skip
    for stream in (stable, canary):
        start(streams, stream)
    for stream in (stable, canary):
        wait_committed(broker, stream, topics.input, total)

    outputs = read_all(broker, topics.output, PARTITIONS)
    exactly_once(outputs, placed)
    sides: dict[bytes, set[bytes]] = {}
    for out in outputs:
        partition, offset = out.source
        key = records[placed[out.source]][0]
        assert out.key == key
        expected = b"2" if message_bucket(key, partition, offset) < 3000 else b"1"
        assert out.headers["version"] == expected, (key, partition, offset)
        if key is not None:
            sides.setdefault(key, set()).add(out.headers["version"])
    assert all(len(side) == 1 for side in sides.values()), "a key was scored on both sides"
    by_version = Counter(out.headers["version"] for out in outputs)
    assert 0.25 < by_version[b"2"] / total < 0.35, by_version
    keyless = Counter(out.headers["version"] for out in outputs if out.key is None)
    assert keyless[b"1"] > 0, "keyless records all went one way"
    assert keyless[b"2"] > 0, "keyless records all went one way"
    assert canary.metric(names.STREAM_RECORDS, result="skipped") == by_version[b"1"]
    assert stable.metric(names.STREAM_RECORDS, result="skipped") == by_version[b"2"]
    assert np.isclose(stable.metric(names.STREAM_RECORDS, result="scored"), by_version[b"1"])


def test_a_member_joining_mid_stream_takes_partitions_over_without_a_record_lost_or_repeated(
    broker: KafkaBroker, topics: Topics, models: Classifiers, streams: list[Stream], tmp_path: Path
) -> None:
    def more(start: int, n: int) -> dict[Place, int]:
        return produce(broker, topics.input, [(f"u{i % 503}".encode(), row_value(models, i, as_object=False))
                                              for i in range(start, start + n)])  # fmt: skip

    placed = more(0, 10_000)
    slow = models.slow(20)
    first = start(streams, Stream(tmp_path, broker, topics, slow, "--max-batch", "100", group="shared",
                                  instance="a"))  # fmt: skip
    wait_until(lambda: sum(committed(broker, "shared", topics.input).values()) >= 2_000, within=120, interval=0.1,
               what=lambda: f"2,000 records committed\n{first.describe()}")  # fmt: skip
    second = start(streams, Stream(tmp_path, broker, topics, slow, "--max-batch", "100", group="shared",
                                   instance="b"))  # fmt: skip
    # Records keep coming until the second member has scored some: how soon it gets partitions depends on the
    # machine's load (the first may have read everything before it joins), what is checked is that nothing is
    # lost or scored twice across the hand-over.
    produced = 10_000
    while second.metric(names.STREAM_RECORDS, result="scored") == 0 and produced < 60_000:
        placed |= more(produced, 2_000)
        produced += 2_000
        time.sleep(0.5)
    wait_committed(broker, first, topics.input, produced)

    exactly_once(read_all(broker, topics.output, PARTITIONS), placed)
    assert first.metric(names.STREAM_REBALANCES, kind="revoked") >= 1, first.describe()
    assert second.metric(names.STREAM_REBALANCES, kind="assigned") >= 1
    scored = [s.metric(names.STREAM_RECORDS, result="scored") for s in (first, second)]
    assert all(n > 0 for n in scored), scored
    # The counters count committed batches only: a batch whose offsets the group refused once the rebalance had
    # begun (a new generation) is aborted, read again by whoever owns its partitions then, and counted once.
    assert sum(scored) == produced, scored


def test_at_least_once_without_a_dead_letter_topic_drops_poison_and_scores_the_rest(
    broker: KafkaBroker, topics: Topics, models: Classifiers, streams: list[Stream], tmp_path: Path
) -> None:
    good = row_value(models, 3, as_object=False)
    records: list[tuple[bytes | None, bytes | None]] = [
        (f"u{i}".encode(), b"poison" if i % 100 == 0 else good) for i in range(2_000)
    ]
    placed = produce(broker, topics.input, records)
    stream = start(streams, Stream(tmp_path, broker, topics, models.stable, "--delivery", "at-least-once",
                                   group="plain", dlq=False))  # fmt: skip
    wait_committed(broker, stream, topics.input, len(records))
    outputs = read_all(broker, topics.output, PARTITIONS)
    poison = {place for place, i in placed.items() if i % 100 == 0}
    exactly_once(outputs, {place: i for place, i in placed.items() if place not in poison})  # no crash: no repeat
    assert read_all(broker, topics.dlq, 1) == []
    assert stream.metric(names.STREAM_RECORDS, result="dropped") == len(poison)
    assert stream.metric(names.STREAM_TRANSACTIONS, result="committed") == 0
    assert stream.alive
