"""The consumer's settings: required topics and group, the dead-letter topic exactly-once needs, the member's
identity (instance id from the pod, transactional id from it), Kafka security consistency, the key share, and the
librdkafka configuration they give."""

from __future__ import annotations

import re
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError

from modelrollout_contract.sticky import BUCKETS
from modelserver.stream.clients import Severity, classify, consumer_config, producer_config, reader_config
from modelserver.stream.settings import StreamSettings

BASE = {
    "model_uri": "/m.joblib",
    "bootstrap_servers": "kafka:9092",
    "input_topic": "events",
    "output_topic": "scores",
    "dead_letter_topic": "scores-dlq",
    "consumer_group": "churn-stable",
    "instance_id": "churn-0",
}


def settings(**overrides: Any) -> StreamSettings:
    return StreamSettings(**{**BASE, **overrides})


def test_defaults() -> None:
    s = settings()
    assert (s.delivery, s.max_batch, s.max_wait_ms, s.metrics_port) == ("exactly-once", 500, 20.0, 8080)
    assert s.transactional_id == "churn-stable-churn-0"
    assert s.key_share() is None
    assert s.passthrough_fields == []


def test_the_environment_sets_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "MODELSERVER_MODEL_URI": "/m.joblib",
        "MODELSERVER_BOOTSTRAP_SERVERS": "a:9092,b:9092",
        "MODELSERVER_INPUT_TOPIC": "in",
        "MODELSERVER_OUTPUT_TOPIC": "out",
        "MODELSERVER_CONSUMER_GROUP": "g",
        "MODELSERVER_DELIVERY": "at-least-once",
        "MODELSERVER_MAX_BATCH": "100",
        "MODELSERVER_KEY_FROM": "0",
        "MODELSERVER_KEY_TO": "3000",
        "MODELSERVER_PASSTHROUGH_FIELDS": '["id", "ts"]',
        "MODELSERVER_SECURITY_PROTOCOL": "SASL_SSL",
        "MODELSERVER_SASL_MECHANISM": "SCRAM-SHA-512",
        "MODELSERVER_SASL_USERNAME": "scorer",
        "MODELSERVER_SASL_PASSWORD": "s3cret",
        "MODELSERVER_SSL_CA_LOCATION": "/etc/kafka/ca.crt",
        "POD_NAME": "churn-7d9f-abcde",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = StreamSettings()
    assert s.delivery == "at-least-once"
    assert s.dead_letter_topic is None  # allowed at least once: invalid records are dropped
    assert s.key_share() == (0, 3000)
    assert s.passthrough_fields == ["id", "ts"]
    assert s.instance_id == "churn-7d9f-abcde"
    assert s.transactional_id == "g-churn-7d9f-abcde"
    assert "s3cret" not in repr(s)
    config = consumer_config(s)
    assert config["sasl.password"] == "s3cret"
    assert (config["security.protocol"], config["sasl.mechanism"], config["ssl.ca.location"]) == (
        "SASL_SSL", "SCRAM-SHA-512", "/etc/kafka/ca.crt"
    )  # fmt: skip
    assert "transactional.id" not in producer_config(s)


def test_the_instance_id_falls_back_to_the_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    monkeypatch.setenv("HOSTNAME", "host-1")
    fields = {k: v for k, v in BASE.items() if k != "instance_id"}
    s = StreamSettings(**fields)
    assert (s.instance_id, s.transactional_id) == ("host-1", "churn-stable-host-1")
    assert settings(transactional_id="fixed").transactional_id == "fixed"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dead_letter_topic": None}, "dead_letter_topic is required for exactly-once"),
        ({"output_topic": "events"}, "output_topic must not be the input topic"),
        ({"dead_letter_topic": "events"}, "dead_letter_topic must not be the input topic"),
        ({"input_topic": "bad topic"}, "input_topic"),
        ({"bootstrap_servers": ""}, "bootstrap_servers"),
        ({"delivery": "exactly-twice"}, "delivery"),
        ({"max_batch": 0}, "max_batch"),
        ({"key_from": 5000, "key_to": 3000}, "key_from 5000 must not be above key_to 3000"),
        ({"key_to": BUCKETS + 1}, "key_to"),
        ({"passthrough_fields": ["id", "prediction"]}, "['prediction'] are names of the output's own fields"),
        ({"passthrough_fields": ["id", "id"]}, "lists a field twice"),
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism, sasl_username and sasl_password"),
        ({"sasl_username": "u"}, "does not use SASL"),
        ({"ssl_ca_location": "/ca.crt"}, "does not use TLS"),
        ({"security_protocol": "SSL", "ssl_key_location": "/k.pem"}, "go together"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "sasl_password": "p"}, "sasl_mechanism"),
        ({"model_uri": ""}, "model_uri is required"),
        ({"compare_topic": "events"}, "compare_topic is the stable revision's output topic: neither this consumer's"),
        ({"compare_topic": "scores"}, "compare_topic is the stable revision's output topic: neither this consumer's"),
        ({"compare_topic": "bad topic"}, "compare_topic"),
        ({"offset_reset": "middle"}, "offset_reset"),
    ],
)
def test_inconsistent_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        settings(**overrides)


def test_exactly_once_configures_transactions_read_committed_and_static_membership() -> None:
    s = settings(security_protocol="SSL", ssl_certificate_location="/c.pem", ssl_key_location="/k.pem")
    consumer = consumer_config(s)
    assert consumer["group.id"] == "churn-stable"
    assert consumer["group.instance.id"] == "churn-0"
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    assert consumer["auto.offset.reset"] == "earliest"
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert (consumer["ssl.certificate.location"], consumer["ssl.key.location"]) == ("/c.pem", "/k.pem")
    producer = producer_config(s)
    assert producer["transactional.id"] == "churn-stable-churn-0"
    assert producer["enable.idempotence"] is True
    assert producer["acks"] == "all"
    assert producer["retry.backoff.ms"] == 10
    assert "group.id" not in producer


@pytest.mark.parametrize(
    ("error", "severity"),
    [
        (KafkaError(KafkaError._FENCED, "fenced", fatal=True), Severity.FATAL),
        (KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True, txn_requires_abort=True), Severity.FATAL),
        (KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True), Severity.RETRIABLE),
        (KafkaError(KafkaError._MSG_TIMED_OUT, "delivery failed", txn_requires_abort=True), Severity.ABORTABLE),
        (KafkaError(KafkaError.ILLEGAL_GENERATION, "rebalanced", txn_requires_abort=True), Severity.ABORTABLE),
        (KafkaError(KafkaError._STATE, "no transaction"), Severity.FATAL),  # neither: librdkafka says fatal
    ],
)
def test_kafka_errors_are_classified_by_their_flags(error: KafkaError, severity: Severity) -> None:
    assert classify(KafkaException(error)) is severity


def test_an_exception_without_a_kafka_error_is_fatal() -> None:
    assert classify(KafkaException("something")) is Severity.FATAL


SHARED = {"revision": "7f3c9a1b2d", "share_configmap": "shop/churn-stream"}


def test_a_share_document_from_a_configmap_or_a_file() -> None:
    s = settings(**SHARED, kubeconfig="/home/me/.kube/config")
    assert (s.revision, s.share_configmap, s.share_file) == ("7f3c9a1b2d", "shop/churn-stream", None)
    assert str(s.kubeconfig) == "/home/me/.kube/config"
    assert s.key_share() is None
    s = settings(revision="7f3c9a1b2d", share_file="/etc/stream/stream.json")
    assert (s.share_configmap, str(s.share_file)) == (None, "/etc/stream/stream.json")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"share_file": "/s.json"}, "a share document needs this consumer's revision (revision)"),
        ({"share_configmap": "shop/churn-stream"}, "a share document needs this consumer's revision (revision)"),
        ({**SHARED, "share_file": "/s.json"}, "give one of share_configmap or share_file"),
        ({**SHARED, "key_from": 100}, "key_from/key_to are a static share: leave them out with a share document"),
        ({**SHARED, "key_to": 5000}, "key_from/key_to are a static share"),
        ({"kubeconfig": "/k"}, "kubeconfig only applies with share_configmap"),
        ({"revision": "7f3c9a1b2d", "share_file": "/s.json", "kubeconfig": "/k"}, "kubeconfig only applies with"),
        ({**SHARED, "revision": "Not_A_Revision"}, "revision\n  String should match pattern"),
        ({**SHARED, "share_configmap": "churn-stream"}, "share_configmap\n  String should match pattern"),
        ({**SHARED, "share_configmap": "Shop/churn"}, "share_configmap\n  String should match pattern"),
        ({**SHARED, "compare_topic": "stable-scores"}, "a shadow (compare_topic) scores its key share into its own"),
        ({"revision": "7f3c9a1b2d", "share_file": "/s.json", "compare_topic": "stable-scores"}, "a shadow (compare"),
    ],
)
def test_inconsistent_share_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        settings(**overrides)


def test_a_shadow_compares_with_the_stable_output_topic_from_the_latest_offset() -> None:
    s = settings(output_topic="scores-shadow", dead_letter_topic="scores-shadow", compare_topic="scores",
                 offset_reset="latest", key_to=2500)  # fmt: skip
    assert (s.compare_topic, s.offset_reset, s.key_share()) == ("scores", "latest", (0, 2500))
    assert consumer_config(s)["auto.offset.reset"] == "latest"
    plain = settings()
    assert (plain.compare_topic, plain.offset_reset) == (None, "earliest")
    assert consumer_config(plain)["auto.offset.reset"] == "earliest"


def test_the_shadows_reader_of_the_stable_outputs_reads_committed_and_commits_nothing() -> None:
    s = settings(output_topic="scores-shadow", dead_letter_topic="scores-shadow", compare_topic="scores",
                 security_protocol="SSL", ssl_ca_location="/ca.crt")  # fmt: skip
    reader = reader_config(s)
    assert reader["group.id"] == "churn-stable.compare"
    assert reader["group.id"] != consumer_config(s)["group.id"], "never the consumer's own group"
    assert reader["isolation.level"] == "read_committed"
    assert reader["enable.auto.commit"] is False
    assert reader["enable.auto.offset.store"] is False
    assert "group.instance.id" not in reader, "no static member of any group"
    assert (reader["bootstrap.servers"], reader["security.protocol"], reader["ssl.ca.location"]) == (
        "kafka:9092", "SSL", "/ca.crt"
    )  # fmt: skip
