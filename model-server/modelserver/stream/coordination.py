"""The I/O of a stream rollout's shares (modelserver.stream.cutover decides): the share document, read from the
operator's ConfigMap (watched) or a file (polled) on a thread of its own; this group's committed cutovers, read
when a partition is assigned (a restart, a rebalance); and the leader group's committed offsets with their
cutovers, read by any consumer that does not lead (one OffsetFetch per call, answered by the group coordinator from
memory: milliseconds).

The leader's offsets are read by a consumer of the leader group that never joins it (`Coordination.reader`), not by
librdkafka's admin API: up to 2.16 at least, an admin client whose OffsetFetch is answered "not coordinator" (as
during a broker restart) dereferences the consumer group it does not have and kills the process (SIGSEGV in
rd_kafka_cgrp_op, called from rd_kafka_handle_OffsetFetch), and one that kept a broker decommissioned by the
restart as the coordinator times out forever (confluentinc/librdkafka#5511)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from modelrollout_contract.stream import CONFIG_KEY, ShareDocument, ShareDocumentError, parse_document
from modelserver.routing.sources import ConfigMapSource, FileSource, Source
from modelserver.stream.clients import error_of
from modelserver.stream.cutover import Cutover, Partition, Placed, Shares, decode
from modelserver.stream.metrics import StreamMetrics
from modelserver.stream.pipeline import Processed
from modelserver.stream.shares import bucket_of

log = logging.getLogger(__name__)
# How often a consumer that does not lead reads the leader's offsets: while records wait for them, and while idle
# (so an idle partition's cutover is seen, and reported, within a second).
REFRESH_WAITING_S = 0.05
REFRESH_IDLE_S = 1.0
READ_TIMEOUT_S = 10.0
WATCH_TIMEOUT_S = 300


class DocumentFeed:
    """The newest valid share document a source gave; a refused one is logged and the last good one stays."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._document: ShareDocument | None = None
        self.arrived = threading.Event()
        self._thread = threading.Thread(target=self._run, name="share-document", daemon=True)

    def start(self) -> DocumentFeed:
        self._thread.start()
        return self

    def latest(self) -> ShareDocument | None:
        with self._lock:
            return self._document

    def apply(self, text: str | bytes, *, origin: str) -> str:
        try:
            document = parse_document(text)
        except ShareDocumentError as exc:
            log.error("refused share document from %s: %s", origin, exc)
            return "invalid"
        with self._lock:
            if document == self._document:
                return "unchanged"
            self._document = document
        log.info("share document epoch %d from %s: leader %s, follower %s at %d%%%s", document.epoch, origin,
                 document.leader.revision, document.follower.revision if document.follower else None,
                 document.percent, " (final)" if document.final else "")  # fmt: skip
        self.arrived.set()
        return "applied"

    def missing(self, reason: str, *, origin: str) -> None:
        log.warning("no share document from %s: %s%s", origin, reason,
                    "; keeping the last one" if self.latest() is not None else "")  # fmt: skip

    def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(self._source.run(self))


def source_of(configmap: str | None, path: Path | None, *, kubeconfig: Path | None) -> Source:
    if configmap is not None:
        namespace, name = configmap.split("/", 1)
        return ConfigMapSource(namespace, name, kubeconfig=kubeconfig, watch_timeout_s=WATCH_TIMEOUT_S,
                               key=CONFIG_KEY)  # fmt: skip
    if path is None:
        raise ValueError("a share document needs a ConfigMap or a file")
    return FileSource(path, interval_s=0.2)


@dataclass
class Selection:
    """Of a consumed batch: the records decided (the others are sought back and read again), per decided record
    whether this revision scores it, and the cutovers the batch chose (forgotten if it does not commit)."""

    records: list[Message]
    mine: list[bool]
    chosen: dict[Partition, Cutover]


class Coordination:
    """Keeps `shares` fed (the document, this group's cutovers of newly assigned partitions, the leader's
    committed offsets) and applies its decisions to the consumer. `reader` makes a consumer of a group (the
    leader's) that only reads its committed offsets; it is made again when the leader group changes, and when a
    read timed out (a new client finds the group's coordinator afresh)."""

    def __init__(self, shares: Shares, feed: DocumentFeed, reader: Callable[[str], Consumer]) -> None:
        self.shares = shares
        self.feed = feed
        self._new_reader = reader
        self._reader: tuple[str, Consumer] | None = None
        self.waiting = False
        self._restored: set[Partition] = set()
        self._committed: dict[Partition, int] = {}
        self._sent: dict[Partition, str] = {}  # the metadata last committed per partition
        self.epochs: dict[Partition, int] = {}  # the epoch governing each committed offset
        self._read_at = 0.0

    def select(self, consumer: Consumer, batch: Sequence[Message], owned: Sequence[Partition]) -> Selection:
        self.document_changed()
        try:
            self.restore(consumer, owned)
        except KafkaException as exc:
            log.warning("cannot read this group's committed cutovers (%s): the batch is read again", exc)
            _seek(consumer, dict(_firsts(batch)))
            self.waiting = True
            return Selection([], [], {})
        self.refresh(owned, waiting=self.waiting)
        placed = [Placed((m.topic() or "", m.partition() or 0), m.offset() or 0, bucket_of(m)) for m in batch]
        decision = self.shares.decide(placed)
        _seek(consumer, decision.seek)
        self.waiting = decision.waiting is not None
        if self.waiting:
            log.debug("records wait: %s", decision.waiting)
        kept = [(m, ours) for m, ours, decided in zip(batch, decision.mine, decision.decided, strict=True) if decided]
        return Selection([m for m, _ in kept], [ours for _, ours in kept], decision.chosen)

    def idle_commit(
        self, consumer: Consumer, owned: Sequence[Partition]
    ) -> tuple[Processed, dict[Partition, Cutover]] | None:
        """Offsets and cutovers to commit for partitions with no record to process (an empty batch): a leader's
        cutovers of the document's epoch, and cutovers any consumer learned but has not committed (so that after
        a restart or a rebalance its group still knows them: a promoted follower needs its final one)."""
        if self.shares.document is None or not owned:
            return None
        positions = self.positions(consumer, owned)
        chosen = self.shares.pending_cuts(positions)
        unsent = {where for where in positions if self.shares.metadata(where) != self._sent.get(where)}
        if not chosen and not unsent:
            return None
        at = {where: chosen[where].offset if where in chosen else positions[where] for where in {*chosen, *unsent}}
        return Processed(next_offsets=at, first_offsets=dict(at), metadata=self.metadata(at)), chosen

    def committed(self, processed: Processed) -> None:
        """A batch's offsets and cutovers are committed: what the group knows now, and the epochs it reached."""
        for where, offset in processed.next_offsets.items():
            if where in processed.metadata:
                self._sent[where] = processed.metadata[where]
            self._remember(where, offset)

    def _remember(self, where: Partition, offset: int) -> None:
        self._committed[where] = offset
        epoch = self.shares.epoch_at(where, offset)
        if epoch is not None:
            self.epochs[where] = epoch

    def metadata(self, partitions: Iterable[Partition]) -> dict[Partition, str]:
        return {where: self.shares.metadata(where) for where in partitions}

    def positions(self, consumer: Consumer, owned: Sequence[Partition]) -> dict[Partition, int]:
        """Where this consumer stands in each owned partition: its position once it has fetched, else the
        committed offset it resumes from, else the start of a partition that is empty."""
        found: dict[Partition, int] = {}
        for tp in consumer.position([TopicPartition(t, p) for t, p in owned]):
            where = (tp.topic, tp.partition)
            if tp.offset >= 0:
                found[where] = tp.offset
            elif where in self._committed:
                found[where] = self._committed[where]
            else:
                marks = consumer.get_watermark_offsets(TopicPartition(*where), cached=True)
                if marks is not None and marks[0] == marks[1] >= 0:
                    found[where] = marks[0]
        return found

    def report(self, owned: Sequence[Partition], metrics: StreamMetrics) -> None:
        """The epoch each owned partition's committed offset reached (what the operator waits for before it hands
        over: the cutovers are committed, not only known), and whether records wait."""
        for topic, partition in owned:
            if (topic, partition) in self.epochs:
                metrics.epoch(topic, partition, self.epochs[(topic, partition)])
        metrics.waiting(self.waiting)

    def document_changed(self) -> bool:
        document = self.feed.latest()
        return document is not None and self.shares.use(document)

    def restore(self, consumer: Consumer, owned: Sequence[Partition]) -> None:
        """This group's committed cutovers of partitions assigned since the last call (another member, or this
        one before a restart, chose or learned them)."""
        new = [p for p in owned if p not in self._restored]
        self._restored.intersection_update(owned)
        if not new:
            return
        committed = consumer.committed([TopicPartition(t, p) for t, p in new], timeout=READ_TIMEOUT_S)
        for tp in committed:
            if tp.error is not None:
                raise KafkaException(tp.error)
            where = (tp.topic, tp.partition)
            self.shares.history(where).merge(decode(tp.metadata))
            if tp.metadata:
                self._sent[where] = tp.metadata
            if tp.offset >= 0:
                self._remember(where, tp.offset)
        self._restored.update(new)

    def refresh(self, owned: Sequence[Partition], *, waiting: bool) -> None:
        """Read the leader group's committed offsets and cutovers of `owned`, at most every REFRESH_*_S."""
        document = self.shares.document
        if document is None or self.shares.leads or not owned:
            return
        now = time.monotonic()
        if now - self._read_at < (REFRESH_WAITING_S if waiting else REFRESH_IDLE_S):
            return
        self._read_at = now
        reader = self.reader(document.leader.group)
        try:
            committed = reader.committed([TopicPartition(t, p) for t, p in owned], timeout=READ_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("cannot read the leader group %s's offsets: %s", document.leader.group, exc)
            if _timed_out(exc):
                log.info("replacing the reader of group %s after a timed-out read", document.leader.group)
                self.close(wait=False)
            return
        for tp in committed:
            if tp.error is None:
                self.shares.learn_leader((tp.topic, tp.partition), tp.offset, tp.metadata)

    def reader(self, group: str) -> Consumer:
        if self._reader is not None and self._reader[0] != group:
            self.close()
        if self._reader is None:
            self._reader = (group, self._new_reader(group))
        return self._reader[1]

    def close(self, *, wait: bool = True) -> None:
        """Close the leader group's reader (it never joined the group, so nothing is left behind); without `wait`
        on a thread of its own, for a client that may be stuck (the consumer's loop must not wait on it)."""
        if self._reader is not None:
            _, reader = self._reader
            self._reader = None
            if wait:
                reader.close()
            else:
                threading.Thread(target=reader.close, name="close-leader-reader", daemon=True).start()


def _timed_out(exc: KafkaException) -> bool:
    error = error_of(exc)
    return error is not None and error.code() == KafkaError._TIMED_OUT


def _firsts(batch: Sequence[Message]) -> list[tuple[Partition, int]]:
    """(partition, offset) of every record, last first: a dict of them keeps each partition's first offset."""
    return [((m.topic() or "", m.partition() or 0), m.offset() or 0) for m in batch][::-1]


def _seek(consumer: Consumer, offsets: dict[Partition, int]) -> None:
    for (topic, partition), offset in offsets.items():
        consumer.seek(TopicPartition(topic, partition, offset))
