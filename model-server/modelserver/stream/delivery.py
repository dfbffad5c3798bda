"""How a processed batch is committed: its outputs and dead letters produced, its offsets committed.

Exactly-once (the default): one transaction per batch, read-process-write (KIP-98, KIP-447):
begin_transaction; produce the outputs and dead letters; send_offsets_to_transaction(the offset after each
partition's last record, the consumer's group metadata); commit_transaction. A reader with
isolation.level=read_committed sees a batch's outputs if and only if its offsets are committed, so after any crash
the batch is either wholly visible and never read again, or invisible and read again. The group metadata makes the
group coordinator refuse offsets from a member whose partitions were taken away (a zombie after a rebalance), and
the transactional.id, the same after a restart, fences the previous process's producer (init_transactions aborts
its open transaction). Errors are classified as in modelserver.stream.clients: a retriable one repeats the call
(until the transaction timeout, then the transaction is aborted); an abortable one aborts the transaction and
rewinds; a fatal one (fenced) raises Fatal and the process exits non-zero.

At-least-once: produce, flush (every delivery acknowledged), then commit the offsets synchronously. No
transaction's overhead (a round trip to the transaction coordinator per batch, markers in the output), but a crash
between the flush and the commit, or a commit refused (a rebalance), makes the batch be scored again: its outputs
appear twice. A failed delivery rewinds the batch without committing (its delivered outputs then appear twice).

Rewind: each partition of the batch this consumer still owns is sought back to its committed offset (the batch's
first offset when the group has none), so the next consume() reads the batch again; a partition it no longer owns
is its new owner's to read from the committed offset."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from modelrollout_contract.metrics import ABORTED, COMMITTED
from modelserver.stream.clients import Severity, classify, error_of
from modelserver.stream.outgoing import Outgoing
from modelserver.stream.pipeline import Processed
from modelserver.stream.rebalance import Assignment

log = logging.getLogger(__name__)
BUFFER_FULL_WAIT_S = 0.05
COMMITTED_TIMEOUT_S = 10.0
# One transactional call's timeout (retried until the transaction's), and how much longer it may take before it
# counts as hung.
CALL_TIMEOUT_S = 5.0
HUNG_GRACE_S = 5.0


class Fatal(Exception):
    """The consumer cannot go on (fenced, or Kafka says the error is fatal): the process exits non-zero."""


class Hung(Fatal):
    """A transactional call that did not return within its timeout and a grace: librdkafka can block in
    send_offsets_to_transaction past its timeout when the group coordinator went away (a broker restart; measured
    here with librdkafka 2.16, confluentinc/librdkafka#5456 and #5511). The process exits at once, without closing
    the clients (a close would block on the same state); the restart's init_transactions fences what is left and
    aborts the open transaction, so nothing is lost or repeated."""


class _Abort(Exception):
    """The transaction must be aborted and the batch read again."""


class Committer(Protocol):
    def start(self) -> None:
        """Before the consumer subscribes (exactly-once: init_transactions, which fences a predecessor)."""

    def commit(self, batch: Processed) -> bool:
        """Produce and commit `batch`: True when committed; False when rewound to be consumed again."""


class Recorder(Protocol):
    def transaction(self, result: str) -> None: ...


def too_large(error: KafkaError | None) -> bool:
    """The broker (or librdkafka before it) refused a message batch for its size: reading it again will not help.
    The pipeline keeps every message within max_message_bytes and the producer's batches too (batch.size), so this
    means a topic takes less than max_message_bytes: a configuration error, which stops the consumer (Fatal)."""
    return error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE


def _refused(what: str, error: object) -> Fatal:
    return Fatal(f"{what}: the broker refused a batch as too large ({error}): the output or dead-letter topic's "
                 "max.message.bytes is below max_message_bytes; set max_message_bytes at or below it")  # fmt: skip


def produce_all(
    producer: Producer, outgoing: list[Outgoing], on_delivery: Callable[[KafkaError | None, Message], None] | None
) -> None:
    """Hand every message to the producer; a full local queue is waited out (delivery reports served)."""
    for message in outgoing:
        while True:
            try:
                producer.produce(message.topic, message.value, message.key, headers=[*message.headers],
                                 on_delivery=on_delivery)  # fmt: skip
                break
            except BufferError:
                producer.poll(BUFFER_FULL_WAIT_S)


def rewind(consumer: Consumer, batch: Processed, assignment: Assignment) -> None:
    """Seek the batch's partitions that are still this consumer's back to their committed offsets. A seek that
    fails would let the next batch commit past records never produced: that is Fatal (a restart reads them)."""
    owned = [TopicPartition(t, p) for t, p in sorted(batch.first_offsets) if assignment.owns(t, p)]
    if not owned:
        return
    committed: dict[tuple[str, int], int] = {}
    try:
        for tp in consumer.committed(owned, timeout=COMMITTED_TIMEOUT_S):
            if tp.error is None and tp.offset >= 0:
                committed[(tp.topic, tp.partition)] = tp.offset
    except KafkaException as exc:
        log.warning("cannot read the committed offsets (%s): rewinding to the batch's first offsets", exc)
    for tp in owned:
        where = (tp.topic, tp.partition)
        offset = committed.get(where, batch.first_offsets[where])
        try:
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            raise Fatal(f"cannot rewind {tp.topic}[{tp.partition}] to offset {offset}: {exc}") from exc
    log.info("rewound %s to the committed offsets", [f"{t.topic}[{t.partition}]" for t in owned])


def _offsets(batch: Processed) -> list[TopicPartition]:
    return [
        TopicPartition(t, p, offset, metadata=batch.metadata[(t, p)])
        if (t, p) in batch.metadata
        else TopicPartition(t, p, offset)
        for (t, p), offset in sorted(batch.next_offsets.items())
    ]


class ExactlyOnce:
    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        assignment: Assignment,
        metrics: Recorder,
        *,
        timeout_s: float,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.assignment = assignment
        self.metrics = metrics
        self.timeout_s = timeout_s
        self._bounded = BoundedCalls()

    def start(self) -> None:
        try:
            self._call("init_transactions", self.producer.init_transactions)
        except _Abort as exc:  # init_transactions has nothing to abort: a state librdkafka does not give here
            raise Fatal(f"init_transactions: {exc}") from exc

    def commit(self, batch: Processed) -> bool:
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:  # only a fatal error or a misuse (a transaction already open) land here
            raise Fatal(f"begin_transaction: {exc}") from exc
        try:
            try:
                produce_all(self.producer, batch.outgoing, None)
            except KafkaException as exc:  # never committed without the message
                if (error := error_of(exc)) is not None and error.fatal():
                    raise Fatal(f"produce: {exc}") from exc
                if too_large(error):
                    raise _refused("produce", exc) from exc
                raise _Abort(f"produce: {exc}") from exc
            offsets = _offsets(batch)
            group = self.consumer.consumer_group_metadata()
            self._call("send_offsets_to_transaction",
                       lambda timeout: self.producer.send_offsets_to_transaction(offsets, group, timeout))  # fmt: skip
            self._call("commit_transaction", self.producer.commit_transaction)
        except _Abort as exc:
            log.warning("aborting the transaction of a batch of %d records: %s", batch.size, exc)
            self._abort()
            self.metrics.transaction(ABORTED)
            rewind(self.consumer, batch, self.assignment)
            return False
        self.metrics.transaction(COMMITTED)
        return True

    def _abort(self) -> None:
        try:
            self._call("abort_transaction", self.producer.abort_transaction)
        except _Abort as exc:
            raise Fatal(f"abort_transaction: {exc}") from exc

    def _call(self, what: str, call: Callable[[float], object]) -> None:
        """`call(timeout)` until it succeeds; a retriable error repeats it (for up to the transaction timeout, then
        the transaction is aborted), an abortable one raises _Abort, a fatal one Fatal, a hung one Hung."""
        deadline = time.monotonic() + self.timeout_s
        pause = 0.05
        while True:
            timeout = max(0.1, min(CALL_TIMEOUT_S, deadline - time.monotonic()))
            try:
                self._bounded(what, call, timeout)
                return
            except KafkaException as exc:
                if too_large(error_of(exc)):
                    raise _refused(what, exc) from exc
                severity = classify(exc)
                if severity is Severity.FATAL:
                    raise Fatal(f"{what}: {exc}") from exc
                if severity is Severity.ABORTABLE or time.monotonic() + pause > deadline:
                    raise _Abort(f"{what}: {exc}") from exc
                log.info("%s: %s; trying again", what, exc)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)


class BoundedCalls:
    """Runs `call(timeout)` on one daemon thread and waits for it timeout + HUNG_GRACE_S: its exception is raised in
    the caller's thread; a call still blocked then raises Hung (the process is about to exit, so nothing is ever
    queued behind a hung call). One thread for the consumer's life, not one per call: starting and joining a thread
    cost more than the call itself when the broker answers at once, and exactly-once makes two such calls per
    transaction, hundreds of transactions a second at half load."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def __call__(self, what: str, call: Callable[[float], object], timeout: float) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="transactional-calls", daemon=True)
            self._thread.start()
        done: Future[object] = Future()
        self._calls.put((lambda: call(timeout), done))
        if not wait([done], timeout + HUNG_GRACE_S).done:
            raise Hung(f"{what} did not return within {timeout + HUNG_GRACE_S:.0f}s (its timeout was {timeout:.0f}s)")
        done.result()  # raises the call's exception, as it was

    def _serve(self) -> None:
        while True:
            call, done = self._calls.get()
            done.set_running_or_notify_cancel()
            try:
                done.set_result(call())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as is
                done.set_exception(exc)


class AtLeastOnce:
    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        assignment: Assignment,
        *,
        timeout_s: float,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.assignment = assignment
        self.timeout_s = timeout_s

    def start(self) -> None:
        pass

    def commit(self, batch: Processed) -> bool:
        failed: list[KafkaError] = []

        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                failed.append(error)

        try:
            produce_all(self.producer, batch.outgoing, delivered)
        except KafkaException as exc:
            if (error := error_of(exc)) is not None and (error.fatal() or too_large(error)):
                raise (_refused("produce", exc) if too_large(error) else Fatal(f"produce: {exc}")) from exc
            failed.append(error or KafkaError(KafkaError._FAIL, str(exc)))
        left = self.producer.flush(self.timeout_s)
        if any(too_large(error) for error in failed):
            raise _refused("delivery", next(e for e in failed if too_large(e)))
        if failed or left:
            log.warning("%d deliveries failed and %d are unacknowledged (e.g. %s): the batch is read again",
                        len(failed), left, failed[:1])  # fmt: skip
            rewind(self.consumer, batch, self.assignment)
            return False
        try:
            answer = self.consumer.commit(offsets=_offsets(batch), asynchronous=False)
        except KafkaException as exc:
            if (error := error_of(exc)) is not None and error.fatal():
                raise Fatal(f"commit: {exc}") from exc
            log.warning("the batch's offsets were not committed (%s): its records may be scored again", exc)
            return True
        refused = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in answer or () if tp.error is not None]
        if refused:
            log.warning("offsets not committed for %s: those records may be scored again", refused)
        return True
