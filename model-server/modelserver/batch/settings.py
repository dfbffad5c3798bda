"""What `modelserver batch` is told: the model (ModelSettings, shared with `serve`), the input and output, the
record policy, the run's time and shard, the share of records it scores (a key range), a reference model to
compare with (a shadow run), and where its metrics go."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PositiveInt, field_validator, model_validator

from modelrollout_contract.batch import KeyRange
from modelrollout_contract.sticky import BUCKETS
from modelserver.settings import ModelFormat, ModelSettings

DataFormat = Literal["parquet", "csv", "jsonl"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The CronJob controller names each Job `<cronjob>-<scheduled time in minutes since the epoch>` (kubernetes
# pkg/controller/cronjob, getTimeHashInMinutes): 8 digits until 2160, a few more leave room; fewer is a user's name.
CRONJOB_JOB_NAME = re.compile(r".+-(\d{8,12})")


class BatchSettings(ModelSettings):
    """Each field is also MODELSERVER_<FIELD> in the env (MODELSERVER_INPUT_URI, ...)."""

    input_uri: str = Field(min_length=1, description="file, directory or prefix; path, file:// or s3://; templated")
    input_format: DataFormat | Literal["auto"] = Field("auto", description="auto: from the file extensions")
    output_uri: str = Field(min_length=1, description="the run's output directory or prefix; templated")
    output_format: DataFormat = "parquet"
    id_columns: list[str] = Field(default_factory=list, description="input columns copied to every output row")
    extra_columns: Literal["ignore", "fail"] = Field(
        "ignore", description="input columns that are neither features nor id columns: ignored, or an error"
    )
    invalid_records: Literal["fail", "skip"] = Field(
        "fail", description="a record with a missing or non-finite feature fails the run, or is skipped"
    )
    max_invalid_percent: float = Field(0.0, ge=0, le=100, description="skip: more invalid records fail the run")
    threshold: float | None = Field(None, ge=0, le=1, description="binary classifiers: decision = P(positive) >= it")
    scheduled_time: datetime | None = Field(
        None, description="the run's time, e.g. a backfill (default: from job_name, else now); see run_time()"
    )
    job_name: str = Field("", description="this pod's Job (its job-name label): a CronJob's Job names its time")
    time_zone: str | None = Field(None, description="IANA zone the URI templates' dates are in (default UTC)")
    revision: str = Field("", description="the operator's revision of this model, recorded in the manifest")
    shard_index: int = Field(0, ge=0, description="this pod's shard (an Indexed Job's JOB_COMPLETION_INDEX)")
    shard_count: PositiveInt = 1
    input_shards: PositiveInt | None = Field(
        None,
        description="ways the input files are split: shard i reads files j with j = i mod it (default: shard_count;"
        " 1 when a key_column splits the shards, as each model's shard of a canary reads every file)",
    )
    run_token: str = Field(
        "", description="one execution of the run across its shards (an Indexed Job's name; default: the run's time)"
    )
    key_column: str | None = Field(None, description="the input column whose value is a record's user key")
    key_from: int = Field(
        0,
        ge=0,
        le=BUCKETS,
        description="score records whose key's bucket is >= this (== key_to: none, an empty "
        "share that still reports as a shard of the run, e.g. stable's in a canary at 100%)",
    )
    key_to: int = Field(BUCKETS, ge=0, le=BUCKETS, description="... and < this (modelrollout_contract.sticky)")
    reference_model_uri: str | None = Field(None, description="a shadow run: the model to compare with (stable)")
    reference_model_version: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    reference_model_format: ModelFormat = "auto"
    reference_model_class: str | None = Field(None, description="reference custom runtime: 'package.module:Class'")
    reference_feature_names: list[str] | None = None
    max_records: PositiveInt | None = Field(
        None, description="stop after this many records (a pre-flight's scored sample); None: the whole input"
    )
    batch_rows: PositiveInt = Field(65_536, description="records read, scored and written at a time")
    part_rows: PositiveInt = Field(1_000_000, description="records per output part file")
    pushgateway_url: str | None = Field(None, pattern=r"^https?://")
    termination_log: Path = Field(Path("/dev/termination-log"), description="where the run result is written")
    attempt: str = Field("", description="this attempt's id (default: a fresh one)")

    @field_validator("scheduled_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"time_zone {value!r} is not an IANA time zone (e.g. Europe/Paris, UTC)") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BatchSettings:
        if self.key_from > self.key_to:
            raise ValueError(f"key_from {self.key_from} must not be above key_to {self.key_to}")
        if (self.key_from, self.key_to) != (0, BUCKETS) and not self.key_column:
            raise ValueError(f"key_column is required to score keys [{self.key_from}, {self.key_to}) only")
        if self.input_shards is not None and self.input_shards > self.shard_count:
            # Files of a remainder no shard has would be read by nobody.
            raise ValueError(f"input_shards {self.input_shards} is above shard_count {self.shard_count}")
        if self.reference_model_format == "custom" and not self.reference_model_class:
            raise ValueError("reference_model_format 'custom' needs reference_model_class ('package.module:Class')")
        described = (self.reference_model_version, self.reference_feature_names, self.reference_model_class)
        if (
            not self.reference_model_uri
            and self.reference_model_format != "custom"
            and (any(v is not None for v in described) or self.reference_model_format != "auto")
        ):
            raise ValueError("reference_model_uri is required for a reference model (a custom class may go without)")
        return self

    def run_time(self, now: datetime | None = None) -> datetime:
        """The run's scheduled time, in UTC: `scheduled_time` when given (a backfill); else the time a CronJob's Job
        name carries (`<cronjob>-<minutes since the epoch>`), so every pod of that Job, a retry too, gets the same
        time; else `now` (default: the clock)."""
        if self.scheduled_time is not None:
            return self.scheduled_time.astimezone(UTC)
        named = CRONJOB_JOB_NAME.fullmatch(self.job_name)
        if named is not None:
            try:
                return EPOCH + timedelta(minutes=int(named.group(1)))
            except OverflowError:  # after the year 9999: a name's digits, not a time
                pass
        return (now or datetime.now(UTC)).astimezone(UTC)

    def template_time(self, when: datetime) -> datetime:
        """`when` in `time_zone`, what the URI templates' dates are (a run at 00:00 Paris reads that day's
        partition though it is 23:00Z the day before)."""
        return when.astimezone(ZoneInfo(self.time_zone)) if self.time_zone else when.astimezone(UTC)

    def key_range(self) -> KeyRange | None:
        """The share of the records this run scores; None for every record."""
        if (self.key_from, self.key_to) == (0, BUCKETS) or self.key_column is None:
            return None
        return KeyRange(column=self.key_column, start=self.key_from, end=self.key_to)

    def input_split(self) -> int:
        """How many ways the input's files are split among the shards (see input_shards)."""
        if self.input_shards is not None:
            return self.input_shards
        # Shards split by key (a canary: one per model) each read every file.
        return 1 if self.key_column is not None else self.shard_count

    def reference_settings(self) -> ModelSettings | None:
        """The reference model's settings (the run's storage options, its own model fields); None without one."""
        if not self.reference_model_uri and not self.reference_model_class:
            return None
        return ModelSettings.model_construct(
            **{
                **self.model_dump(include=set(ModelSettings.model_fields)),
                "model_uri": self.reference_model_uri or "",
                "model_version": self.reference_model_version or "",
                "model_format": self.reference_model_format,
                "model_class": self.reference_model_class,
                "feature_names": self.reference_feature_names,
                "model_sha256": None,  # the run's sha256 is its own model's
            }
        )
