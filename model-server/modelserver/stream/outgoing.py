"""The messages a consumer produces: a record's output (its key, its prediction) and a record's dead letter (its
key and value as they came). Both carry, as headers, the model and version that handled the record and where the
record came from, so an output or a dead letter names its input exactly once per (topic, partition, offset):

- output: `model`, `version`, `source-topic`, `source-partition`, `source-offset`;
- dead letter: `reason` (a machine word, modelserver.stream.records.REASONS), `error` (what exactly, at most
  ERROR_LIMIT bytes), `model`, `version`, and the same `source-*`. A dead letter that would itself be too large
  to produce goes without its value (`error` says so): the record stays at its source partition and offset.

Header values are UTF-8 text (numbers in decimal)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

MODEL_HEADER = "model"
VERSION_HEADER = "version"
SOURCE_TOPIC = "source-topic"
SOURCE_PARTITION = "source-partition"
SOURCE_OFFSET = "source-offset"
REASON_HEADER = "reason"
ERROR_HEADER = "error"
ERROR_LIMIT = 1000
# A record batch of one message is the message plus its framing (the batch header, 61 bytes, and the record's
# lengths and attributes): what a topic's max.message.bytes is measured against.
FRAMING_BYTES = 128
# Our headers' names and values never add up to this: error (ERROR_LIMIT), the source topic (249), model name
# (128) and version (64), reason, partition and offset numbers, and the names.
HEADERS_BOUND = 2048

Headers = list[tuple[str, bytes]]
Origin = tuple[str, int, int]  # the input record a message answers: its topic, partition and offset


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

    @property
    def size(self) -> int:
        """Its bytes as a record counts them against a size limit: key, value, header names and values."""
        return len(self.key or b"") + len(self.value or b"") + sum(len(n) + len(v) for n, v in self.headers)

    def over(self, limit: int) -> bool:
        """Whether it is larger than `limit` as a record batch of its own. Our headers never reach HEADERS_BOUND,
        so the exact sum is taken only near the limit (not per record of every batch)."""
        rough = len(self.key or b"") + len(self.value or b"") + HEADERS_BOUND + FRAMING_BYTES
        return rough > limit and self.size + FRAMING_BYTES > limit


def source_headers(message: Source) -> Headers:
    return [
        (SOURCE_TOPIC, (message.topic() or "").encode()),
        (SOURCE_PARTITION, str(message.partition()).encode()),
        (SOURCE_OFFSET, str(message.offset()).encode()),
    ]


def origin_of(headers: Iterable[tuple[str, Any]] | None) -> Origin | None:
    """The input record a message names in its `source-*` headers; None when they are missing or malformed."""
    found = {name: value for name, value in headers or () if name in {SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET}}
    try:
        return (bytes(found[SOURCE_TOPIC]).decode(), int(found[SOURCE_PARTITION]), int(found[SOURCE_OFFSET]))
    except (KeyError, TypeError, ValueError):
        return None


class Envelopes:
    """Shapes the outputs and dead letters of one model version."""

    def __init__(self, *, output_topic: str, dead_letter_topic: str | None, model: str, version: str) -> None:
        self.output_topic = output_topic
        self.dead_letter_topic = dead_letter_topic
        self._model = [(MODEL_HEADER, model.encode()), (VERSION_HEADER, version.encode())]

    def output(self, message: Source, value: bytes) -> Outgoing:
        return Outgoing(self.output_topic, message.key(), value, [*self._model, *source_headers(message)])

    def dead_letter(self, message: Source, reason: str, error: str, *, limit: int | None = None) -> Outgoing | None:
        """The record as it came, with why; None without a dead-letter topic (the caller drops the record). Over
        `limit` bytes it goes without its value."""
        if self.dead_letter_topic is None:
            return None
        letter = self._letter(message, reason, error, message.value())
        if limit is not None and letter.over(limit):
            dropped = f"{error}; the record's value ({len(message.value() or b'')} bytes) is left at its source"
            letter = self._letter(message, reason, dropped, None)
        return letter

    def _letter(self, message: Source, reason: str, error: str, value: bytes | None) -> Outgoing:
        assert self.dead_letter_topic is not None
        said = error.encode()[:ERROR_LIMIT].decode(errors="ignore")  # not cut inside a character
        headers = [(REASON_HEADER, reason.encode()), (ERROR_HEADER, said.encode()), *self._model]
        return Outgoing(self.dead_letter_topic, message.key(), value, headers + source_headers(message))
