"""Stream scoring benchmark: `modelserver stream` (exactly-once and at-least-once) against the obvious loop a user
writes, MLServer's own Kafka mode and the raw vectorized predict, on the same model, records and broker, in one run
(`make bench-stream`).

Set-up: one Kafka broker (testkit/kafka.py, on ZGC: BROKER_JVM) for the whole run, pinned to CPU 0 with this driver
(producers, readers); every consumer under test is one process pinned to CPU 1 (`taskset -c 1`: all of its threads,
librdkafka's included). While latency is measured, this driver moves to CPU 1 (beside the consumer, at a lower
priority), so the broker has CPU 0 to itself; one more half-load phase keeps the driver beside the broker, to show
what that layout costs. Each variant gets fresh topics of PARTITIONS partitions (input, output, dead letters).
Records: JSON objects of 20 float features (`{"f0": ..., "f19": ...}`), keys `user-<i % 10000>`; the model: a
scikit-learn LogisticRegression on 20 features, saved with joblib.

- Saturation: the input topic is filled with N records first, then the consumer starts. A read_committed reader
  counts the outputs; messages/s = the outputs after the first received / the time from the first received to the
  N-th (start-up, model load and group join are excluded: the clock starts at the first visible output). An output
  is visible to this reader only once committed (exactly-once: its transaction), so this is committed throughput.
- Latency at half saturation: the same process, caught up, then fed at a fixed rate for `--latency-seconds` by a
  paced producer (librdkafka's default linger.ms, PACER_LINGER_MS; its record timestamps are the send times);
  end-to-end = the read_committed reader's receive time of the output minus its input record's timestamp, joined by
  the output's source-partition / source-offset headers (MLServer: by a unique key). The first `--warmup-seconds` of
  records are left out. For modelserver the consumer's own modelserver_stream_end_to_end_seconds histogram is read
  too, as a cross-check.
- Raw predict: predict_proba on the N records' matrix in one call, in a process pinned to CPU 1; and the same with
  the records' JSON decoding (orjson) included.
- Broker round trips, first: the median synchronous offset commit and back-to-back transaction, which bound the
  loop and exactly-once. And one what-if row, labelled as such: exactly-once with one producer setting changed
  (bench/stream/whatif.py), to show how much of the gap that setting is.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import joblib
import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from testkit.kafka import KafkaBroker
from testkit.ports import free_port
from testkit.processes import read_log, wait_until_answers

from modelrollout_contract.metrics import STREAM_BATCH_RECORDS, STREAM_END_TO_END, STREAM_TRANSACTIONS
from modelserver.stream.clients import RETRY_BACKOFF_MS

HERE = Path(__file__).resolve().parent
N_FEATURES = 20
NAMES = [f"f{i}" for i in range(N_FEATURES)]
PARTITIONS = 4
KEYS = 10_000
BROKER_CPU, CONSUMER_CPU = "0", "1"
# On one CPU the JVM picks the Serial collector, whose young collections stopped this broker for 20-85 ms about once
# a second (-Xlog:gc, 2026-12-05): each stop a step in the latency of every record in flight. ZGC's pauses stay under
# a millisecond; its marking runs beside the broker's threads.
BROKER_JVM = ("-Xms1g", "-Xmx1g", "-XX:+UseZGC")
# librdkafka's default linger.ms (and the Java producer's since Kafka 4.0): an upstream producer as users run it. It
# is inside every measured latency; 1 ms sent five times the produce requests, each one the broker's work.
PACER_LINGER_MS = 5
PRIORITY = ["nice", "-n", "-10"] if os.geteuid() == 0 else []
TRANSACTIONS = 50  # per round-trip probe
STALL_S = 60.0  # no new output for this long: the variant failed
QUIET_S = 20.0  # MLServer's backlog run: no new output for this long, the rest is taken as never answered
TIMEOUT_LINE = "ERROR 500 - KafkaTimeoutError"
# Children write bytecode as a built image would have it (this machine may set PYTHONDONTWRITEBYTECODE).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

JoinKey = Hashable
Join = Callable[[Message], JoinKey]
Headers = list[tuple[str, str | bytes | None]]
Record = Callable[[int], tuple[bytes, bytes, Headers]]


# ---- data and model -----------------------------------------------------------------------------------------


def train(workdir: Path) -> Path:
    x, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=8, random_state=0)
    path = workdir / "logreg.joblib"
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), path)
    return path


def rows(n: int, seed: int = 1) -> np.ndarray:
    x, _ = make_classification(n_samples=n, n_features=N_FEATURES, n_informative=8, random_state=seed)
    return np.asarray(x, dtype=np.float64)


def json_records(matrix: np.ndarray) -> list[bytes]:
    """One JSON object of named features per row (the form `modelserver stream` and the loop read)."""
    return [orjson.dumps(dict(zip(NAMES, row, strict=True))) for row in matrix.tolist()]


def v2_requests(matrix: np.ndarray) -> list[bytes]:
    """One Open Inference Protocol v2 request per row (the form MLServer's Kafka mode reads), asking for the
    probabilities, as modelserver's outputs carry them."""
    return [
        orjson.dumps(
            {
                "inputs": [{"name": "input-0", "shape": [1, N_FEATURES], "datatype": "FP64", "data": row}],
                "outputs": [{"name": "predict_proba"}],
            }
        )
        for row in matrix.tolist()
    ]


# ---- machine ------------------------------------------------------------------------------------------------


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies from /proc/stat."""
    found = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values]
            idle = ticks[3] + ticks[4]
            found[name[3:]] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
    return found


def busy_share(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    return {cpu: (after[cpu][0] - before[cpu][0]) / max(1, after[cpu][1] - before[cpu][1]) for cpu in sorted(after)}


def machine() -> dict[str, str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if "model name" in line),
        platform.processor(),
    )  # fmt: skip
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
        "java": java[0] if java else "?",
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


# ---- Kafka clients --------------------------------------------------------------------------------------------


def fill(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes], headers: Headers) -> None:
    """Produce every (key, value) as fast as the producer goes; raise unless all were acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10_000,
                         "queue.buffering.max.messages": 1_000_000, "enable.idempotence": True})  # fmt: skip
    failed: list[str] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failed.append(str(error))

    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                producer.produce(topic, value, key, headers=headers or None, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) != 0 or failed:
        raise RuntimeError(f"filling {topic}: {producer.flush(0)} undelivered, errors {failed[:3]}")


class Reader:
    """A read_committed reader of a topic from its beginning: what a downstream consumer of the outputs sees."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        })  # fmt: skip
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        self.count = 0

    def take(self, timeout: float = 0.05) -> list[Message]:
        found = [m for m in self.consumer.consume(10_000, timeout) if m.error() is None]
        self.count += len(found)
        return found

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Saturation:
    records: int
    seconds: float
    first_batch: int
    busy: dict[str, float]
    extra: int = 0  # outputs read beyond the N expected (duplicates)

    @property
    def rate(self) -> float:
        return (self.records - self.first_batch) / self.seconds


def saturate(reader: Reader, expected: int, alive: Callable[[], bool], name: str) -> Saturation:
    """Read outputs until `expected` are visible; the rate from the first visible output to the last."""
    first: tuple[float, int] | None = None
    busy_before = cpu_times()
    progress = time.monotonic()
    last = 0.0
    while reader.count < expected:
        taken = reader.take()
        now = time.perf_counter()
        if taken:
            progress = time.monotonic()
            last = now
            if first is None:
                first = (now, reader.count)
                busy_before = cpu_times()
        elif time.monotonic() - progress > STALL_S or not alive():
            raise RuntimeError(f"{name}: {reader.count} of {expected} outputs, then none for {STALL_S:.0f}s "
                               f"(consumer {'running' if alive() else 'exited'})")  # fmt: skip
    assert first is not None
    busy = busy_share(busy_before, cpu_times())
    return Saturation(expected, last - first[0], first[1], busy, extra=reader.count - expected)


@dataclass
class Latency:
    offered: float  # records/s asked of the paced producer
    achieved: float  # records/s it produced
    measured: int  # records whose end-to-end time counts (after the warm-up)
    missing: int  # of those, outputs never seen
    p50_ms: float
    p99_ms: float
    max_ms: float
    histogram: str = ""  # the consumer's own view (modelserver only)
    busy: dict[str, float] = field(default_factory=dict)  # per CPU, over the measured window (after the warm-up)


class Collector:
    """Reads outputs on a thread of its own: each one's join key -> the time it was first received."""

    def __init__(self, reader: Reader, join: Join) -> None:
        self.reader, self.join = reader, join
        self._seen: dict[JoinKey, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            # The receive time is when the first output is handed over (poll returns as soon as one is there), then
            # whatever else is already queued is drained without waiting. consume(n, timeout) would wait out its
            # timeout for n outputs and stamp them up to that late.
            first = self.reader.consumer.poll(0.02)
            now = time.time()
            if first is None:
                continue
            taken = [m for m in [first, *self.reader.consumer.consume(10_000, 0)] if m.error() is None]
            self.reader.count += len(taken)
            with self._lock:
                for message in taken:
                    self._seen.setdefault(self.join(message), now)

    def seen(self) -> dict[JoinKey, float]:
        with self._lock:
            return dict(self._seen)

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


class Pacer:
    """Produces records at a fixed rate; each one's join key -> its record timestamp (the send time)."""

    def __init__(self, bootstrap: str, topic: str, place: Callable[[Message], JoinKey]) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": PACER_LINGER_MS,
                                  "enable.idempotence": True})  # fmt: skip
        self.topic, self.place = topic, place
        self.sent_at: dict[JoinKey, float] = {}
        self.counted: set[JoinKey] = set()  # produced after the warm-up
        self.failed: list[str] = []

    def _delivered(self, error: KafkaError | None, message: Message, *, counts: bool) -> None:
        if error is not None:
            self.failed.append(str(error))
            return
        where = self.place(message)
        self.sent_at[where] = message.timestamp()[1] / 1000
        if counts:
            self.counted.add(where)

    def _warming(self, error: KafkaError | None, message: Message) -> None:
        self._delivered(error, message, counts=False)

    def _measuring(self, error: KafkaError | None, message: Message) -> None:
        self._delivered(error, message, counts=True)

    def run(self, rate: float, seconds: float, warmup: float, record: Record, measuring: Callable[[], None]) -> float:
        """Produce for warmup + seconds (`measuring()` is called when the warm-up ends); the rate achieved."""
        began = time.monotonic()
        sent = 0
        total = int(rate * (seconds + warmup))
        warm = True
        while sent < total:
            elapsed = time.monotonic() - began
            if warm and elapsed >= warmup:
                warm = False
                measuring()
            report = self._warming if warm else self._measuring
            while sent < min(total, int(rate * elapsed)):
                key, value, headers = record(sent)
                try:
                    self.producer.produce(self.topic, value, key, headers=headers or None, on_delivery=report)
                except BufferError:
                    self.producer.poll(0.01)
                    continue
                sent += 1
            self.producer.poll(0)
            time.sleep(0.001)
        achieved = sent / (time.monotonic() - began)
        if self.producer.flush(60) != 0 or self.failed:
            raise RuntimeError(f"paced producer: undelivered or failed: {self.failed[:3]}")
        return achieved


def _driver_on(cpus: set[int]) -> None:
    """Every thread of this driver (librdkafka's too) on `cpus`: sched_setaffinity moves one thread, and threads
    made later inherit it."""
    for thread in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.sched_setaffinity(int(thread), cpus)


@contextlib.contextmanager
def driver_on(cpu: str) -> Iterator[None]:
    """This driver on `cpu` meanwhile, then back where it was (main() put it beside the broker)."""
    before = os.sched_getaffinity(0)
    _driver_on({int(cpu)})
    try:
        yield
    finally:
        _driver_on(before)


@contextlib.contextmanager
def without_gc_pauses() -> Iterator[None]:
    """This driver's cyclic GC off while it paces and reads: its full collections (the driver holds scikit-learn,
    the records and the joins) took 100-500 ms, and stalled the reader's thread that long, each stall counted as
    the consumer's latency. Nothing it allocates meanwhile needs the cyclic GC (no reference cycles)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def paced(
    *,
    bootstrap: str,
    topic: str,
    reader: Reader,
    rate: float,
    seconds: float,
    warmup: float,
    record: Record,
    place: Callable[[Message], JoinKey],
    join: Join,
    measuring: Callable[[], None] = lambda: None,
    driver_cpu: str = CONSUMER_CPU,
) -> Latency:
    """Produce `record(i)` at `rate`/s for warmup + seconds while reading the outputs; end-to-end per record. This
    driver (the pacer, the reader) runs on `driver_cpu` meanwhile."""
    busy_before: dict[str, tuple[int, int]] = {}

    def measured() -> None:
        busy_before.update(cpu_times())
        measuring()

    with driver_on(driver_cpu), without_gc_pauses(), Collector(reader, join) as collector:
        pacer = Pacer(bootstrap, topic, place)
        achieved = pacer.run(rate, seconds, warmup, record, measured)
        busy = busy_share(busy_before, cpu_times())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not pacer.counted <= collector.seen().keys():
            time.sleep(0.1)
    seen = collector.seen()
    waits = np.array([seen[k] - pacer.sent_at[k] for k in pacer.counted if k in seen]) * 1000
    if not len(waits):
        raise RuntimeError("no output of the paced records was seen")
    return Latency(
        offered=rate,
        achieved=achieved,
        measured=len(pacer.counted),
        missing=len(pacer.counted - seen.keys()),
        p50_ms=float(np.percentile(waits, 50)),
        p99_ms=float(np.percentile(waits, 99)),
        max_ms=float(waits.max()),
        busy=busy,
    )


def by_source(message: Message) -> JoinKey:
    found = message.headers() or []
    headers = dict(found) if isinstance(found, list) else found
    partition, offset = headers["source-partition"], headers["source-offset"]
    assert isinstance(partition, bytes)
    assert isinstance(offset, bytes)
    return int(partition), int(offset)


def by_place(message: Message) -> JoinKey:
    return message.partition(), message.offset()


def by_key(message: Message) -> JoinKey:
    return message.key()


# ---- the consumers under test -----------------------------------------------------------------------------------


class Pinned:
    """A consumer process pinned to CONSUMER_CPU, output to a log; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, command: list[str], log: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
                 ) -> None:  # fmt: skip
        self.log = log
        with log.open("ab") as out:
            out.write(f"\n===== {' '.join(command)} =====\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [*PRIORITY, "taskset", "-c", CONSUMER_CPU, *command], stdout=out, stderr=subprocess.STDOUT,
                env=CHILD_ENV | (env or {}), cwd=cwd, start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def series(port: int, name: str, having: str = "") -> float:
    """The value of a series of the modelserver consumer's /metrics (the first whose labels include `having`)."""
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.split("{", 1)[0] == name and having in line:
            return float(line.rpartition(" ")[2])
    return 0.0


def histogram(port: int) -> dict[float, float]:
    """The modelserver consumer's end-to-end histogram: upper bound -> cumulative count."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = {}
    for line in text.splitlines():
        if line.startswith(f"{STREAM_END_TO_END}_bucket{{"):
            series, _, value = line.rpartition(" ")
            bound = series.split('le="', 1)[1].split('"', 1)[0]
            found[float(bound)] = float(value)
    return found


def histogram_summary(before: dict[float, float], after: dict[float, float]) -> str:
    """The latency phase's observations (a difference of two scrapes): the share within 50 ms, and p50/p99 by
    linear interpolation inside the buckets (coarse: 10, 25, 50, 100 ms ...)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return "no observation"

    def quantile(q: float) -> float:
        rank, low, below = q * total, 0.0, 0.0
        for bound, cumulative in zip(bounds, counts, strict=True):
            if cumulative >= rank:
                if bound == float("inf"):
                    return low * 1000
                share = (rank - below) / max(cumulative - below, 1e-9)
                return (low + share * (bound - low)) * 1000
            low, below = bound, cumulative
        return low * 1000

    within = counts[bounds.index(0.05)] / total if 0.05 in bounds else float("nan")
    return f"p50 ~{quantile(0.5):.0f} ms, p99 ~{quantile(0.99):.0f} ms, {within:.1%} <= 50 ms"


@dataclass
class Result:
    name: str
    saturation: Saturation | None = None
    latency: Latency | None = None
    lighter: Latency | None = None  # exactly-once only: the same at a quarter of saturation
    crowded: Latency | None = None  # exactly-once only: half saturation again, this driver beside the broker
    notes: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Context:
    broker: KafkaBroker
    model: Path
    records: list[bytes]
    workdir: Path
    args: argparse.Namespace

    def topics(self, name: str) -> tuple[str, str, str]:
        found = (f"{name}-in", f"{name}-out", f"{name}-dead")
        self.broker.create_topics(dict.fromkeys(found, PARTITIONS))
        return found

    def keys(self, n: int) -> list[bytes]:
        return [f"user-{i % KEYS}".encode() for i in range(n)]

    def record(self, i: int) -> tuple[bytes, bytes, Headers]:
        return f"user-{i % KEYS}".encode(), self.records[i % len(self.records)], []


def modelserver(
    ctx: Context,
    delivery: str,
    rate: float | None,
    *,
    backoff_ms: int | None = None,
    label: str = "",
    runs: int | None = None,
    warm_up: bool = False,
) -> Result:
    """`modelserver stream` with its defaults (max_batch 500, max_wait_ms 20) and `delivery`: `runs` saturation runs
    on one filled input topic, each a fresh consumer (group, output topics); the last one then goes on to the
    latency phase at `rate` (None: half the median saturation). `backoff_ms`: bench/stream/whatif.py's consumer.
    `warm_up`: its own topics, and every phase run for the broker's JIT, whose result nobody reads."""
    base = f"ms-{delivery}" + (f"-backoff{backoff_ms}" if backoff_ms is not None else "") + ("-warm" if warm_up else "")
    result = Result(label or f"modelserver stream, {delivery}")
    input_topic = f"{base}-in"
    ctx.broker.create_topics({input_topic: PARTITIONS})
    n = ctx.args.records
    fill(ctx.broker.bootstrap, input_topic, ctx.records[:n], ctx.keys(n), [])
    program = [sys.executable, "-m", "modelserver"] if backoff_ms is None else [sys.executable, str(HERE / "whatif.py")]
    env = {"RETRY_BACKOFF_MS": str(backoff_ms)} if backoff_ms is not None else {}
    runs = runs or ctx.args.runs
    measured: list[Saturation] = []
    for run in range(runs):
        name = f"{base}-{run}"
        output_topic, dead_topic = f"{name}-out", f"{name}-dead"
        ctx.broker.create_topics({output_topic: PARTITIONS, dead_topic: PARTITIONS})
        port = free_port()
        command = [
            *program, "stream", "--bootstrap-servers", ctx.broker.bootstrap,
            "--input-topic", input_topic, "--output-topic", output_topic, "--dead-letter-topic", dead_topic,
            "--group", name, "--instance-id", "bench-0", "--delivery", delivery, "--model-uri", str(ctx.model),
            "--format", "sklearn", "--model-name", "logreg", "--model-version", "1", "--metrics-port", str(port),
            "--log-level", "warning", "--log-text",
        ]  # fmt: skip
        consumer = Pinned(command, ctx.workdir / f"{base}.log", env=env)
        reader = Reader(ctx.broker.bootstrap, output_topic)
        try:
            measured.append(saturate(reader, n, consumer.alive, name))
            print(f"  {name}: {measured[-1].rate:,.0f} msg/s", flush=True)
            if run == runs - 1:
                wait_until_answers(f"http://127.0.0.1:{port}/ready", consumer.process, consumer.log, within=30)
                result.notes.append(batch_note(port))
                median = sorted(measured, key=lambda m: m.rate)[len(measured) // 2]
                half = rate or median.rate / 2
                result.latency = latency_phase(ctx, input_topic, reader, port, half)
                if delivery == "exactly-once" and backoff_ms is None:
                    result.lighter = latency_phase(ctx, input_topic, reader, port, median.rate / 4)
                    if not warm_up:
                        result.crowded = latency_phase(ctx, input_topic, reader, port, half, driver_cpu=BROKER_CPU)
        finally:
            consumer.stop()
            reader.close()
        dead = Reader(ctx.broker.bootstrap, dead_topic)
        dead.take(2.0)
        dead.close()
        if dead.count:
            result.notes.append(f"{dead.count} dead letters in run {run + 1}")
    measured.sort(key=lambda m: m.rate)
    result.saturation = measured[len(measured) // 2]
    if len(measured) > 1:
        result.notes.insert(0, f"median of {len(measured)} runs: " + ", ".join(f"{m.rate:,.0f}" for m in measured))
    return result


def batch_note(port: int) -> str:
    batches = series(port, f"{STREAM_BATCH_RECORDS}_count")
    transactions = series(port, STREAM_TRANSACTIONS, 'result="committed"')
    return f"mean batch {series(port, f'{STREAM_BATCH_RECORDS}_sum') / batches:,.0f} records" + (
        f" ({transactions:,.0f} transactions)" if transactions else ""
    )


def latency_phase(
    ctx: Context, input_topic: str, reader: Reader, port: int, rate: float, *, driver_cpu: str = CONSUMER_CPU
) -> Latency:
    before: dict[float, float] = {}
    found = paced(
        bootstrap=ctx.broker.bootstrap, topic=input_topic, reader=reader, rate=rate,
        seconds=ctx.args.latency_seconds, warmup=ctx.args.warmup_seconds, record=ctx.record, place=by_place,
        join=by_source, measuring=lambda: before.update(histogram(port)), driver_cpu=driver_cpu,
    )  # fmt: skip
    found.histogram = histogram_summary(before, histogram(port))
    return found


def naive(ctx: Context) -> Result:
    """(a) bench/stream/naive.py: poll one, predict one, produce, commit synchronously."""
    result = Result("(a) obvious loop: poll 1 -> predict 1 -> produce -> commit (sync)")
    input_topic, output_topic, _ = ctx.topics("naive")
    n = ctx.args.naive_records
    fill(ctx.broker.bootstrap, input_topic, ctx.records[:n], ctx.keys(n), [])
    command = [sys.executable, str(HERE / "naive.py"), ctx.broker.bootstrap, input_topic, output_topic, "naive",
               str(ctx.model)]  # fmt: skip
    consumer = Pinned(command, ctx.workdir / "naive.log")
    reader = Reader(ctx.broker.bootstrap, output_topic)
    try:
        result.saturation = saturate(reader, n, consumer.alive, "naive")
        result.latency = paced(
            bootstrap=ctx.broker.bootstrap, topic=input_topic, reader=reader, rate=result.saturation.rate / 2,
            seconds=ctx.args.latency_seconds, warmup=ctx.args.warmup_seconds, record=ctx.record,
            place=by_place, join=by_source,
        )  # fmt: skip
    finally:
        consumer.stop()
        reader.close()
    return result


def mlserver(ctx: Context, requests: list[bytes]) -> Result:
    """(b) MLServer's Kafka mode (kafka_enabled), one process (parallel_workers 0) pinned like the others."""
    result = Result(f"(b) MLServer {ctx.args.mlserver_version} Kafka mode")
    python = ctx.args.mlserver_python
    if python is None or not python.exists():
        result.error = f"no MLServer environment at {python} (make bench-stream builds it)"
        return result
    probe = subprocess.run([str(python), "-c", "import aiokafka, mlserver.kafka.server"], capture_output=True,
                           text=True, check=False)  # fmt: skip
    if probe.returncode != 0:
        result.error = f"MLServer's Kafka mode does not import: {probe.stderr.strip().splitlines()[-1]}"
        return result
    input_topic, output_topic, _ = ctx.topics("mlserver")
    repo = ctx.workdir / "mlserver"
    repo.mkdir(parents=True, exist_ok=True)
    shutil.copy(ctx.model, repo / "model.joblib")
    (repo / "model-settings.json").write_text(json.dumps({
        "name": "logreg", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"},
    }))  # fmt: skip
    http_port = free_port()
    (repo / "settings.json").write_text(json.dumps({
        "debug": False, "host": "127.0.0.1", "http_port": http_port, "grpc_port": free_port(),
        "metrics_port": free_port(), "parallel_workers": 0, "kafka_enabled": True,
        "kafka_servers": ctx.broker.bootstrap, "kafka_topic_input": input_topic, "kafka_topic_output": output_topic,
    }))  # fmt: skip
    headers: Headers = [("mlserver-model", b"logreg")]
    server = Pinned([str(python.parent / "mlserver"), "start", str(repo)], ctx.workdir / "mlserver.log", cwd=repo)
    reader = Reader(ctx.broker.bootstrap, output_topic)
    n = ctx.args.mlserver_records
    try:
        wait_until_answers(f"http://127.0.0.1:{http_port}/v2/models/logreg/ready", server.process, server.log,
                           within=120)  # fmt: skip
        # Its consumer has no group and starts at the topic's end: feed one record at a time until one is
        # answered (the consumer reads), and only then the N records of the saturation run.
        deadline = time.monotonic() + 60
        warm = 0
        while reader.count == 0:
            if time.monotonic() > deadline or not server.alive():
                raise RuntimeError(f"no output within 60 s of MLServer's readiness:\n{read_log(server.log)}")
            fill(ctx.broker.bootstrap, input_topic, [requests[0]], [f"warm-{warm}".encode()], headers)
            warm += 1
            reader.take(1.0)
        time.sleep(2)
        reader.take(0.5)
        reader.count = 0
        fill(ctx.broker.bootstrap, input_topic, requests[:n], [f"sat-{i}".encode() for i in range(n)], headers)
        result.saturation = saturate(reader, n, server.alive, "mlserver")

        def record(i: int) -> tuple[bytes, bytes, Headers]:
            return f"lat-{i}".encode(), requests[i % len(requests)], headers

        result.latency = paced(
            bootstrap=ctx.broker.bootstrap, topic=input_topic, reader=reader, rate=result.saturation.rate / 2,
            seconds=ctx.args.latency_seconds, warmup=ctx.args.warmup_seconds, record=record,
            place=by_key, join=by_key,
        )  # fmt: skip
        if ctx.args.mlserver_backlog:
            result.notes.append(backlog(ctx, input_topic, reader, requests, headers=headers, log=server.log))
    except Exception as exc:  # noqa: BLE001 - what stopped it goes into the results
        result.error = f"{type(exc).__name__}: {str(exc)[:1500]}"
    finally:
        server.stop()
        reader.close()
    result.notes += [
        "inputs: V2 InferenceRequest JSON (one FP64 row, asking for predict_proba) with header mlserver-model, "
        "unique keys (its output's key is the request id); parallel_workers 0 (inference in the one process)",
        "its consumer (aiokafka) has no group: it commits no offset and starts at the topic's end, so records "
        "arriving while it is down are never read; each record is its own asyncio task (no back-pressure) and "
        "each output one send_and_wait: no delivery guarantee; N produced once it was consuming",
    ]
    return result


def backlog(ctx: Context, topic: str, reader: Reader, requests: list[bytes], *, headers: Headers, log: Path) -> str:
    """A burst of --mlserver-backlog records at once (what a consumer finds after a pause or a spike): how many
    get an answer, until none came for QUIET_S."""
    n = ctx.args.mlserver_backlog
    timeouts_before = read_log(log, tail=10**9).count(TIMEOUT_LINE)
    start = reader.count
    began = time.perf_counter()
    fill(ctx.broker.bootstrap, topic, [requests[i % len(requests)] for i in range(n)],
         [f"backlog-{i}".encode() for i in range(n)], headers)  # fmt: skip
    last = time.perf_counter()
    while reader.count - start < n:
        if reader.take(0.2):
            last = time.perf_counter()
        elif time.perf_counter() - last > QUIET_S:
            break
    answered = reader.count - start
    timeouts = read_log(log, tail=10**9).count(TIMEOUT_LINE) - timeouts_before
    return (f"a backlog of {n:,} records produced at once: {answered:,} answered in {last - began:.0f} s "
            f"({answered / (last - began):,.0f}/s), {n - answered:,} never answered ({QUIET_S:.0f} s without an "
            f"output; its log has {timeouts:,} `{TIMEOUT_LINE}`: aiokafka's send timed out and the record was "
            "dropped)")  # fmt: skip


def summary(waits: list[float]) -> str:
    ms = np.array(waits) * 1000
    return (f"median {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms, {np.mean(ms >= 90):.0%} took 90 ms "
            "or more")  # fmt: skip


def round_trips(broker: KafkaBroker, records: list[bytes]) -> dict[str, str]:
    """The broker round trips the consumers wait on (median, p90, share >= 90 ms), measured from this driver
    before the variants: a synchronous offset commit (the obvious loop's per record), and a transaction of 500
    records with offsets, TRANSACTIONS of them back to back (exactly-once's per batch), with librdkafka's default
    retry.backoff.ms and with 10 ms."""
    broker.create_topics({"probe-in": 1, "probe-out": PARTITIONS})
    fill(broker.bootstrap, "probe-in", records[:200], [b"k"] * 200, [])
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe(["probe-in"])
    taken: list[Message] = []
    deadline = time.monotonic() + 60
    while len(taken) < 200 and time.monotonic() < deadline:
        taken += [m for m in consumer.consume(200, 1.0) if m.error() is None]
    found: dict[str, str] = {}
    waits = []
    for message in taken[:100]:
        began = time.perf_counter()
        consumer.commit(message=message, asynchronous=False)
        waits.append(time.perf_counter() - began)
    found[f"synchronous offset commit ({len(waits)})"] = summary(waits)
    for label, extra in (("transaction of 500 records + offsets, retry.backoff.ms default (100)", {}),
                         ("the same, retry.backoff.ms 10",
                                                                           {"retry.backoff.ms": 10})):  # fmt: skip
        producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"probe-{uuid.uuid4().hex}",
                             "linger.ms": 5, **extra})  # fmt: skip
        producer.init_transactions()
        waits = []
        for i in range(TRANSACTIONS + 5):  # the first 5 not counted
            began = time.perf_counter()
            producer.begin_transaction()
            for j in range(500):
                producer.produce("probe-out", records[j][:150], f"user-{j}".encode())
            offsets = [TopicPartition("probe-in", 0, i + 1)]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
            producer.commit_transaction()
            waits.append(time.perf_counter() - began)
        found[f"{label} ({TRANSACTIONS})"] = summary(waits[5:])
    consumer.close()
    return found


RAW = """
import sys, time, joblib, numpy as np, orjson
model_path, data_path = sys.argv[1:3]
model = joblib.load(model_path)
names = [f"f{i}" for i in range(20)]
values = open(data_path, "rb").read().splitlines()
model.predict_proba(np.zeros((10, 20)))  # warm
began = time.perf_counter()
x = np.array([[doc[n] for n in names] for doc in map(orjson.loads, values)], dtype=np.float64)
decoded = time.perf_counter()
model.predict_proba(x)
done = time.perf_counter()
print(len(values), done - decoded, done - began)
"""


def raw_predict(ctx: Context) -> tuple[Result, Result]:
    data = ctx.workdir / "records.jsonl"
    data.write_bytes(b"\n".join(ctx.records[: ctx.args.records]))
    out = subprocess.run(["taskset", "-c", CONSUMER_CPU, sys.executable, "-c", RAW, str(ctx.model), str(data)],
                         capture_output=True, text=True, check=True, env=CHILD_ENV)  # fmt: skip
    n, predict_s, total_s = out.stdout.split()
    rows_n = int(n)
    predict = Result("(c) raw predict_proba, one call on the N rows' matrix (upper bound)",
                     notes=[f"one process on CPU {CONSUMER_CPU}, rows already in memory"])  # fmt: skip
    predict.saturation = Saturation(rows_n, float(predict_s), 0, {})
    decoded = Result("(c) the same with the records' JSON decoding (orjson) included",
                     notes=["orjson.loads per record -> one float64 matrix -> predict_proba"])  # fmt: skip
    decoded.saturation = Saturation(rows_n, float(total_s), 0, {})
    return predict, decoded


# ---- report -----------------------------------------------------------------------------------------------------


def per_cpu(busy: dict[str, float]) -> str:
    return ", ".join(f"CPU {cpu} {share:.0%}" for cpu, share in busy.items())


def row(result: Result, eos: Result | None) -> str:
    sat, lat = result.saturation, result.latency
    rate = f"{sat.rate:,.0f}" if sat else "-"
    ratio = "-"
    if sat and eos and eos.saturation:
        times = sat.rate / eos.saturation.rate
        ratio = f"{times:.2f}x" if times >= 0.1 else f"{times:.4f}x (1/{1 / times:,.0f})"
    latency = f"{lat.p50_ms:.1f} / {lat.p99_ms:.1f} ({lat.offered:,.0f} -> {lat.achieved:,.0f})" if lat else "-"
    notes = [f"N = {sat.records:,}"] if sat else []
    notes += result.notes
    if sat and sat.extra:
        notes.append(f"**{sat.extra:,} outputs beyond N** (duplicates) in the saturation run")
    if sat and sat.busy:
        notes.append(f"busy over the saturation window: {per_cpu(sat.busy)}")
    if lat:
        notes.append(f"latency: max {lat.max_ms:.0f} ms over {lat.measured:,} records, {lat.missing} outputs missing; "
                     f"busy over its window: {per_cpu(lat.busy)}")  # fmt: skip
        if lat.histogram:
            notes.append(f"the consumer's own end-to-end histogram: {lat.histogram}")
    if result.error:
        notes.append(f"**did not run**: {result.error}")
    return f"| {result.name} | {rate} | {ratio} | {latency} | {'; '.join(notes)} |"


def targets(results: list[Result]) -> list[str]:
    eos = next((r for r in results if r.name == "modelserver stream, exactly-once"), None)
    loop = next((r for r in results if r.name.startswith("(a)") and r.saturation), None)
    if not (eos and eos.saturation and eos.latency):
        return ["- modelserver exactly-once did not complete: no target can be judged"]
    rate, p99 = eos.saturation.rate, eos.latency.p99_ms
    lines = [f"- >= 20,000 messages/s per consumer process with exactly-once: {rate:,.0f} -> "
             f"**{'met' if rate >= 20_000 else 'NOT met'}**"]  # fmt: skip
    if loop and loop.saturation:
        times = rate / loop.saturation.rate
        lines.append(f"- >= 10x the obvious loop: {times:.1f}x -> **{'met' if times >= 10 else 'NOT met'}**")
    lines.append(f"- p99 <= 50 ms at half saturation (exactly-once, {eos.latency.achieved:,.0f} msg/s offered): "
                 f"{p99:.1f} ms -> **{'met' if p99 <= 50 else 'NOT met'}**")  # fmt: skip
    busy = eos.saturation.busy.get(CONSUMER_CPU)
    if busy is not None:
        why = ("it waits on the broker more than it computes (see the round trips below)" if busy < 0.9
               else "it is bound by its own CPU")  # fmt: skip
        lines.append(f"- exactly-once's consumer kept its CPU {busy:.0%} busy at saturation (the broker's CPU "
                     f"{eos.saturation.busy.get(BROKER_CPU, 0):.0%}): {why}")  # fmt: skip
    half, quarter = eos.latency, eos.lighter
    if quarter is not None:
        lines.append(
            f"- the same at a quarter of saturation ({quarter.achieved:,.0f} msg/s): p50 / p99 {quarter.p50_ms:.1f} / "
            f"{quarter.p99_ms:.1f} ms, max {quarter.max_ms:.0f} ms; CPU {BROKER_CPU} (the broker) busy "
            f"{quarter.busy.get(BROKER_CPU, 0):.0%}, against {half.busy.get(BROKER_CPU, 0):.0%} at half saturation "
            f"(CPU {CONSUMER_CPU}, the consumer's and this driver's: {quarter.busy.get(CONSUMER_CPU, 0):.0%} and "
            f"{half.busy.get(CONSUMER_CPU, 0):.0%})"
        )
    crowded = eos.crowded
    if crowded is not None:
        lines.append(
            f"- the same half load with this driver beside the broker on CPU {BROKER_CPU} (its busy "
            f"{crowded.busy.get(BROKER_CPU, 0):.0%}): p50 / p99 {crowded.p50_ms:.1f} / {crowded.p99_ms:.1f} ms, max "
            f"{crowded.max_ms:.0f} ms over {crowded.measured:,} records, {crowded.missing} outputs missing: what the "
            "broker's CPU, shared with the load generator, does to the tail"
        )
    what_if = next((r for r in results if r.name.startswith("what-if") and r.saturation and r.latency), None)
    if what_if and what_if.saturation and what_if.latency:
        lines.append(f"- what-if row (not shipped, one producer setting): {what_if.saturation.rate:,.0f} messages/s, "
                     f"p99 {what_if.latency.p99_ms:.1f} ms at half its saturation")  # fmt: skip
    return lines


def render(results: list[Result], *, info: dict[str, str], args: argparse.Namespace,
           span: tuple[dt.datetime, dt.datetime], trips: dict[str, str]) -> str:  # fmt: skip
    started, finished = span
    eos = next((r for r in results if r.name == "modelserver stream, exactly-once" and r.saturation), None)
    flags = (f"--records {args.records} --naive-records {args.naive_records} --mlserver-records "
             f"{args.mlserver_records} --mlserver-backlog {args.mlserver_backlog} --latency-seconds "
             f"{args.latency_seconds:g} --warmup-seconds {args.warmup_seconds:g} --runs {args.runs} "
             f"--what-if-backoff-ms {args.what_if_backoff_ms}")  # fmt: skip
    lines = [
        "# Stream scoring benchmark: `modelserver stream` vs the obvious loop, MLServer's Kafka mode, raw predict",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC (took {(finished - started).total_seconds() / 60:.0f} min)",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} memory, kernel {info['kernel']}, "
        f"Python {info['python']}, {info['java']}; load average (1/5/15 min) {info['load_before']} before the run, "
        f"{info['load']} after it",
        f"- command: `make bench-stream` (`python -m bench.stream.run {flags}`, MLServer from "
        f"`--mlserver-python`, version {args.mlserver_version or '?'})",
        f"- broker: one Apache Kafka 4.1.1 KRaft node (testkit/kafka.py, its test settings; JVM "
        f"`{' '.join(BROKER_JVM)}`, see BROKER_JVM) on loopback for the whole run; each variant its own topics of "
        f"{PARTITIONS} partitions. Records: JSON objects of {N_FEATURES} float "
        f'features (`{{"f0": ..., "f19": ...}}`, about {args.record_bytes:.0f} bytes), keys `user-<i % {KEYS}>`; '
        "model: scikit-learn LogisticRegression on 20 features (joblib, `--format sklearn`).",
        f"- pinning (`taskset`): the consumer under test, one process with all its threads, on CPU {CONSUMER_CPU}; "
        f"the broker and this driver (producers, readers) on CPU {BROKER_CPU}, except while latency is measured: this "
        f"driver then runs on CPU {CONSUMER_CPU}, beside the consumer, and the broker has CPU {BROKER_CPU} to itself "
        "(on a 2-core machine the broker and the load generator cannot both have a core of their own; a broker "
        "elsewhere is how the consumer runs in production). Consumers and broker run under "
        f"`{' '.join(PRIORITY) or 'the default priority'}`, this driver under the default.",
        "- saturation: the input topic is filled first, then the consumer starts; messages/s = outputs visible to a "
        "read_committed reader after the first one / time from the first visible output to the last (start-up, "
        "model load and group join excluded; under exactly-once an output is visible once its transaction "
        f"commits). modelserver: N = `--records`, the median of {args.runs} runs on one filled topic, each a fresh "
        "consumer process and group (all shown); the loop and MLServer: one run on their own smaller N, so they "
        "finish. Before any row, one exactly-once pass that is not reported warms the broker's JIT, latency phases "
        "included.",
        f"- latency: the same consumer, caught up, fed by a paced producer (linger.ms {PACER_LINGER_MS}, librdkafka's "
        f"default) for {args.latency_seconds:g} s after {args.warmup_seconds:g} s of warm-up (not counted); "
        "end-to-end = the read_committed reader's receive time of the output minus the input's record timestamp "
        "(ms resolution), joined by the output's source-partition/offset headers (MLServer: by a unique key, which "
        "its output keeps). External measurement; modelserver's own modelserver_stream_end_to_end_seconds (record "
        "timestamp to its batch's commit, coarse buckets) is shown as a cross-check. Offered rate: half of "
        "modelserver exactly-once's saturation for both shipped modelserver rows (the same load), half of its own "
        "saturation for the others.",
        "",
        "| variant | messages/s at saturation | ratio to modelserver exactly-once | end-to-end p50 / p99 ms "
        "(offered -> achieved msg/s) | notes |",
        "|---|---:|---:|---|---|",
        *(row(result, eos) for result in results),
        "",
        "## Targets (the issue's)",
        "",
        *targets(results),
    ]
    if trips:
        lines += [
            "",
            "## Broker round trips",
            "",
            "Measured by the driver after the warm-up and before the rows above, on the same broker with nothing else "
            "running (count in parentheses; transactions back to back, the first 5 not counted):",
            "",
            *(f"- {name}: {value}" for name, value in trips.items()),
            "",
            "The obvious loop waits for one synchronous offset commit per record, so that commit bounds it. "
            "Exactly-once waits for one transaction per batch (produce, AddOffsetsToTxn + TxnOffsetCommit, EndTxn). "
            "A transaction begun while the previous one's markers are still being written is refused as "
            "CONCURRENT_TRANSACTIONS and librdkafka retries it after retry.backoff.ms (seen with `debug=eos` while "
            "preparing this benchmark), so a retried transaction takes at least that long. On this probe's quiet "
            "broker that may not happen at all; under a consumer's load it does (while preparing this benchmark, "
            "9 of about 400 transactions of an exactly-once consumer waited 90-130 ms in "
            "send_offsets_to_transaction). modelserver's producer ships with retry.backoff.ms "
            f"{RETRY_BACKOFF_MS}; the what-if row is the same consumer with {args.what_if_backoff_ms}: what that "
            "one setting is worth here.",
        ]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--records", type=int, default=200_000, help="N for modelserver's saturation runs")
    parser.add_argument("--naive-records", type=int, default=5_000)
    parser.add_argument("--mlserver-records", type=int, default=5_000)
    parser.add_argument("--mlserver-backlog", type=int, default=20_000, help="0: no backlog run")
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--mlserver-python", type=Path, default=None)
    parser.add_argument("--mlserver-version", default="")
    parser.add_argument("--runs", type=int, default=3, help="saturation runs per modelserver row (median)")
    parser.add_argument("--what-if-backoff-ms", type=int, default=100,
                        help="the what-if row's retry.backoff.ms (100: librdkafka's default); 0: no row")  # fmt: skip
    parser.add_argument("--only", nargs="+", default=["probe", "eos", "alo", "what-if", "naive", "mlserver", "raw"])
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    return args


def attempt(name: str, variant: Callable[[], Result]) -> Result:
    """Run one variant; what stopped it, if anything, goes into the results instead of ending the run."""
    try:
        result = variant()
    except Exception as exc:  # noqa: BLE001
        result = Result(name, error=f"{type(exc).__name__}: {str(exc)[:1500]}")
    print(result, flush=True)
    return result


def variants(ctx: Context, matrix: np.ndarray) -> list[Result]:
    only = ctx.args.only
    results: list[Result] = []
    eos_rate = None
    if "eos" in only:
        results.append(attempt("modelserver stream, exactly-once", lambda: modelserver(ctx, "exactly-once", None)))
        sat = results[-1].saturation
        eos_rate = sat.rate / 2 if sat else None
    if "alo" in only:
        results.append(attempt("modelserver stream, at-least-once",
                               lambda: modelserver(ctx, "at-least-once", eos_rate)))  # fmt: skip
    backoff = ctx.args.what_if_backoff_ms
    if "what-if" in only and backoff:
        label = f"what-if, not shipped: modelserver stream, exactly-once, producer retry.backoff.ms {backoff}"
        results.append(attempt(label, lambda: modelserver(ctx, "exactly-once", None, backoff_ms=backoff, label=label)))
    if "naive" in only:
        results.append(attempt("(a) obvious loop", lambda: naive(ctx)))
    if "mlserver" in only:
        requests = v2_requests(matrix[: ctx.args.mlserver_records])
        results.append(attempt("(b) MLServer Kafka mode", lambda: mlserver(ctx, requests)))
    return results


def main() -> None:
    args = parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    os.sched_setaffinity(0, {int(BROKER_CPU)})  # this driver, and the broker it starts, on CPU 0
    started = dt.datetime.now(dt.UTC)
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    model = train(args.workdir)
    matrix = rows(max(args.records, args.naive_records, args.mlserver_records))
    records = json_records(matrix)
    args.record_bytes = float(np.mean([len(r) for r in records[:1000]]))
    broker = KafkaBroker(args.workdir / "kafka", jvm_options=BROKER_JVM)
    broker.args = [*PRIORITY, "taskset", "-c", BROKER_CPU, *broker.args]
    with broker:
        ctx = Context(broker, model, records, args.workdir, args)
        # One exactly-once pass first, not reported, so that no row pays for the broker's JIT: its latency phases too,
        # whose small requests take other code paths (without them the JIT compiler still took 25-40% of the
        # broker's CPU in the first measured half-load phase).
        attempt("broker warm-up", lambda: modelserver(ctx, "exactly-once", None, label="warm-up", runs=1,
                                                      warm_up=True))  # fmt: skip
        trips = round_trips(broker, records) if "probe" in args.only else {}
        print(trips, flush=True)
        results = variants(ctx, matrix)
    if "raw" in args.only:
        results += raw_predict(ctx)
        print(results[-2:], flush=True)
    finished = dt.datetime.now(dt.UTC)
    info = machine() | {"load_before": load_before}
    report = render(results, info=info, args=args, span=(started, finished), trips=trips)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
