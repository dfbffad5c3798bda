"""A stream consumer, start to end: serve /metrics and /ready, load the model, make the producer ready (exactly-
once: init_transactions fences the previous process with the same transactional.id), subscribe, then loop: take
a micro-batch (the records ready, up to max_batch; when none is, the first to come within max_wait_ms and those
with it), process it (modelserver.stream.pipeline), commit it (modelserver.stream.delivery), measure the lag.

The loop commits a batch before it consumes again, and the rebalance callbacks run only inside consume(): a
partition is never revoked in the middle of a batch's transaction.

SIGTERM or SIGINT: the batch in hand is finished and committed, then the consumer closes and the process exits 0.
With static membership (group.instance.id) a closing consumer does not leave the group: its partitions stay its
own, unread, until a consumer with the same instance id joins (the same pod restarting gets them back without a
rebalance) or session_timeout_ms passes (then the group gives them to the other members).

Exit codes: 0 stopped by a signal; 1 a fatal Kafka error (fenced by a newer process, a batch that failed to
commit MAX_ATTEMPTS times in a row), or anything unexpected; 3 the consumer could not start (the model did not
load, or the settings do not fit it); 75 (modelrollout_contract.stream.TRANSIENT_EXIT) a transactional call hung
(modelserver.stream.delivery.Hung: librdkafka after a broker restart), which a restart fixes and which says
nothing about the model. Kubernetes restarts the container on each of them."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from modelrollout_contract.stream import TRANSIENT_EXIT
from modelserver import storage
from modelserver.errors import ModelLoadError
from modelserver.runtimes import load_model, resolve_format
from modelserver.runtimes.base import LoadOptions, Model
from modelserver.settings import ModelSettings
from modelserver.stream.clients import consumer_config, leader_reader_config, producer_config, reader_config
from modelserver.stream.comparing import Comparer
from modelserver.stream.coordination import Coordination, DocumentFeed, source_of
from modelserver.stream.cutover import Cutover, Partition, Shares
from modelserver.stream.delivery import AtLeastOnce, Committer, ExactlyOnce, Fatal, Hung
from modelserver.stream.metrics import Endpoints, StreamMetrics
from modelserver.stream.outgoing import Envelopes
from modelserver.stream.pipeline import Pipeline, Processed
from modelserver.stream.rebalance import Assignment
from modelserver.stream.records import Decoder
from modelserver.stream.scoring import Scorer
from modelserver.stream.settings import StreamSettings

log = logging.getLogger(__name__)
KAFKA_LOG = logging.getLogger("modelserver.stream.kafka")

EXIT_STOPPED, EXIT_FATAL, EXIT_START = 0, 1, 3
MAX_ATTEMPTS = 10  # a batch that fails to commit this many times in a row: exit, and let a restart try
LAG_EVERY_S = 1.0  # how often the lag is measured while no record comes
WAITING_PAUSE_S = 0.02
CLOSE_TIMEOUT_S = 10.0


class Stop:
    """Set by SIGTERM or SIGINT; the loop checks it between batches."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> Stop:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _: FrameType | None) -> None:
        if not self.requested:
            log.info("%s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
        self.requested = True


class Errors:
    """librdkafka's error_cb: errors outside any call (brokers down, a fenced instance...). A fatal one stops the
    loop; the others are logged (the clients reconnect by themselves)."""

    def __init__(self) -> None:
        self.fatal: str | None = None

    def callback(self, client: str) -> Callable[[KafkaError], None]:
        def report(error: KafkaError) -> None:
            if error.fatal():
                self.fatal = f"{client}: {error}"
                log.error("fatal %s error: %s", client, error)
            else:
                log.warning("%s: %s", client, error)

        return report

    def check(self) -> None:
        if self.fatal is not None:
            raise Fatal(self.fatal)


def load(settings: ModelSettings) -> Model:
    path, model_format = resolve_format(storage.fetch_for(settings), settings.model_format)
    names = None if settings.feature_names is None else tuple(settings.feature_names)
    return load_model(path, model_format, LoadOptions(feature_names=names, model_class=settings.model_class))


def pipeline_for(settings: StreamSettings, model: Model) -> Pipeline:
    scorer = Scorer(model, name=settings.model_name, version=settings.model_version, threshold=settings.threshold)
    envelopes = Envelopes(output_topic=settings.output_topic, dead_letter_topic=settings.dead_letter_topic,
                          model=settings.model_name, version=settings.model_version)  # fmt: skip
    signature = model.signature
    decoder = Decoder(signature.feature_names, signature.dtype, settings.passthrough_fields)
    limit = settings.max_message_bytes
    return Pipeline(scorer, envelopes, decoder, share=settings.key_share(), max_message_bytes=limit)


def main(settings: StreamSettings) -> int:
    """Run until a signal (0) or a fatal error; the exit code."""
    stop = Stop().install()
    metrics = StreamMetrics(model=settings.model_name, version=settings.model_version, revision=settings.revision or "",
                            shadow=settings.compare_topic is not None)  # fmt: skip
    assignment = Assignment(on_change=metrics.rebalanced)
    feed = _share_feed(settings)

    def ready() -> bool:
        return assignment.joined.is_set() and not stop.requested and (feed is None or feed.latest() is not None)

    endpoints = Endpoints(settings.metrics_host, settings.metrics_port, metrics.registry, ready=ready).start()
    try:
        try:
            pipeline = pipeline_for(settings, load(settings))
        except (ModelLoadError, ValueError, OSError) as exc:
            log.error("cannot start: %s", exc)
            return EXIT_START
        settle_heap()
        return _consume(settings, pipeline, metrics, assignment, stop, feed)
    finally:
        endpoints.stop()


def settle_heap() -> None:
    """Everything allocated so far (the libraries, the model: about 150,000 objects with scikit-learn) lives until
    exit. Freezing it keeps the cyclic GC's full collections from rescanning it: unfrozen, each one paused the
    loop for 80-150 ms every few seconds (measured under load), the largest part of the end-to-end p99."""
    gc.collect()
    gc.freeze()


def _share_feed(settings: StreamSettings) -> DocumentFeed | None:
    """A rollout's share document, read from the start (so the first batch can be decided)."""
    if settings.share_configmap is None and settings.share_file is None:
        return None
    source = source_of(settings.share_configmap, settings.share_file, kubeconfig=settings.kubeconfig)
    return DocumentFeed(source).start()


def _consume(  # noqa: PLR0917 - one caller, and each is a different kind
    settings: StreamSettings,
    pipeline: Pipeline,
    metrics: StreamMetrics,
    assignment: Assignment,
    stop: Stop,
    feed: DocumentFeed | None,
) -> int:
    errors = Errors()
    # librdkafka's own log lines go through our logging (one format, JSON or text), not straight to stderr.
    consumer = Consumer({**consumer_config(settings), "error_cb": errors.callback("consumer"), "logger": KAFKA_LOG})
    producer = Producer({**producer_config(settings), "error_cb": errors.callback("producer"), "logger": KAFKA_LOG})
    timeout_s = settings.transaction_timeout_ms / 1000
    committer: Committer = (
        ExactlyOnce(producer, consumer, assignment, metrics, timeout_s=timeout_s)
        if settings.delivery == "exactly-once"
        else AtLeastOnce(producer, consumer, assignment, timeout_s=timeout_s)
    )
    coordination = None
    if feed is not None and settings.revision is not None:

        def leader_reader(group: str) -> Consumer:
            return Consumer({**leader_reader_config(settings, group), "error_cb": errors.callback("leader reader"),
                             "logger": KAFKA_LOG})  # fmt: skip

        coordination = Coordination(Shares(settings.revision), feed, leader_reader)
    code = EXIT_STOPPED
    comparer = None
    try:
        committer.start()
        _count_partitions(consumer, settings.input_topic, metrics)
        if settings.compare_topic is not None:
            comparer = Comparer({**reader_config(settings), "error_cb": errors.callback("reader"), "logger": KAFKA_LOG},
                                topic=settings.compare_topic, input_topic=settings.input_topic,
                                share=settings.key_share(), metrics=metrics).start()  # fmt: skip
        consumer.subscribe([settings.input_topic], on_assign=assignment.on_assign, on_revoke=assignment.on_revoke,
                           on_lost=assignment.on_lost)  # fmt: skip
        log.info("consuming %s as %s of group %s (%s)", settings.input_topic, settings.instance_id,
                 settings.consumer_group, settings.delivery)  # fmt: skip
        loop(settings, consumer=consumer, producer=producer, committer=committer, pipeline=pipeline,
             metrics=metrics, assignment=assignment, stop=stop, errors=errors, coordination=coordination,
             comparer=comparer)  # fmt: skip
        log.info("stopped; every batch consumed is committed")
    except Hung as exc:
        log.error("exiting at once, without closing the clients: %s", exc)
        logging.shutdown()
        os._exit(TRANSIENT_EXIT)
    except Fatal as exc:
        log.error("stopping on a fatal error: %s", exc)
        code = EXIT_FATAL
    except Exception:
        log.exception("stopping on an unexpected error")
        code = EXIT_FATAL
    finally:
        if comparer is not None:
            comparer.stop()
        if coordination is not None:
            coordination.close()
        _close(consumer, producer, failed=code != EXIT_STOPPED)
    return code


def loop(
    settings: StreamSettings,
    *,
    consumer: Consumer,
    producer: Producer,
    committer: Committer,
    pipeline: Pipeline,
    metrics: StreamMetrics,
    assignment: Assignment,
    stop: Stop,
    errors: Errors,
    coordination: Coordination | None = None,
    comparer: Comparer | None = None,
) -> None:
    failures = 0
    measured = 0.0
    wait_s = settings.max_wait_ms / 1000
    while not stop.requested:
        errors.check()
        messages = take(consumer, settings.max_batch, wait_s)
        producer.poll(0)  # the producer's error_cb and delivery reports outside a flush
        batch, processed, chosen = process(consumer, usable(messages, assignment), assignment, pipeline, coordination)
        if batch:
            metrics.consumed(len(batch))
        if processed is not None:
            if committer.commit(processed):
                metrics.committed(processed.counts, processed.timestamps, at=time.time())
                if coordination is not None:
                    coordination.committed(processed)
                if comparer is not None:
                    comparer.shadowed(processed.outgoing)
                failures = 0
            else:
                if coordination is not None:
                    coordination.shares.forget(chosen)
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    raise Fatal(f"a batch failed to commit {failures} times in a row")
                time.sleep(min(0.1 * 2**failures, 5.0))
        elif coordination is not None and coordination.waiting:
            time.sleep(WAITING_PAUSE_S)  # records wait for the leader to commit further: do not spin on them
        now = time.monotonic()
        if batch or now - measured >= LAG_EVERY_S:
            measure_lag(consumer, assignment, metrics)
            if coordination is not None:
                coordination.report(sorted(assignment.partitions), metrics)
            measured = now


def take(consumer: Consumer, max_batch: int, wait_s: float) -> list[Message]:
    """The next micro-batch: the records ready now, up to max_batch, without waiting for the batch to fill. When
    none is ready, the first to arrive within `wait_s` and whatever came with it. Records that arrived while the
    previous batch was processed and committed have waited for that already; under load that wait alone makes
    batches of hundreds. consume(max_batch, wait_s) held every batch that does not fill for the whole wait on top
    of that (at half load: most batches, and 10-20 ms of every record's end-to-end time)."""
    ready: list[Message] = consumer.consume(num_messages=max_batch, timeout=0)
    if ready or wait_s <= 0:
        return ready
    first: list[Message] = consumer.consume(num_messages=1, timeout=wait_s)
    if not first or max_batch == 1:
        return first
    rest: list[Message] = consumer.consume(num_messages=max_batch - 1, timeout=0)
    return [*first, *rest]


def process(
    consumer: Consumer,
    batch: list[Message],
    assignment: Assignment,
    pipeline: Pipeline,
    coordination: Coordination | None,
) -> tuple[list[Message], Processed | None, dict[Partition, Cutover]]:
    """The records taken from a batch, what to commit (None: nothing), and the cutovers it chose. In a rollout
    the records are those whose share is decided, and an idle leader commits the cutovers of idle partitions."""
    if coordination is None:
        return batch, (pipeline(batch) if batch else None), {}
    owned = sorted(assignment.partitions)
    processed: Processed | None = None
    chosen: dict[Partition, Cutover] = {}
    if batch:
        selection = coordination.select(consumer, batch, owned)
        batch, chosen = selection.records, selection.chosen
        processed = pipeline(batch, selection.mine) if batch else None
    else:
        idle = coordination.idle_commit(consumer, owned)
        if idle is not None:
            processed, chosen = idle
    if processed is not None:
        processed.metadata = coordination.metadata(processed.next_offsets)
    return batch, processed, chosen


def usable(messages: Sequence[Message], assignment: Assignment) -> list[Message]:
    """The records of a consume() call this consumer still owns; a fatal error in it raises Fatal, others are
    logged (a partition's fetch error: librdkafka retries it)."""
    kept: list[Message] = []
    revoked = 0
    for message in messages:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise Fatal(f"consume: {error}")
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consume: %s", error)
        elif assignment.owns(message.topic(), message.partition()):
            kept.append(message)
        else:
            revoked += 1
    if revoked:
        log.info("dropped %d records of partitions revoked while they were fetched (their new owner reads them)",
                 revoked)  # fmt: skip
    return kept


def measure_lag(consumer: Consumer, assignment: Assignment, metrics: StreamMetrics) -> None:
    """High watermark (cached from the last fetch: no request to the broker) minus the position, per partition
    owned; a partition not fetched from yet has neither, and no lag series yet."""
    partitions = assignment.topic_partitions()
    if not partitions:
        return
    try:
        for tp in consumer.position(partitions):
            if tp.offset < 0:
                continue
            marks = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
            if marks is None or marks[1] < 0:
                continue
            metrics.lag(tp.topic, tp.partition, max(0, marks[1] - tp.offset))
    except KafkaException as exc:  # a metric is never a reason to stop consuming
        log.debug("cannot measure the lag: %s", exc)


def _count_partitions(consumer: Consumer, topic: str, metrics: StreamMetrics) -> None:
    """The input topic's partition count, for the operator's "every partition" (a topic that grows later is
    counted by the next start: adding partitions to a keyed topic moves keys, a change made with a restart)."""
    try:
        found = consumer.list_topics(topic, timeout=CLOSE_TIMEOUT_S).topics.get(topic)
    except KafkaException as exc:
        log.warning("cannot count the partitions of %s: %s", topic, exc)
        return
    if found is not None and found.error is None:
        metrics.partitions(topic, len(found.partitions))


def _close(consumer: Consumer, producer: Producer, *, failed: bool) -> None:
    """Close the consumer (its last batch is committed: nothing to commit here) and let the producer go; after a
    fatal error, whatever it still holds is purged (an open transaction is aborted by the coordinator, or by the
    next process's init_transactions)."""
    with contextlib.suppress(Exception):
        if failed:
            producer.purge()
        producer.flush(CLOSE_TIMEOUT_S)
    with contextlib.suppress(Exception):
        consumer.close()
