"""The messages a consumer produces: a record's output (its key, its prediction) and a record's dead letter (its
key and value as they came). Both carry, as headers, the model and version that handled the record and where the
record came from, so an output or a dead letter names its input exactly once per (topic, partition, offset):

- output: `model`, `version`, `source-topic`, `source-partition`, `source-offset`;
- dead letter: `reason` (a machine word, modelserver.stream.records.REASONS), `error` (what exactly, at most
  ERROR_LIMIT bytes), `model`, `version`, and the same `source-*`.

Header values are UTF-8 text (numbers in decimal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MODEL_HEADER = "model"
VERSION_HEADER = "version"
SOURCE_TOPIC = "source-topic"
SOURCE_PARTITION = "source-partition"
SOURCE_OFFSET = "source-offset"
REASON_HEADER = "reason"
ERROR_HEADER = "error"
ERROR_LIMIT = 1000

Headers = list[tuple[str, bytes]]


class Source(Protocol):
    """What is copied from a consumed message (confluent_kafka.Message has it)."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


def source_headers(message: Source) -> Headers:
    return [
        (SOURCE_TOPIC, (message.topic() or "").encode()),
        (SOURCE_PARTITION, str(message.partition()).encode()),
        (SOURCE_OFFSET, str(message.offset()).encode()),
    ]


class Envelopes:
    """Shapes the outputs and dead letters of one model version."""

    def __init__(self, *, output_topic: str, dead_letter_topic: str | None, model: str, version: str) -> None:
        self.output_topic = output_topic
        self.dead_letter_topic = dead_letter_topic
        self._model = [(MODEL_HEADER, model.encode()), (VERSION_HEADER, version.encode())]

    def output(self, message: Source, value: bytes) -> Outgoing:
        return Outgoing(self.output_topic, message.key(), value, [*self._model, *source_headers(message)])

    def dead_letter(self, message: Source, reason: str, error: str) -> Outgoing | None:
        """The record as it came, with why; None without a dead-letter topic (the caller drops the record)."""
        if self.dead_letter_topic is None:
            return None
        said = error.encode()[:ERROR_LIMIT].decode(errors="ignore")  # not cut inside a character
        headers = [(REASON_HEADER, reason.encode()), (ERROR_HEADER, said.encode()), *self._model]
        return Outgoing(self.dead_letter_topic, message.key(), message.value(), headers + source_headers(message))
