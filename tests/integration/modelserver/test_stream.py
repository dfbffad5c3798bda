"""`modelserver stream` as a process against a real Kafka broker (testkit.kafka: one KRaft node on loopback):
every input record scored exactly once (counted by the outputs' source headers, read committed), also across a
SIGKILL inside a transaction and a restart, and across a member joining the group mid-stream; poison records
dead-lettered with their reason while the good ones are scored; a SIGTERM that exits 0 with everything consumed
committed; two consumer groups splitting the records by key share; at-least-once without a dead-letter topic."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from testkit.kafka import KafkaBroker
from testkit.models import Classifiers
from testkit.topics import Place, Stream, Topics, committed, exactly_once, produce, read_all
from testkit.waiting import wait_until

from modelrollout_contract import metrics as names
from modelrollout_contract.sticky import message_bucket

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4


@pytest.fixture
def topics(broker: KafkaBroker) -> Topics:
    """Topics of this test alone (the broker is the module's)."""
    tag = uuid.uuid4().hex[:8]
    made = Topics(f"events-{tag}", f"scores-{tag}", f"dead-{tag}")
    broker.create_topics({made.input: PARTITIONS, made.output: PARTITIONS, made.dlq: 1})
    return made


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


def total_committed(broker: KafkaBroker, group: str, topic: str) -> int:
    return sum(committed(broker, group, topic, PARTITIONS).values())


def wait_committed(broker: KafkaBroker, stream: Stream, topic: str, total: int, within: float = 120) -> None:
    def done() -> bool:
        assert stream.alive, stream.describe()
        return total_committed(broker, stream.group, topic) >= total

    wait_until(done, within=within, interval=0.25, what=lambda: f"{total} records committed\n{stream.describe()}")


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
    wait_until(lambda: total_committed(broker, "killed", topics.input) >= 2_000, within=120, interval=0.1,
               what=lambda: f"2,000 records committed\n{stream.describe()}")  # fmt: skip
    admin = broker.admin()
    freeze_inside_a_transaction(admin, stream, topics.output)
    stream.stop(graceful=False)  # SIGKILL, as a crash: its transaction stays open, its outputs on the broker
    assert open_transaction(admin, topics.output)
    at_kill = total_committed(broker, "killed", topics.input)
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
    wait_until(lambda: total_committed(broker, "term", topics.input) >= 2_000, within=120, interval=0.1,
               what=lambda: f"2,000 records committed\n{stream.describe()}")  # fmt: skip
    began = time.monotonic()
    stream.process.send_signal(signal.SIGTERM)
    code = stream.process.wait(30)
    assert code == 0, stream.describe()
    assert time.monotonic() - began < 10
    assert "stopped; every batch consumed is committed" in stream.log()

    offsets = committed(broker, "term", topics.input, PARTITIONS)
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
    wait_until(lambda: total_committed(broker, "shared", topics.input) >= 2_000, within=120, interval=0.1,
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


def test_an_output_over_max_message_bytes_is_dead_lettered_and_a_topic_below_it_is_a_clear_error(
    broker: KafkaBroker, models: Classifiers, streams: list[Stream], tmp_path: Path
) -> None:
    """The output topic takes record batches of at most 2,000 bytes (max.message.bytes); some records' passthrough
    field makes their output 3 kB. With max_message_bytes at the topic's limit, those records are dead-lettered
    (too_large, their value left at the source) and every other one scored: exactly one of output or dead letter
    per record. With the default (1 MB, above the topic's) the broker refuses a batch, and the consumer stops at
    once saying which setting to lower, having committed nothing."""
    tag = uuid.uuid4().hex[:8]
    small = Topics(f"events-{tag}", f"scores-{tag}", f"dead-{tag}")
    broker.create_topics({small.input: PARTITIONS, small.output: PARTITIONS, small.dlq: 1},
                         configs={small.output: {"max.message.bytes": "2000"}})  # fmt: skip
    features = json.loads(row_value(models, 1, as_object=True))
    big = {i for i in range(600) if i % 97 == 5}
    records: list[tuple[bytes | None, bytes | None]] = [
        (f"user-{i}".encode(), json.dumps({**features, "note": "x" * (3_000 if i in big else 10)}).encode())
        for i in range(600)
    ]
    placed = produce(broker, small.input, records)

    misconfigured = Stream(tmp_path, broker, small, models.stable, "--passthrough", "note", group="sizes")
    streams.append(misconfigured)
    misconfigured.start(wait=False)  # it may stop before a readiness probe sees it ready
    assert misconfigured.process.wait(timeout=60) == 1
    assert "max.message.bytes is below max_message_bytes; set max_message_bytes" in misconfigured.log()
    assert total_committed(broker, "sizes", small.input) == 0

    # The same member restarted with the setting fixed, as a pod would be (its static membership takes the
    # partitions back at once).
    stream = start(streams, Stream(tmp_path, broker, small, models.stable, "--passthrough", "note",
                                   "--max-message-bytes", "2000", group="sizes"))  # fmt: skip
    wait_committed(broker, stream, small.input, len(records))
    letters = read_all(broker, small.dlq, 1)
    assert sorted(placed[letter.source] for letter in letters) == sorted(big)
    for letter in letters:
        assert letter.headers["reason"] == b"too_large"
        assert b"over max_message_bytes (2000)" in letter.headers["error"]
        assert (letter.key, letter.value) == (records[placed[letter.source]][0], None)
    outputs = read_all(broker, small.output, PARTITIONS)
    exactly_once(outputs, {p: i for p, i in placed.items() if i not in big})
    assert stream.metric(names.STREAM_TRANSACTIONS, result="aborted") == 0


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
