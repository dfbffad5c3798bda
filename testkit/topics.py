"""A `modelserver stream` process for tests, and what a test does with Kafka topics as a client: produce records
and learn where each landed, read a topic as a read_committed reader sees it, read a group's committed offsets, and
check that outputs name every input record exactly once (by the source-partition and source-offset headers
`modelserver stream` puts on them)."""

from __future__ import annotations

import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from modelrollout_contract.sticky import message_bucket
from modelserver.stream.cutover import History, decode
from testkit.kafka import KafkaBroker
from testkit.models import ModelArtifact
from testkit.ports import free_port
from testkit.processes import ManagedProcess

Place = tuple[int, int]  # (partition, offset) of an input record


@dataclass(frozen=True)
class Topics:
    input: str
    output: str
    dlq: str


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


def committed(broker: KafkaBroker, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (0 where none). read_uncommitted: a transaction's offsets that
    are pending (sent, the transaction not ended) do not count and do not hold the answer back until it ends."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted"})  # fmt: skip
    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in answer}


def exactly_once(outputs: list[Read], placed: dict[Place, int]) -> None:
    """One output per input record, none for anything else."""
    counts = Counter(out.source for out in outputs)
    duplicated = {place: n for place, n in counts.items() if n > 1}
    assert not duplicated, f"{len(duplicated)} records scored more than once, e.g. {list(duplicated.items())[:5]}"
    lost = set(placed) - set(counts)
    assert not lost, f"{len(lost)} records never scored, e.g. {sorted(lost)[:5]}"
    assert set(counts) == set(placed)


# ---- stream rollouts: a steady producer, the cutovers the consumer groups committed, who scored what


class Feeder:
    """Produces records with keys from `keys` distinct users, about `rate` a second, until stopped; where each
    landed -> its key. Survives a broker restart (the idempotent producer retries)."""

    def __init__(self, broker: KafkaBroker, topic: str, value: bytes, rate: int = 2500, keys: int = 20_000) -> None:
        self.producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "enable.idempotence": True,
                                  "message.timeout.ms": 120_000})  # fmt: skip
        self.topic, self.value, self.rate, self.keys = topic, value, rate, keys
        self.placed: dict[Place, bytes] = {}
        self.failed: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._random = random.Random(7)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed.append(str(error))
        else:
            self.placed[(message.partition() or 0, message.offset() or 0)] = message.key() or b""

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.is_set():
            due = int(self.rate * (time.monotonic() - began)) - self.sent
            for _ in range(due):
                key = f"user-{self._random.randrange(self.keys)}".encode()
                while True:
                    try:
                        self.producer.produce(self.topic, self.value, key, on_delivery=self._delivered)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                self.sent += 1
            self.producer.poll(0)
            time.sleep(0.02)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> dict[Place, bytes]:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(10)
            assert self.producer.flush(120) == 0
            assert not self.failed, self.failed[:3]
            assert len(self.placed) == self.sent
        return self.placed


def cutovers(broker: KafkaBroker, group: str, topic: str, partitions: int) -> dict[int, str]:
    """Per partition, the metadata of the group's committed offset (its cutovers)."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.metadata or "" for tp in answer}


def histories(broker: KafkaBroker, topic: str, partitions: int, *groups: str) -> dict[int, History]:
    """Every cutover the groups committed, per partition."""
    found: dict[int, History] = defaultdict(History)
    for group in groups:
        for partition, metadata in cutovers(broker, group, topic, partitions).items():
            found[partition].merge(decode(metadata))
    return found


def check_shares(
    outputs: list[Read],
    placed: dict[Place, bytes],
    governed: dict[int, History],
    revisions: dict[str, str],
    follower: str,
) -> dict[int, float]:
    """Each record scored by the revision its cutover names (`revisions`: model version -> revision, from the
    outputs' version header); per epoch every key on one revision. Returns `follower`'s share of each epoch's
    records."""
    scored_by = {out.source: revisions[out.headers["version"].decode()] for out in outputs}
    by_epoch: dict[int, Counter[str]] = defaultdict(Counter)
    keys: dict[tuple[int, bytes], set[str]] = defaultdict(set)
    wrong = []
    for (partition, offset), key in placed.items():
        cutover = governed[partition].at(offset)
        assert cutover is not None, f"record {partition}:{offset} is before every cutover"
        bucket = message_bucket(key, partition, offset)
        expected = [r for r in sorted(set(revisions.values())) if cutover.scores(r, bucket)]
        actual = scored_by[(partition, offset)]
        if expected != [actual]:
            wrong.append(((partition, offset), expected, actual))
        by_epoch[cutover.epoch][actual] += 1
        keys[(cutover.epoch, key)].add(actual)
    assert not wrong, f"{len(wrong)} records scored by another revision than their cutover names: {wrong[:5]}"
    split = [(epoch, key) for (epoch, key), revisions in keys.items() if len(revisions) > 1]
    assert not split, f"keys scored by both revisions within one epoch: {split[:5]}"
    print(f"records per epoch: { {epoch: sum(counts.values()) for epoch, counts in sorted(by_epoch.items())} }")
    return {epoch: counts[follower] / sum(counts.values()) for epoch, counts in sorted(by_epoch.items())}
