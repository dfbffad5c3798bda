"""This consumer's share of a topic's records (a canary by message share): a record is its own when its bucket
(modelrollout_contract.sticky.message_bucket: the Kafka key's, the one our router gives a request with that key;
for a keyless record, the bucket of its partition and offset) is in [key_from, key_to). Every consumer group reads
every record; the groups of one rollout have complementary ranges, so each record is scored by exactly one of
them, and the others skip it (its offset is still committed, so it is not read again)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from modelrollout_contract.sticky import message_bucket


class Placed(Protocol):
    """What a share needs of a Kafka message (confluent_kafka.Message has it)."""

    def key(self) -> bytes | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...


def bucket_of(message: Placed) -> int:
    return message_bucket(message.key(), message.partition() or 0, message.offset() or 0)


def in_share(messages: Sequence[Placed], share: tuple[int, int] | None) -> list[bool]:
    """Per message, whether it is in the share [start, end) of the buckets; every message when `share` is None."""
    if share is None:
        return [True] * len(messages)
    start, end = share
    return [start <= bucket_of(message) < end for message in messages]
