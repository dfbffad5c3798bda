"""A shadow's comparison, the I/O (modelserver.stream.shadow pairs and compares): the shadowing consumer hands over
its answers once their batch commits, and a thread of its own reads the stable revision's output topic
(read_committed, every partition assigned, from its end when the shadow starts: the shadow scores from the input's
end too) and hands over each output of a record in the shadow's key share.

The candidate's process compares, not a process of its own: it has its answers in hand, so only the stable side
is read back from Kafka, and the comparisons carry the candidate's revision label like its other series."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Message, TopicPartition

from modelrollout_contract.metrics import SHADOW_SIDE, STABLE_SIDE
from modelrollout_contract.sticky import message_bucket
from modelserver.stream.metrics import StreamMetrics
from modelserver.stream.outgoing import REASON_HEADER, Origin, Outgoing, origin_of
from modelserver.stream.shadow import FAILED, Answer, Paired, ShadowJoin, Side, answer_of

log = logging.getLogger(__name__)
READ_BATCH = 1000
READ_WAIT_S = 0.5
LIST_TIMEOUT_S = 10.0


class Comparer:
    """Pairs this shadow's committed answers with the stable outputs of the same records, and counts the pairs."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        topic: str,
        input_topic: str,
        share: tuple[int, int] | None,
        metrics: StreamMetrics,
        join: ShadowJoin | None = None,
    ) -> None:
        self.topic = topic
        self.input_topic = input_topic
        self.share = share
        self.metrics = metrics
        self.join = join or ShadowJoin()
        self._config = config
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shadow-compare", daemon=True)
        self._reader: Consumer | None = None

    def start(self) -> Comparer:
        """Assign the stable output topic's partitions at their ends (before the shadow consumes its first record:
        every stable output of a record the shadow scores from now on comes later), then read on a thread."""
        reader = Consumer(self._config)
        metadata = reader.list_topics(self.topic, timeout=LIST_TIMEOUT_S).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            reader.close()
            why = metadata.error if metadata is not None else "not found"
            raise KafkaException(f"cannot read the stable output topic {self.topic}: {why}")
        reader.assign([TopicPartition(self.topic, p, OFFSET_END) for p in sorted(metadata.partitions)])
        self._reader = reader
        self._thread.start()
        log.info("comparing this shadow's answers with %s (%d partitions)", self.topic, len(metadata.partitions))
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def shadowed(self, outgoing: Iterable[Outgoing]) -> None:
        """A committed batch's messages: each output (or dead letter) is this shadow's answer to its source."""
        for message in outgoing:
            source = origin_of(message.headers)
            if source is None:
                continue
            failed = any(name == REASON_HEADER for name, _ in message.headers)
            self._add(SHADOW_SIDE, source, FAILED if failed else answer_of(message.value))

    def _wanted(self, message: Message, source: Origin) -> bool:
        if source[0] != self.input_topic:
            return False
        if self.share is None:
            return True
        start, end = self.share
        return start <= message_bucket(message.key(), source[1], source[2]) < end

    def _add(self, side: Side, source: Origin, answer: Answer) -> None:
        with self._lock:
            paired: Paired = self.join.add(side, source, answer)
        if paired.comparison is not None:
            self.metrics.compared(paired.comparison.result, paired.comparison.abs_diff)
        if paired.evicted:
            self.metrics.unmatched(side, paired.evicted)

    def _run(self) -> None:
        reader = self._reader
        assert reader is not None
        try:
            while not self._stop.is_set():
                try:
                    messages = reader.consume(num_messages=READ_BATCH, timeout=READ_WAIT_S)
                except KafkaException as exc:
                    log.warning("reading the stable outputs: %s", exc)
                    continue
                for message in messages:
                    if message.error() is not None:
                        continue
                    headers = message.headers()
                    source = origin_of(headers if isinstance(headers, list) else None)
                    if source is not None and self._wanted(message, source):
                        self._add(STABLE_SIDE, source, answer_of(message.value()))
        except Exception:  # the comparison is a measurement: it never stops the shadow's scoring
            log.exception("the shadow comparison stopped")
        finally:
            reader.close()
