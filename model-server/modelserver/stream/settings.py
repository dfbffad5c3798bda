"""What `modelserver stream` is told: the model (ModelSettings, shared with `serve` and `batch`), the topics, the
consumer group and this member's identity in it, the delivery guarantee, the micro-batch, Kafka's security (the
operator sets those from Secrets through the env), the share of the records it scores (a key range), and where
its metrics are served.

A record that cannot be scored must go somewhere. Under exactly-once the dead-letter topic is required: a record
either gets its output or its dead letter, in the same transaction as its offset. Under at-least-once it may be
left out, and an invalid record is then logged, counted (`dropped`) and skipped."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, SecretStr, model_validator

from modelrollout_contract.sticky import BUCKETS
from modelrollout_contract.stream import REVISION
from modelserver.settings import ModelSettings

Delivery = Literal["exactly-once", "at-least-once"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# Kafka's legal topic names (kafka.common.internals.Topic): up to 249 of these characters.
TOPIC = r"^[A-Za-z0-9._-]{1,249}$"
CONFIGMAP = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# The output value's own fields: a passthrough field may not take one of these names.
RESERVED_FIELDS = frozenset({"prediction", "probabilities", "decision", "model", "version"})


def default_instance_id() -> str:
    """A pod's name (POD_NAME, set from the downward API; HOSTNAME is the same in a pod), else this host's name:
    stable across a container's restarts, which is what static membership and the transactional id need."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


class StreamSettings(ModelSettings):
    """Each field is also MODELSERVER_<FIELD> in the env (MODELSERVER_BOOTSTRAP_SERVERS, ...)."""

    bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port...] of the Kafka brokers")
    input_topic: str = Field(pattern=TOPIC, description="the topic whose records are scored")
    output_topic: str = Field(pattern=TOPIC, description="one prediction per scored record, with its key")
    dead_letter_topic: str | None = Field(
        None,
        pattern=TOPIC,
        description="records that cannot be scored, as they came, with why (headers); required for exactly-once",
    )
    consumer_group: str = Field(min_length=1, description="the consumer group (its committed offsets)")
    delivery: Delivery = Field(
        "exactly-once",
        description="exactly-once: a transaction per micro-batch (outputs, dead letters and offsets commit "
        "together); at-least-once: produce, flush, then commit offsets (duplicates after a crash in between)",
    )
    max_batch: PositiveInt = Field(500, le=100_000, description="records per micro-batch (and per transaction)")
    max_wait_ms: float = Field(
        20.0,
        ge=0,
        le=60_000,
        description="longest wait for a record when none is ready; a micro-batch takes the records ready (those "
        "that came while the previous one committed), up to max_batch, and is never held back to fill",
    )
    instance_id: str = Field(
        default_factory=default_instance_id,
        min_length=1,
        max_length=249,
        description="group.instance.id (static membership): default POD_NAME, else HOSTNAME",
    )
    transactional_id: str = Field(
        "",
        max_length=249,
        description="the producer's transactional.id, default '<consumer_group>-<instance_id>': the same after a "
        "restart, so the new process fences its predecessor (a zombie) and aborts its open transaction",
    )
    session_timeout_ms: int = Field(
        45_000,
        ge=1_000,
        le=1_800_000,
        description="how long the group waits for a member that went silent (a crash, or a static member's close) "
        "before its partitions go to others",
    )
    transaction_timeout_ms: int = Field(60_000, ge=1_000, le=900_000, description="transaction.timeout.ms")
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = Field(None, description="PEM file of the CA(s) that signed the brokers")
    ssl_certificate_location: Path | None = Field(None, description="client certificate (PEM), for mutual TLS")
    ssl_key_location: Path | None = Field(None, description="the client certificate's private key (PEM)")
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(8080, ge=0, le=65535, description="serves /metrics and /ready")
    key_from: int = Field(
        0,
        ge=0,
        le=BUCKETS,
        description="score records whose bucket is >= this (modelrollout_contract.sticky.message_bucket: the "
        "message key's, a keyless message's from its partition and offset); others are skipped",
    )
    key_to: int = Field(BUCKETS, ge=0, le=BUCKETS, description="... and < this")
    revision: str | None = Field(
        None, pattern=REVISION, description="this consumer's revision, as the share document names it"
    )
    share_configmap: str | None = Field(
        None,
        pattern=CONFIGMAP,
        description="NAMESPACE/NAME of the ConfigMap holding the rollout's share document (stream.json): this "
        "consumer's share then follows the rollout's cutovers (modelrollout_contract.stream), not key_from/key_to",
    )
    share_file: Path | None = Field(None, description="... or a file holding it, polled for changes")
    kubeconfig: Path | None = Field(None, description="kubeconfig for share_configmap outside a cluster")
    passthrough_fields: list[str] = Field(
        default_factory=list,
        description="fields of a JSON-object record copied into its output value (null when absent)",
    )
    threshold: float | None = Field(None, ge=0, le=1, description="binary classifiers: decision = P(positive) >= it")
    max_message_bytes: int = Field(
        1_000_000,
        ge=1_000,
        le=100_000_000,
        description="the largest message produced (key, value and headers): a record whose output is larger is "
        "dead-lettered (too_large) instead of failing its batch; keep it at or below the topics' max.message.bytes "
        "(Kafka's default 1 MiB)",
    )
    compare_topic: str | None = Field(
        None,
        pattern=TOPIC,
        description="shadowing: the stable revision's output topic; each output of this consumer (into its shadow "
        "topic, output_topic) is compared with the one there for the same input partition and offset "
        "(modelserver.stream.shadow), and the comparisons exported",
    )
    offset_reset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="where a group without committed offsets starts: earliest (every retained record) or latest "
        "(from now: a shadow compares live records, it need not score the topic's history)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> StreamSettings:
        problems = [*self._topic_problems(), *self._security_problems(), *self._share_problems()]
        if self.key_from > self.key_to:
            problems.append(f"key_from {self.key_from} must not be above key_to {self.key_to}")
        reserved = sorted(RESERVED_FIELDS.intersection(self.passthrough_fields))
        if reserved:
            problems.append(f"passthrough_fields {reserved} are names of the output's own fields")
        if len(set(self.passthrough_fields)) != len(self.passthrough_fields):
            problems.append("passthrough_fields lists a field twice")
        if problems:
            raise ValueError("; ".join(problems))
        if not self.transactional_id:
            self.transactional_id = f"{self.consumer_group}-{self.instance_id}"[:249]
        return self

    def _topic_problems(self) -> list[str]:
        problems = []
        if self.output_topic == self.input_topic:
            problems.append("output_topic must not be the input topic (each output would be read back as input)")
        if self.dead_letter_topic == self.input_topic:
            problems.append("dead_letter_topic must not be the input topic")
        if self.compare_topic is not None and self.compare_topic in {self.input_topic, self.output_topic}:
            problems.append("compare_topic is the stable revision's output topic: neither this consumer's input nor "
                            "its output (a shadow writes its own topic)")  # fmt: skip
        if self.dead_letter_topic is None and self.delivery == "exactly-once":
            problems.append(
                "dead_letter_topic is required for exactly-once delivery: a record that cannot be scored "
                "is committed to it with its offset (at-least-once may drop it instead)"
            )
        return problems

    def _share_problems(self) -> list[str]:
        problems = []
        shared = self.share_configmap is not None or self.share_file is not None
        if self.share_configmap is not None and self.share_file is not None:
            problems.append("give one of share_configmap or share_file")
        if shared and self.revision is None:
            problems.append("a share document needs this consumer's revision (revision)")
        if shared and self.key_share() is not None:
            problems.append("key_from/key_to are a static share: leave them out with a share document")
        if shared and self.compare_topic is not None:
            problems.append(
                "a shadow (compare_topic) scores its key share into its own topic: it takes no part in "
                "a share document's cutovers; leave share_configmap/share_file out"
            )
        if self.kubeconfig is not None and self.share_configmap is None:
            problems.append("kubeconfig only applies with share_configmap")
        return problems

    def _security_problems(self) -> list[str]:
        problems = []
        sasl = self.security_protocol.startswith("SASL_")
        given = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, n) is not None]
        if sasl and len(given) != 3:
            problems.append(f"security_protocol {self.security_protocol} needs sasl_mechanism, sasl_username and "
                            "sasl_password")  # fmt: skip
        if not sasl and given:
            problems.append(f"{given} are set but security_protocol {self.security_protocol} does not use SASL")
        ssl = self.security_protocol.endswith("SSL")
        files = [n for n in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location") if getattr(self, n)]
        if not ssl and files:
            problems.append(f"{files} are set but security_protocol {self.security_protocol} does not use TLS")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            problems.append("ssl_certificate_location and ssl_key_location go together (mutual TLS)")
        return problems

    def key_share(self) -> tuple[int, int] | None:
        """The buckets [from, to) this consumer scores; None for every record."""
        return None if (self.key_from, self.key_to) == (0, BUCKETS) else (self.key_from, self.key_to)
