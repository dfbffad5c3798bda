"""How a batch is committed, and what each class of Kafka error does to it, on clients that record the calls and
fail where told: a transaction's calls in order; a retriable error repeats the call; an abortable one aborts the
transaction and rewinds the batch's partitions to their committed offsets; a fatal one stops the consumer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from modelrollout_contract.metrics import ABORTED, COMMITTED
from modelserver.stream import delivery
from modelserver.stream.delivery import AtLeastOnce, BoundedCalls, ExactlyOnce, Fatal, Hung
from modelserver.stream.outgoing import Outgoing
from modelserver.stream.pipeline import Processed
from modelserver.stream.rebalance import Assignment

RETRIABLE = KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True)
ABORTABLE = KafkaError(KafkaError.ILLEGAL_GENERATION, "generation moved on", txn_requires_abort=True)
FATAL = KafkaError(KafkaError._FENCED, "fenced by a newer producer", fatal=True)


class Delivered:
    """What librdkafka hands a delivery callback, as far as the committers read it."""

    def __init__(self, headers: list[tuple[str, bytes]]) -> None:
        self._headers = headers

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


class Clients:
    """A producer and a consumer in one: every call is recorded; `fail[name]` lists the errors its next calls
    raise, one per call."""

    def __init__(self, committed: dict[tuple[str, int], int]) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[str, list[KafkaError | None]] = {}  # per call, in turn: the error it raises (None: none)
        self._committed = committed
        self.delivery_errors: list[KafkaError | None] = []

    def _call(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        pending = self.fail.get(name)
        if pending and (error := pending.pop(0)) is not None:
            raise KafkaException(error)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    # producer
    def init_transactions(self, timeout: float) -> None:
        self._call("init_transactions")

    def begin_transaction(self) -> None:
        self._call("begin_transaction")

    def produce(
        self, topic: str, value: Any, key: Any, *, headers: Any, on_delivery: Callable[..., None] | None
    ) -> None:
        self._call("produce", (topic, key))
        if on_delivery is not None:
            on_delivery(self.delivery_errors.pop(0) if self.delivery_errors else None, Delivered(list(headers)))

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], group: Any, timeout: float) -> None:
        self._call("send_offsets_to_transaction", sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit_transaction")

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort_transaction")

    def flush(self, timeout: float) -> int:
        self._call("flush")
        return 0

    def poll(self, timeout: float) -> int:
        return 0

    # consumer
    def consumer_group_metadata(self) -> object:
        return object()

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self._call("committed", sorted((tp.topic, tp.partition) for tp in partitions))
        return [TopicPartition(tp.topic, tp.partition, self._committed.get((tp.topic, tp.partition), -1001))
                for tp in partitions]  # fmt: skip

    def seek(self, partition: TopicPartition) -> None:
        self._call("seek", (partition.topic, partition.partition, partition.offset))

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        self._call("commit", sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))
        return offsets


class Recorded:
    def __init__(self) -> None:
        self.results: list[str] = []

    def transaction(self, result: str) -> None:
        self.results.append(result)


def batch() -> Processed:
    done = Processed(size=5)
    done.outgoing = [Outgoing("out", b"k1", b"{}", []), Outgoing("out", b"k2", b"{}", [])]
    done.outgoing.append(Outgoing("dlq", None, b"x", []))
    done.next_offsets = {("in", 0): 43, ("in", 1): 8}
    done.first_offsets = {("in", 0): 40, ("in", 1): 6}
    return done


def owning(*partitions: tuple[str, int]) -> Assignment:
    assignment = Assignment()
    assignment.partitions.update(partitions)
    return assignment


def exactly_once(clients: Clients, assignment: Assignment | None = None) -> tuple[ExactlyOnce, Recorded]:
    metrics = Recorded()
    owner = assignment or owning(("in", 0), ("in", 1))
    return ExactlyOnce(clients, clients, owner, metrics, timeout_s=5), metrics  # type: ignore[arg-type]


def test_a_batch_commits_in_one_transaction_with_its_offsets() -> None:
    clients = Clients({})
    committer, metrics = exactly_once(clients)
    committer.start()
    assert committer.commit(batch()) is True
    assert clients.names() == ["init_transactions", "begin_transaction", "produce", "produce", "produce",
                               "send_offsets_to_transaction", "commit_transaction"]  # fmt: skip
    assert clients.calls[5][1] == [("in", 0, 43), ("in", 1, 8)]
    assert metrics.results == [COMMITTED]


def test_a_retriable_error_repeats_the_call_only() -> None:
    clients = Clients({})
    clients.fail = {"commit_transaction": [RETRIABLE, RETRIABLE], "init_transactions": [RETRIABLE]}
    committer, metrics = exactly_once(clients)
    committer.start()
    assert committer.commit(batch()) is True
    assert clients.names().count("init_transactions") == 2
    assert clients.names().count("commit_transaction") == 3
    assert clients.names().count("produce") == 3  # nothing produced twice
    assert "abort_transaction" not in clients.names()
    assert metrics.results == [COMMITTED]


@pytest.mark.parametrize("where", ["send_offsets_to_transaction", "commit_transaction"])
def test_an_abortable_error_aborts_and_rewinds_to_the_committed_offsets(where: str) -> None:
    clients = Clients({("in", 0): 40})  # partition 1 has no committed offset yet: its batch's first offset
    clients.fail = {where: [ABORTABLE]}
    committer, metrics = exactly_once(clients)
    assert committer.commit(batch()) is False
    names = clients.names()
    assert names[names.index(where) + 1 :] == ["abort_transaction", "committed", "seek", "seek"]
    assert [arg for name, arg in clients.calls if name == "seek"] == [("in", 0, 40), ("in", 1, 6)]
    assert "commit_transaction" not in names[names.index(where) + 1 :]
    assert metrics.results == [ABORTED]


def test_a_revoked_partition_is_not_rewound_its_new_owner_reads_it() -> None:
    clients = Clients({("in", 0): 40, ("in", 1): 6})
    clients.fail = {"commit_transaction": [ABORTABLE]}
    committer, _ = exactly_once(clients, owning(("in", 1)))
    assert committer.commit(batch()) is False
    assert [arg for name, arg in clients.calls if name == "seek"] == [("in", 1, 6)]


def test_a_failed_produce_aborts_the_transaction_rather_than_commit_without_the_message() -> None:
    clients = Clients({})
    clients.fail = {"produce": [KafkaError(KafkaError._UNKNOWN_TOPIC, "unknown topic")]}
    committer, metrics = exactly_once(clients)
    assert committer.commit(batch()) is False
    assert "send_offsets_to_transaction" not in clients.names()
    assert "abort_transaction" in clients.names()
    assert metrics.results == [ABORTED]


TOO_LARGE = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large", txn_requires_abort=True)


@pytest.mark.parametrize("where", ["produce", "commit_transaction"])
def test_a_batch_refused_as_too_large_stops_the_consumer_naming_the_setting(where: str) -> None:
    """Reading the batch again would meet the same refusal forever (the broker refuses a whole record batch over a
    topic's max.message.bytes): a topic smaller than max_message_bytes is a configuration error."""
    clients = Clients({})
    clients.fail = {where: [TOO_LARGE]}
    committer, _ = exactly_once(clients)
    with pytest.raises(Fatal, match=r"max.message.bytes is below max_message_bytes; set max_message_bytes"):
        committer.commit(batch())
    clients = Clients({})
    clients.delivery_errors = [None, TOO_LARGE]
    alo = AtLeastOnce(clients, clients, owning(("in", 0), ("in", 1)), timeout_s=5)  # type: ignore[arg-type]
    with pytest.raises(Fatal, match=r"delivery: the broker refused a batch as too large"):
        alo.commit(batch())
    assert "commit" not in clients.names()


@pytest.mark.parametrize("where", ["begin_transaction", "send_offsets_to_transaction", "commit_transaction",
                                   "init_transactions"])  # fmt: skip
def test_a_fatal_error_stops_the_consumer_without_committing(where: str) -> None:
    clients = Clients({})
    clients.fail = {where: [FATAL]}
    committer, metrics = exactly_once(clients)

    def run() -> None:
        committer.start()
        committer.commit(batch())

    with pytest.raises(Fatal, match="fenced"):
        run()
    assert "seek" not in clients.names()
    assert COMMITTED not in metrics.results


def test_an_error_that_is_neither_retriable_nor_abortable_is_fatal() -> None:
    clients = Clients({})
    clients.fail = {"commit_transaction": [KafkaError(KafkaError._STATE, "no transaction in progress")]}
    committer, _ = exactly_once(clients)
    with pytest.raises(Fatal, match="no transaction"):
        committer.commit(batch())


def test_a_failing_abort_is_fatal() -> None:
    clients = Clients({})
    clients.fail = {"commit_transaction": [ABORTABLE], "abort_transaction": [ABORTABLE]}
    committer, _ = exactly_once(clients)
    with pytest.raises(Fatal, match="abort_transaction"):
        committer.commit(batch())


def test_at_least_once_produces_flushes_then_commits() -> None:
    clients = Clients({})
    committer = AtLeastOnce(clients, clients, owning(("in", 0), ("in", 1)), timeout_s=5)  # type: ignore[arg-type]
    assert committer.commit(batch()) is True
    assert clients.names() == ["produce", "produce", "produce", "flush", "commit"]
    assert clients.calls[-1][1] == [("in", 0, 43), ("in", 1, 8)]


def test_at_least_once_rewinds_without_committing_when_a_delivery_fails() -> None:
    clients = Clients({("in", 0): 40, ("in", 1): 6})
    clients.delivery_errors = [None, KafkaError(KafkaError._MSG_TIMED_OUT, "timed out")]
    committer = AtLeastOnce(clients, clients, owning(("in", 0), ("in", 1)), timeout_s=5)  # type: ignore[arg-type]
    assert committer.commit(batch()) is False
    assert "commit" not in clients.names()
    assert [arg for name, arg in clients.calls if name == "seek"] == [("in", 0, 40), ("in", 1, 6)]


def test_at_least_once_goes_on_when_the_commit_is_refused_and_stops_when_it_is_fatal() -> None:
    clients = Clients({})
    clients.fail = {"commit": [KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "rebalancing"), FATAL]}
    committer = AtLeastOnce(clients, clients, owning(("in", 0), ("in", 1)), timeout_s=5)  # type: ignore[arg-type]
    assert committer.commit(batch()) is True  # the records may be scored again: at least once
    with pytest.raises(Fatal):
        committer.commit(batch())


def test_bounded_calls_run_on_one_thread_of_their_own_and_raise_the_calls_own_error() -> None:
    calls = BoundedCalls()
    threads: list[threading.Thread] = []
    refused = KafkaException(RETRIABLE)

    def call(timeout: float) -> None:
        threads.append(threading.current_thread())
        if len(threads) == 3:
            raise refused

    calls("send_offsets_to_transaction", call, 1.0)
    calls("commit_transaction", call, 1.0)
    with pytest.raises(KafkaException) as raised:
        calls("commit_transaction", call, 1.0)
    assert raised.value is refused
    assert len(set(threads)) == 1
    assert threads[0] is not threading.current_thread()


def test_a_call_blocked_past_its_timeout_and_the_grace_is_hung(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "HUNG_GRACE_S", 0.05)
    release = threading.Event()
    try:
        with pytest.raises(Hung, match="send_offsets_to_transaction did not return"):
            BoundedCalls()("send_offsets_to_transaction", lambda timeout: release.wait(10), 0.05)
    finally:
        release.set()  # the blocked call's thread ends with the test
