"""A stream shadow against a real Kafka broker: the stable consumer scores every record into the output topic, a
shadowing candidate (`--compare-topic`) scores its key share into a shadow topic of its own and compares each of
its answers with the stable output for the same input partition and offset. Checked against the topics
themselves: the output topic untouched (one stable answer per record), the shadow topic one candidate answer per
record of its share, and the candidate's comparison series equal to a join of the two topics done here."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.kafka import KafkaBroker
from testkit.models import Classifiers
from testkit.topics import Place, Read, Stream, Topics, committed, exactly_once, produce, read_all
from testkit.waiting import wait_until

from modelrollout_contract import metrics as names
from modelrollout_contract.sticky import message_bucket

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
RECORDS = 8_000
SHARE = 5_000  # the shadow's buckets: [0, SHARE) of 10,000, a mirrorPercent of 50
POISON = 40


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    started: list[Stream] = []
    yield started
    for stream in started:
        stream.stop(graceful=False)


def value(models: Classifiers, i: int) -> bytes:
    if i % (RECORDS // POISON) == 0:
        return b"{not json"
    return json.dumps(models.dataset.rows[i % len(models.dataset)].tolist()).encode()


def probability(read: Read) -> float:
    return float(json.loads(read.value or b"")["probabilities"]["1"])


def test_a_shadow_compares_its_share_with_the_stable_output_and_leaves_that_untouched(
    broker: KafkaBroker, models: Classifiers, streams: list[Stream], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(f"events-{tag}", f"scores-{tag}", f"dead-{tag}")
    shadow_topic = f"scores-shadow-{tag}"
    broker.create_topics({topics.input: PARTITIONS, topics.output: PARTITIONS, topics.dlq: 1,
                          shadow_topic: PARTITIONS})  # fmt: skip
    stable = Stream(tmp_path, broker, topics, models.stable, group=f"stable-{tag}")
    shadow = Stream(tmp_path, broker, Topics(topics.input, shadow_topic, shadow_topic), models.disagreeing,
                    "--compare-topic", topics.output, "--key-to", str(SHARE), "--revision", "b2",
                    group=f"shadow-{tag}", version="2")  # fmt: skip
    # Both ready before the first record: the shadow reads the new topic from its start (the operator starts a
    # shadow at the end of a topic with history, `--offset-reset latest`), its comparer the output topic's end.
    for stream in (stable, shadow):
        streams.append(stream)
        stream.start()

    records: list[tuple[bytes | None, bytes | None]] = [
        (f"user-{i % 2000}".encode(), value(models, i)) for i in range(RECORDS)
    ]
    placed = produce(broker, topics.input, records)

    def consumed(stream: Stream) -> bool:
        assert stream.alive, stream.describe()
        return sum(committed(broker, stream.group, topics.input, PARTITIONS).values()) >= RECORDS

    wait_until(lambda: consumed(stable) and consumed(shadow), within=120, interval=0.25, what="both consumed")

    # The output topic: every valid record once, by the stable version only; the poison in stable's dead letters.
    poison = {place for place, i in placed.items() if records[i][1] == b"{not json"}
    outputs = read_all(broker, topics.output, PARTITIONS)
    exactly_once(outputs, {p: i for p, i in placed.items() if p not in poison})
    assert {out.headers["version"] for out in outputs} == {b"1"}
    assert {(d.partition, int(d.headers["source-partition"]), int(d.headers["source-offset"]))[1:]
            for d in read_all(broker, topics.dlq, 1)} == poison  # fmt: skip

    # The shadow topic: one answer (or dead letter, with its reason) per record of the shadow's share, no other.
    def in_share(place: Place) -> bool:
        return message_bucket(records[placed[place]][0], *place) < SHARE

    shadowed = read_all(broker, shadow_topic, PARTITIONS)
    mine = {place for place in placed if in_share(place)}
    exactly_once(shadowed, {p: placed[p] for p in mine})
    assert {s.headers["version"] for s in shadowed} == {b"2"}
    letters = [s for s in shadowed if "reason" in s.headers]
    assert {s.source for s in letters} == poison & mine
    assert {s.headers["reason"] for s in letters} == {b"not_json"}

    # The comparisons equal a join of the two topics, done here.
    stable_by_source = {out.source: out for out in outputs}
    pairs = [(stable_by_source[s.source], s) for s in shadowed if "reason" not in s.headers]
    agree = sum(json.loads(a.value or b"")["prediction"] == json.loads(b.value or b"")["prediction"] for a, b in pairs)
    diff = math.fsum(abs(probability(a) - probability(b)) for a, b in pairs)
    assert 0 < agree < len(pairs), "the disagreeing model must disagree on some records and agree on others"

    def counted() -> float:
        return sum(shadow.metric(names.STREAM_SHADOW_COMPARISONS, result=r) for r in ("agree", "disagree", "error"))

    wait_until(lambda: counted() >= len(pairs), within=30, interval=0.25, what=f"{len(pairs)} comparisons")
    assert shadow.metric(names.STREAM_SHADOW_COMPARISONS, result="agree", revision="b2") == agree
    assert shadow.metric(names.STREAM_SHADOW_COMPARISONS, result="disagree") == len(pairs) - agree
    assert shadow.metric(names.STREAM_SHADOW_COMPARISONS, result="error") == 0
    assert shadow.metric(names.STREAM_SHADOW_ABS_DIFF + "_count") == len(pairs)
    assert shadow.metric(names.STREAM_SHADOW_ABS_DIFF + "_sum") == pytest.approx(diff, rel=1e-9)
    for side in ("shadow", "stable"):
        assert shadow.metric(names.STREAM_SHADOW_UNMATCHED, side=side) == 0
    print(f"{len(placed)} records, {len(mine)} in the shadow's share, {len(pairs)} compared, {agree} agreeing")
