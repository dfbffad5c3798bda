"""One micro-batch, consumed to produced: this consumer's share of the records kept, their values decoded and
checked, the valid ones predicted in one model call, and the messages to produce (an output per scored record, a
dead letter per record that could not be scored), with the offsets to commit. Nothing here talks to Kafka: the
caller produces and commits (modelserver.stream.delivery).

A model that fails on a batch sends every record it was given to the dead-letter topic (reason model_error): the
consumer goes on, and no record is lost. So does a record whose output is larger than `max_message_bytes`
(reason too_large; its dead letter goes without the record's value when that is too large as well): producing
it would fail its batch's transaction each time the batch is read. Invalid records without a dead-letter topic
(at-least-once only) are dropped, counted and logged."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modelrollout_contract.metrics import DEAD_LETTERED, DROPPED, SCORED, SKIPPED
from modelserver.stream.outgoing import Envelopes, Outgoing
from modelserver.stream.records import MODEL_ERROR, TOO_LARGE, Decoder, Invalid
from modelserver.stream.scoring import ModelFailed, Scorer
from modelserver.stream.shares import in_share

log = logging.getLogger(__name__)
# confluent_kafka.Message.timestamp()'s type when the message has none (TIMESTAMP_NOT_AVAILABLE).
NO_TIMESTAMP = 0

Partition = tuple[str, int]


class Consumed(Protocol):
    """A consumed message as the pipeline reads it (confluent_kafka.Message has it)."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def timestamp(self) -> tuple[int, int]: ...


@dataclass
class Processed:
    """What a batch gives: the messages to produce (outputs in record order, then dead letters), the count of
    each result, per partition the offset to commit (the last record's + 1) and the batch's first offset, and the
    Kafka timestamps (seconds) of the records this consumer handled (its share), for the end-to-end latency."""

    outgoing: list[Outgoing] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    next_offsets: dict[Partition, int] = field(default_factory=dict)
    first_offsets: dict[Partition, int] = field(default_factory=dict)
    timestamps: list[float] = field(default_factory=list)
    size: int = 0
    # Per partition, what its committed offset carries: the cutovers of a stream rollout (modelserver.stream.cutover).
    metadata: dict[Partition, str] = field(default_factory=dict)


def offsets(messages: Sequence[Consumed]) -> tuple[dict[Partition, int], dict[Partition, int]]:
    """Per partition of the batch: the offset after its last record, and its first record's offset."""
    after: dict[Partition, int] = {}
    first: dict[Partition, int] = {}
    for message in messages:
        where = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        after[where] = max(after.get(where, 0), offset + 1)
        first[where] = min(first.get(where, offset), offset)
    return after, first


class Pipeline:
    def __init__(
        self,
        scorer: Scorer,
        envelopes: Envelopes,
        decoder: Decoder,
        *,
        share: tuple[int, int] | None = None,
        max_message_bytes: int = 1_000_000,
    ) -> None:
        self.scorer = scorer
        self.envelopes = envelopes
        self.decoder = decoder
        self.share = share
        self.max_message_bytes = max_message_bytes

    def __call__(self, messages: Sequence[Consumed], shares: Sequence[bool] | None = None) -> Processed:
        """`shares`: per message, whether this consumer scores it (a rollout's cutovers decided it); default, the
        static key share."""
        done = Processed(size=len(messages))
        done.next_offsets, done.first_offsets = offsets(messages)
        inside = in_share(messages, self.share) if shares is None else shares
        mine = [m for m, ours in zip(messages, inside, strict=True) if ours]
        done.counts[SKIPPED] = len(messages) - len(mine)
        done.timestamps = [ts / 1000 for kind, ts in (m.timestamp() for m in mine) if kind != NO_TIMESTAMP]
        if not mine:
            return done
        decoded = self.decoder([m.value() for m in mine])
        failures = list(decoded.invalid)
        if decoded.rows:
            try:
                prediction = self.scorer.predict(decoded.matrix)
            except ModelFailed as exc:
                log.warning("the model failed on a batch of %d records: %s", len(decoded.rows), exc)
                failures += [Invalid(index, MODEL_ERROR, str(exc)) for index in decoded.rows]
            else:
                values = self.scorer.values(prediction, decoded.passthrough)
                for index, value in zip(decoded.rows, values, strict=True):
                    output = self.envelopes.output(mine[index], value)
                    if output.over(self.max_message_bytes):
                        why = f"its output of {output.size} bytes is over max_message_bytes ({self.max_message_bytes})"
                        failures.append(Invalid(index, TOO_LARGE, why))
                    else:
                        done.outgoing.append(output)
                        done.counts[SCORED] += 1
        for failure in failures:
            letter = self.envelopes.dead_letter(mine[failure.index], failure.reason, failure.error,
                                                limit=self.max_message_bytes)  # fmt: skip
            if letter is not None:
                done.outgoing.append(letter)
        if failures:
            result = DEAD_LETTERED if self.envelopes.dead_letter_topic is not None else DROPPED
            done.counts[result] = len(failures)
            by_reason = Counter(f.reason for f in failures)
            log.log(logging.INFO if result == DEAD_LETTERED else logging.WARNING, "%d records of a batch %s",
                    len(failures), result.replace("_", "-"),
                    extra={"reasons": dict(by_reason), "example": failures[0].error})  # fmt: skip
        return done
