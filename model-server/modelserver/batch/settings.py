"""What `modelserver batch` is told: the model (ModelSettings, shared with `serve`), the input and output, the
record policy, the run's scheduled time and shard, and where its metrics go."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from modelserver.settings import ModelSettings

DataFormat = Literal["parquet", "csv", "jsonl"]


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
    scheduled_time: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="the run's time: fills the URI templates (backfill)"
    )
    revision: str = Field("", description="the operator's revision of this model, recorded in the manifest")
    shard_index: int = Field(0, ge=0, description="this pod's shard (an Indexed Job's JOB_COMPLETION_INDEX)")
    shard_count: PositiveInt = 1
    run_token: str = Field(
        "", description="one execution of the run across its shards (an Indexed Job's name; default: the run's time)"
    )
    batch_rows: PositiveInt = Field(65_536, description="records read, scored and written at a time")
    part_rows: PositiveInt = Field(1_000_000, description="records per output part file")
    pushgateway_url: str | None = Field(None, pattern=r"^https?://")
    termination_log: Path = Field(Path("/dev/termination-log"), description="where the run result is written")
    attempt: str = Field("", description="this attempt's id (default: a fresh one)")

    @field_validator("scheduled_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
