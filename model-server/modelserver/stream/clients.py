"""The librdkafka configurations a consumer's settings give, and how a Kafka error is classified.

Consumer: the group with static membership (group.instance.id), cooperative-sticky assignment (a rebalance moves
only the partitions that change owner), no auto commit (a batch's offsets are committed with it), from the
earliest offset when the group has none (a shadow's: the latest), and read_committed (an upstream transaction's
records are read once it commits, aborted ones never).

Producer: idempotent (acks=all, no duplicates from its own retries, order kept per partition); under exactly-once
also transactional (transactional.id). A refused request is retried after 10 ms, not librdkafka's 100 (see
producer_config). Keys are partitioned with murmur2, as Java's producers do, so an output lands on the partition a
Java producer would choose for its key.

Errors (confluent_kafka.KafkaError's flags, which librdkafka sets per call):
- FATAL: `fatal()` (e.g. the producer was fenced by a newer one with the same transactional.id, or this static
  member by a newer one with the same group.instance.id), or any other error a transactional call gives that is
  neither retriable nor abortable (librdkafka: treat it as fatal). The process exits non-zero: Kubernetes
  restarts it, and the new process fences whatever is left of this one.
- RETRIABLE: `retriable()`: the same call again (a timeout, a coordinator moving); nothing is lost or repeated.
- ABORTABLE: `txn_requires_abort()`: the transaction is aborted (none of its outputs, dead letters or offsets
  become visible) and the batch is consumed again from the committed offsets (e.g. a delivery failed, or the
  group's generation moved on so its offsets may not be committed by this member).
"""

from __future__ import annotations

import enum
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from modelserver.stream.settings import StreamSettings

MESSAGE_FRAMING_BYTES = 10_000
RETRY_BACKOFF_MS = 10


class Severity(enum.Enum):
    RETRIABLE = "retriable"
    ABORTABLE = "abortable"
    FATAL = "fatal"


def error_of(exc: KafkaException) -> KafkaError | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else None


def classify(exc: KafkaException) -> Severity:
    error = error_of(exc)
    if error is None or error.fatal():
        return Severity.FATAL
    if error.retriable():
        return Severity.RETRIABLE
    if error.txn_requires_abort():
        return Severity.ABORTABLE
    return Severity.FATAL


def common_config(settings: StreamSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"modelserver-stream-{settings.instance_id}",
        "security.protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism is not None:
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    for name in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
        value = getattr(settings, name)
        if value is not None:
            config[name.replace("_", ".")] = str(value)
    return config


def consumer_config(settings: StreamSettings) -> dict[str, Any]:
    return {
        **common_config(settings),
        "group.id": settings.consumer_group,
        "group.instance.id": settings.instance_id,
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": settings.session_timeout_ms,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": settings.offset_reset,
        "enable.partition.eof": False,
    }


def reader_config(settings: StreamSettings) -> dict[str, Any]:
    """A plain reader of committed outputs (a shadow's view of the stable output topic): assigned partitions, no
    group membership and no commits (the group id is librdkafka's requirement, never joined)."""
    return {
        **common_config(settings),
        "group.id": f"{settings.consumer_group}.compare",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
    }


def leader_reader_config(settings: StreamSettings, group: str) -> dict[str, Any]:
    """A reader of another group's committed offsets (a following revision's view of the leader group): never
    subscribes, so it never joins that group, and never commits."""
    return {
        **common_config(settings),
        "client.id": f"modelserver-stream-{settings.instance_id}-leader",
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }


def producer_config(settings: StreamSettings) -> dict[str, Any]:
    config = {
        **common_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        # The broker refuses a record batch over its topic's max.message.bytes (not a message: a whole batch). The
        # pipeline keeps every message within max_message_bytes; batches stay within it too, and librdkafka's own
        # per-message check leaves room for a record's framing.
        "batch.size": settings.max_message_bytes,
        "message.max.bytes": settings.max_message_bytes + MESSAGE_FRAMING_BYTES,
        # A request the broker refuses as retriable is sent again after this (doubling up to retry.backoff.max.ms,
        # 1 s). A transaction that begins while the previous one's markers are still being written has its
        # AddOffsetsToTxn refused CONCURRENT_TRANSACTIONS; librdkafka's default 100 ms then put 100 ms into one batch
        # in a hundred, back to back (measured: send_offsets_to_transaction p99 105 ms; 17 ms with 10). librdkafka
        # itself retries AddPartitionsToTxn after 20 ms for the same refusal, as Java's producer does.
        "retry.backoff.ms": RETRY_BACKOFF_MS,
    }
    if settings.delivery == "exactly-once":
        config["transactional.id"] = settings.transactional_id
        config["transaction.timeout.ms"] = settings.transaction_timeout_ms
    return config
