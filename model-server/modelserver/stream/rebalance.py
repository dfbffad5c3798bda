"""The group's assignment of partitions to this consumer, kept as the rebalance callbacks report it.

With cooperative-sticky assignment, librdkafka reports only the partitions that change: on_assign adds some
(incremental_assign), on_revoke takes some back (incremental_unassign), on_lost says some were taken without a
revocation (the session expired: another member may own them already). The callbacks run inside
`consumer.consume()`, which the loop calls only once the previous batch is committed (or aborted): a revocation
never lands in the middle of a transaction. A batch that a revocation overtakes inside the same consume() call may
still carry records of the revoked partitions; the loop drops those (`owns`), and their new owner reads them from
the committed offsets.

Readiness: the consumer is ready once the group has assigned it its first assignment, even an empty one (a
member of a group with more members than partitions: joined, idle, and ready to take over)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, TopicPartition

from modelrollout_contract.metrics import ASSIGNED, LOST, REVOKED

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class Assignment:
    """The partitions this consumer owns; `on_change(kind, partitions)` hears of every change (metrics)."""

    def __init__(self, on_change: Callable[[str, list[Partition]], None] | None = None) -> None:
        self.partitions: set[Partition] = set()
        self.joined = threading.Event()
        self._on_change = on_change

    def owns(self, topic: str | None, partition: int | None) -> bool:
        return (topic or "", partition if partition is not None else -1) in self.partitions

    def topic_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition) for topic, partition in sorted(self.partitions)]

    def on_assign(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        consumer.incremental_assign(list(partitions))
        self._change(ASSIGNED, partitions)
        self.joined.set()

    def on_revoke(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        consumer.incremental_unassign(list(partitions))
        self._change(REVOKED, partitions)

    def on_lost(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        consumer.incremental_unassign(list(partitions))
        self._change(LOST, partitions)

    def _change(self, kind: str, partitions: Sequence[TopicPartition]) -> None:
        moved = [(tp.topic, tp.partition) for tp in partitions]
        if kind == ASSIGNED:
            self.partitions.update(moved)
        else:
            self.partitions.difference_update(moved)
        level = logging.WARNING if kind == LOST else logging.INFO
        log.log(level, "partitions %s: %s; now %d", kind, sorted(moved), len(self.partitions))
        if self._on_change is not None:
            self._on_change(kind, moved)
