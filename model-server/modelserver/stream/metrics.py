"""Every Prometheus series a stream consumer exports (names in modelrollout_contract.metrics), and the HTTP
endpoints it serves on metrics_port: /metrics, and /ready (200 once the group has given this consumer its first
assignment, even an empty one, and until it stops; 503 before and after). Every series has `model`, `version`
and `revision` (empty without a share document).

- modelserver_stream_records_total{result}: records of committed batches: scored | dead_lettered | skipped (out
  of this consumer's key share) | dropped (invalid, no dead-letter topic: at-least-once only).
- modelserver_stream_consumer_lag{topic,partition}: per assigned partition, the high watermark minus this
  consumer's position, after each batch (and every second while idle); a revoked partition's series goes.
- modelserver_stream_end_to_end_seconds: per record of this consumer's share, its Kafka timestamp to the commit
  of its batch (the transaction's under exactly-once): what a reader of the output waits.
- modelserver_stream_batch_records: records per consumed micro-batch (all of them, before the key share).
- modelserver_stream_rebalances_total{kind}: assignment changes: assigned | revoked | lost.
- modelserver_stream_transactions_total{result}: committed | aborted (exactly-once only).
- modelserver_stream_cutover_epoch{topic,partition}: in a rollout (a share document), per assigned partition, the
  epoch of the cutover governing this consumer's position: every record before that cutover is processed.
- modelserver_stream_partitions{topic}: the input topic's partitions (the operator's "every partition" count).
- modelserver_stream_waiting: 1 while records wait for the leader's cutovers, else 0.
- shadowing only (modelserver.stream.shadow): modelserver_stream_shadow_comparisons_total{result} agree | disagree
  | error per compared record, modelserver_stream_shadow_abs_diff (histogram of |stable - shadow| of the score),
  modelserver_stream_shadow_unmatched_total{side} answers that never met their pair.

One process, one consumer: a plain registry of its own (tests make many).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

from modelrollout_contract import metrics as names
from modelrollout_contract.metrics import ABS_DIFF_BUCKETS, STREAM_LATENCY_BUCKETS

# `*_created` series double the exposition and no query of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

BATCH_RECORDS_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000, 100_000)
log = logging.getLogger(__name__)


class StreamMetrics:
    def __init__(
        self,
        *,
        model: str,
        version: str,
        revision: str = "",
        registry: CollectorRegistry | None = None,
        shadow: bool = False,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.model, self.version, self.revision = model, version, revision
        self._labels = (model, version, revision)
        labels = ["model", "version", "revision"]
        self._records = Counter(names.STREAM_RECORDS, "Records of committed batches by result",
                                [*labels, "result"], registry=self.registry)  # fmt: skip
        self._lag = Gauge(names.STREAM_CONSUMER_LAG, "High watermark minus this consumer's position",
                          [*labels, "topic", "partition"], registry=self.registry)  # fmt: skip
        self._end_to_end = Histogram(
            names.STREAM_END_TO_END, "Record timestamp to its batch's commit", labels,
            buckets=STREAM_LATENCY_BUCKETS, registry=self.registry,
        ).labels(*self._labels)  # fmt: skip
        self._batch = Histogram(
            names.STREAM_BATCH_RECORDS, "Records per consumed micro-batch", labels,
            buckets=BATCH_RECORDS_BUCKETS, registry=self.registry,
        ).labels(*self._labels)  # fmt: skip
        self._rebalances = Counter(names.STREAM_REBALANCES, "Assignment changes by kind", [*labels, "kind"],
                                   registry=self.registry)  # fmt: skip
        self._transactions = Counter(names.STREAM_TRANSACTIONS, "Transactions by result", [*labels, "result"],
                                     registry=self.registry)  # fmt: skip
        self._epoch = Gauge(names.STREAM_CUTOVER_EPOCH, "Epoch of the cutover governing this consumer's position",
                            [*labels, "topic", "partition"], registry=self.registry)  # fmt: skip
        self._partitions = Gauge(names.STREAM_PARTITIONS, "The input topic's partitions", [*labels, "topic"],
                                 registry=self.registry)  # fmt: skip
        self._waiting = Gauge(names.STREAM_WAITING, "1 while records wait for the leader's cutovers", labels,
                              registry=self.registry).labels(*self._labels)  # fmt: skip
        for result in (names.SCORED, names.DEAD_LETTERED, names.SKIPPED, names.DROPPED):
            self._records.labels(*self._labels, result)  # every result at 0 from the start: rate() sees the 1st
        for result in (names.COMMITTED, names.ABORTED):
            self._transactions.labels(*self._labels, result)
        if shadow:
            self._comparisons = Counter(names.STREAM_SHADOW_COMPARISONS, "Shadow answers compared with stable's",
                                        [*labels, "result"], registry=self.registry)  # fmt: skip
            self._abs_diff = Histogram(
                names.STREAM_SHADOW_ABS_DIFF, "|stable - shadow| of a compared record's score", labels,
                buckets=ABS_DIFF_BUCKETS, registry=self.registry,
            ).labels(*self._labels)  # fmt: skip
            self._unmatched = Counter(names.STREAM_SHADOW_UNMATCHED, "Answers that never met their pair",
                                      [*labels, "side"], registry=self.registry)  # fmt: skip
            for result in (names.AGREE, names.DISAGREE, names.ERROR):
                self._comparisons.labels(*self._labels, result)
            for side in (names.SHADOW_SIDE, names.STABLE_SIDE):
                self._unmatched.labels(*self._labels, side)

    def committed(self, counts: Mapping[str, int], timestamps: Iterable[float], *, at: float) -> None:
        """A batch committed at `at` (seconds since the epoch): its records by result, their end-to-end times."""
        for result, count in counts.items():
            if count:
                self._records.labels(*self._labels, result).inc(count)
        for stamp in timestamps:
            self._end_to_end.observe(max(0.0, at - stamp))

    def consumed(self, records: int) -> None:
        self._batch.observe(records)

    def transaction(self, result: str) -> None:
        self._transactions.labels(*self._labels, result).inc()

    def rebalanced(self, kind: str, partitions: list[tuple[str, int]]) -> None:
        self._rebalances.labels(*self._labels, kind).inc()
        if kind != names.ASSIGNED:
            for topic, partition in partitions:
                for gauge in (self._lag, self._epoch):
                    with contextlib.suppress(KeyError):  # never measured
                        gauge.remove(*self._labels, topic, str(partition))

    def lag(self, topic: str, partition: int, behind: int) -> None:
        self._lag.labels(*self._labels, topic, str(partition)).set(behind)

    def epoch(self, topic: str, partition: int, epoch: int) -> None:
        self._epoch.labels(*self._labels, topic, str(partition)).set(epoch)

    def partitions(self, topic: str, count: int) -> None:
        self._partitions.labels(*self._labels, topic).set(count)

    def waiting(self, waiting: bool) -> None:
        self._waiting.set(1 if waiting else 0)

    def compared(self, result: str, abs_diff: float | None) -> None:
        self._comparisons.labels(*self._labels, result).inc()
        if abs_diff is not None:
            self._abs_diff.observe(abs_diff)

    def unmatched(self, side: str, count: int) -> None:
        self._unmatched.labels(*self._labels, side).inc(count)


class Endpoints:
    """/metrics and /ready on a thread of their own (the consumer's loop never waits for a scrape)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
        registry_, ready_ = registry, ready

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, generate_latest(registry_), CONTENT_TYPE_LATEST)
                elif path == "/ready":
                    ok = ready_()
                    self._answer(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
                else:
                    self._answer(404, b"not found\n", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes and scrapes every few seconds: no access log

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> Endpoints:
        self._thread.start()
        log.info("serving /metrics and /ready on port %d", self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
