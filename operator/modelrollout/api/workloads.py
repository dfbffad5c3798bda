"""The three ways a model runs: online (HTTP serving), batch (scheduled scoring), stream (Kafka)."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import WithJsonSchema

from modelrollout.api.base import (
    ApiModel,
    CronSchedule,
    Duration,
    Matches,
    ModelUri,
    cel,
    cel_rules,
)
from modelrollout.api.graph import ServingGraph
from modelrollout.api.model import ModelSpec

DataFormat = Literal["parquet", "csv", "jsonl"]

# Kafka's rule for topic names: its legal characters, at most 249 of them, and neither "." nor "..". RE2 (CEL) has
# no look-ahead, so the two names are excluded by shape: up to two dots then a non-dot, or three dots or more.
KafkaTopic = Annotated[
    str,
    Matches(
        r"^(\.{0,2}[a-zA-Z0-9_-][a-zA-Z0-9._-]*|\.{3,}[a-zA-Z0-9._-]*)$",
        "must be a Kafka topic name: letters, digits, '.', '_' and '-' only, and not '.' or '..'",
        249,
    ),
]
# An IANA name by shape (Area/Location, UTC, Etc/GMT+5); whether the zone exists is asked of the time zone
# database: Python's here, the API server's Go one in the CEL rule (getHours fails on a zone it does not know).
_TIME_ZONE_SHAPE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
TIME_ZONE_MESSAGE = "must be an IANA time zone name, e.g. Europe/Paris, America/New_York or UTC"


def _time_zone(value: str) -> str:
    try:
        if re.fullmatch(_TIME_ZONE_SHAPE, value):
            ZoneInfo(value)
            return value
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise ValueError(f"{TIME_ZONE_MESSAGE} (got {value!r})")


TimeZone = Annotated[
    str,
    AfterValidator(_time_zone),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [
                cel(
                    f"self.matches(r'{_TIME_ZONE_SHAPE}') && timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0",
                    TIME_ZONE_MESSAGE,
                )
            ],
        }
    ),
]


class ScaleBounds(ApiModel):
    """The replica range an autoscaler keeps to (online pods or stream consumers)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
                field_path=".minReplicas",
            )
        )
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas the autoscaler keeps.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas the autoscaler may run.")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> ScaleBounds:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.minReplicas must not exceed autoscaling.maxReplicas")
        return self


class Autoscaling(ScaleBounds):
    """A HorizontalPodAutoscaler on CPU for each online revision."""

    target_cpu_utilization_percentage: int = Field(
        default=70,
        ge=1,
        le=100,
        alias="targetCPUUtilizationPercentage",  # the HorizontalPodAutoscaler v1 spelling users know
        description="Average CPU utilisation (percent of requests) to aim for.",
    )


class Batching(ApiModel):
    """Adaptive micro-batching in the model server: requests arriving together are predicted in one call."""

    max_batch_size: int = Field(default=32, ge=1, le=4096, description="Most records in one batched call.")
    max_wait: Duration = Field(default="2ms", description="Longest a request waits for others to batch with.")


class Fallback(ApiModel):
    """A model that answers when the serving revisions cannot: it runs as its own Deployment and Service
    (`<name>-fallback`), and our router sends it a request that stable or the canary failed (a 5xx, no answer, the
    router's timeout) or, with latencyBudget, did not answer in time. The client gets one answer; every fallback is
    counted by reason (modelrouter_fallbacks_total), and a canary's failures still count against the canary. A
    change here updates the fallback's pods in place: it is a safety net, not a rollout."""

    model: ModelSpec = Field(description="The fallback model (often a simpler or older one) and its runtime.")
    replicas: int = Field(default=1, ge=1, le=1000, description="Pods of the fallback model.")
    latency_budget: Duration | None = Field(
        default=None,
        description="Ask the fallback when a revision has not answered by then (default: only when it fails); "
        "below the router's timeout.",
    )


class OnlineSpec(ApiModel):
    """Online serving: a Deployment per revision behind the `<name>` Service (Open Inference Protocol v2)."""

    replicas: int = Field(default=1, ge=0, le=1000, description="Pods per revision when autoscaling is off.")
    autoscaling: Autoscaling | None = Field(default=None, description="Scale on CPU instead of fixed replicas.")
    batching: Batching | None = Field(default=None, description="Turn adaptive micro-batching on.")
    fallback: Fallback | None = Field(
        default=None, description="A model that answers for the serving revisions when they fail (provider router)."
    )
    graph: ServingGraph | None = Field(
        default=None,
        description="Other ModelDeployments asked with this one's model (an ensemble) or instead of it for some "
        "requests (conditional routes), through our router (provider router).",
    )


class DataLocation(ApiModel):
    """Files a batch job reads or writes."""

    uri: ModelUri = Field(description="Path, file://, http(s):// or s3:// URI.")
    format: DataFormat = Field(default="parquet", description="File format: parquet, csv or jsonl.")


class BatchGates(ApiModel):
    """What a candidate's batch run must show to pass: under shadow, compared with the stable model on the same
    records; under canary, its share of the run against stable's share."""

    max_psi: float = Field(
        default=0.2,
        ge=0,
        description="Largest population stability index of the score, candidate vs stable (rule of thumb: below 0.1 "
        "no shift, above 0.25 a major one).",
    )
    max_rejected_increase: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="Most percentage points of records the candidate may reject beyond what stable rejects.",
    )
    max_duration_ratio: float = Field(
        default=3.0, gt=0, description="Slowest the candidate's scoring may be, as a multiple of stable's (per record)."
    )
    equal_counts: bool = Field(
        default=True, description="Shadow: the candidate must score exactly as many records as stable."
    )


class BatchSpec(ApiModel):
    """Batch scoring: a CronJob that scores `input` into `output` on a schedule with the serving revision; a new
    revision is rolled out run by run (shadow, canary by key, or direct after a pre-flight)."""

    schedule: CronSchedule = Field(description="Cron schedule (5 fields, e.g. `0 2 * * *`, or @daily/@hourly/...).")
    time_zone: TimeZone | None = Field(
        default=None, description="IANA time zone of the schedule and of the URI templates, e.g. Europe/Paris."
    )
    input: DataLocation = Field(
        description="What to score; the URI may hold {date}, {datetime}, {year}, {month}, {day}, {hour}, {minute} "
        "of the run's scheduled time."
    )
    output: DataLocation = Field(description="Where predictions are written (templated like input).")
    suspend: bool = Field(default=False, description="Stop scheduling new runs (a run verb still runs one).")
    backoff_limit: int = Field(default=2, ge=0, le=20, description="Retries of a failed run.")
    id_columns: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=20, description="Input columns copied to every output row (ids, keys)."
    )
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Column whose hash sends a record to the candidate in a canary (the same records every run); "
        "default: the first of idColumns.",
    )
    invalid_records: Literal["fail", "skip"] = Field(
        default="fail",
        description="A record with a missing or non-finite feature fails the run, or is skipped into _rejects/.",
    )
    max_invalid_percent: float = Field(
        default=0.0, ge=0, le=100, description="With skip: a run with more invalid records than this fails."
    )
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="Binary classifiers: add a decision column, P(positive) >= threshold."
    )
    shards: int = Field(
        default=1, ge=1, le=100, description="Pods per run (an Indexed Job), each scoring its share of the files."
    )
    starting_deadline_seconds: int = Field(
        default=3600, ge=10, description="A run not started this long after its time (operator down) is skipped."
    )
    active_deadline: Duration | None = Field(default=None, description="Longest one run may take; then it fails.")
    successful_jobs_history_limit: int = Field(default=3, ge=0, le=10, description="Finished Jobs kept.")
    failed_jobs_history_limit: int = Field(default=3, ge=0, le=10, description="Failed Jobs kept.")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete a finished Job (and its pods) this long after it ends."
    )
    shadow_output: DataLocation | None = Field(
        default=None,
        description="Where a shadow candidate writes its output (default: <output>/_shadow/<revision>; a `_` "
        "directory, which lake readers skip). The stable output is never written by a candidate.",
    )
    pushgateway_url: str | None = Field(
        default=None,
        max_length=1024,
        pattern=r"^https?://",
        description="Prometheus Pushgateway the scorer pushes its run metrics to.",
    )
    gates: BatchGates = Field(default_factory=BatchGates, description="What a candidate's run must show.")

    @property
    def canary_key(self) -> str | None:
        return self.key or (self.id_columns[0] if self.id_columns else None)


class KafkaSasl(ApiModel):
    """SASL authentication: the user name and password come from a Secret (keys `username` and `password`)."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(description="The SASL mechanism.")
    secret_name: str = Field(
        min_length=1, max_length=253, description="Secret in this namespace with keys username and password."
    )


class KafkaTls(ApiModel):
    """TLS to the brokers: the CA that signed them (and a client certificate for mutual TLS) from a Secret."""

    secret_name: str = Field(
        min_length=1,
        max_length=253,
        description="Secret in this namespace with ca.crt (and tls.crt and tls.key for mutual TLS).",
    )
    client_certificate: bool = Field(default=False, description="Present tls.crt/tls.key (mutual TLS).")


SHADOW_TOPIC_APART = (
    "kafka.shadowTopic receives a shadowing candidate's answers only: it must differ from inputTopic, outputTopic "
    "and deadLetterTopic"
)


class KafkaSettings(ApiModel):
    """The Kafka cluster and topics a stream consumer uses."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.shadowTopic) || (self.shadowTopic != self.inputTopic && self.shadowTopic != "
                "self.outputTopic && (!has(self.deadLetterTopic) || self.shadowTopic != self.deadLetterTopic))",
                SHADOW_TOPIC_APART,
                field_path=".shadowTopic",
            )
        )
    )

    bootstrap_servers: str = Field(
        min_length=1, max_length=1024, description="Comma-separated host:port list of Kafka brokers."
    )
    input_topic: KafkaTopic = Field(description="Topic to read records from.")
    output_topic: KafkaTopic = Field(description="Topic predictions are written to.")
    consumer_group: str | None = Field(
        default=None, max_length=255, description="Consumer group; defaults to `<namespace>.<name>`."
    )
    dead_letter_topic: KafkaTopic | None = Field(default=None, description="Topic for records that cannot be scored.")
    sasl: KafkaSasl | None = Field(default=None, description="SASL authentication (with or without TLS).")
    tls: KafkaTls | None = Field(default=None, description="TLS to the brokers.")
    shadow_topic: KafkaTopic | None = Field(
        default=None,
        description="rollout.strategy shadow: the candidate's outputs (and its dead letters, with their reason "
        "header), compared with outputTopic's by input partition and offset; required for a stream shadow.",
    )

    @model_validator(mode="after")
    def _shadow_apart(self) -> KafkaSettings:
        if self.shadow_topic is not None and self.shadow_topic in {
            self.input_topic,
            self.output_topic,
            self.dead_letter_topic,
        }:
            raise ValueError(SHADOW_TOPIC_APART)
        return self


class StreamAutoscaling(ScaleBounds):
    """Scale stream consumers on consumer-group lag (more consumers than partitions is wasted)."""

    lag_threshold: int = Field(default=1000, ge=1, description="Lag per consumer that triggers scaling out.")


class StreamSpec(ApiModel):
    """Stream inference: consumer Deployments reading a Kafka topic and writing predictions back."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(has(self.delivery) && self.delivery == 'at-least-once') || has(self.kafka.deadLetterTopic)",
                "exactly-once delivery commits a record that cannot be scored to the dead-letter topic with its "
                "offset: set kafka.deadLetterTopic (or delivery: at-least-once, which drops such records)",
                field_path=".kafka.deadLetterTopic",
                reason="FieldValueRequired",
            )
        )
    )

    kafka: KafkaSettings = Field(description="Kafka brokers and topics (required for stream).")
    replicas: int = Field(default=1, ge=0, le=1000, description="Consumers when autoscaling is off.")
    autoscaling: StreamAutoscaling | None = Field(default=None, description="Scale consumers on lag (KEDA).")
    delivery: Literal["exactly-once", "at-least-once"] = Field(
        default="exactly-once",
        description="exactly-once: outputs, dead letters and offsets commit in one transaction per micro-batch; "
        "at-least-once: faster, but a crash between producing and committing scores a batch twice.",
    )
    max_batch: int = Field(default=500, ge=1, le=100_000, description="Records per micro-batch (and transaction).")
    passthrough_fields: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=50, description="Fields of a JSON record copied into its output."
    )
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="Binary classifiers: add a decision, P(positive) >= threshold."
    )
    max_message_bytes: int = Field(
        default=1_000_000,
        ge=1_000,
        le=100_000_000,
        description="Largest message produced; a record whose output is larger is dead-lettered (too_large). At "
        "or below the output and dead-letter topics' max.message.bytes, or the consumers stop saying so.",
    )

    @model_validator(mode="after")
    def _dead_letters(self) -> StreamSpec:
        if self.delivery == "exactly-once" and self.kafka.dead_letter_topic is None:
            raise ValueError(
                "exactly-once delivery commits a record that cannot be scored to the dead-letter topic with its "
                "offset: set kafka.deadLetterTopic (or delivery: at-least-once, which drops such records)"
            )
        return self

    def group_of(self, namespace: str, name: str) -> str:
        """The serving revision's consumer group: kafka.consumerGroup, default `<namespace>.<name>`."""
        return self.kafka.consumer_group or f"{namespace}.{name}"
