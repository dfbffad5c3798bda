"""What a batch run leaves behind: the manifest (the run's commit and lineage record, written last, beside its
output) and the run result (a compact summary the scorer writes as its container's termination message, so the
operator learns how a run ended from the pod's status, with no access to the data lake and no data-plane I/O).

Readers trust only runs with a manifest, and only the parts it lists (modelserver.batch.commit)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "_manifest.json"
# Kubernetes keeps at most 4096 bytes of a termination message: the result must fit, whatever the input.
TERMINATION_MESSAGE_LIMIT = 4096

Outcome = Literal["Succeeded", "Failed"]
# Why a run failed, one word each; also the scorer's exit code (see modelserver.batch.errors).
Reason = Literal["Completed", "InvalidSettings", "SchemaMismatch", "TooManyInvalidRecords", "StorageError",
                 "ModelLoadFailed", "Error"]  # fmt: skip


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class Counts(_Wire):
    read: int = Field(0, ge=0)
    scored: int = Field(0, ge=0)
    rejected: int = Field(0, ge=0)


class ModelRef(_Wire):
    name: str
    version: str
    revision: str = ""
    sha256: str = Field("", description="of the model artifact the run loaded ('' for a custom class alone)")
    format: str = ""


class FileRef(_Wire):
    path: str
    bytes: int = Field(0, ge=0)
    rows: int | None = Field(None, ge=0)
    etag: str = ""


class Column(_Wire):
    name: str
    type: str


class Sketch(_Wire):
    """Scores as a DDSketch (relative accuracy `relative_accuracy`: a quantile q it reports is within
    q·(1 ± relative_accuracy) of a true value of that rank) whose buckets also serve as a fixed-bin histogram:
    bucket i holds values in (gamma^(i-1), gamma^i], mirrored for negatives, plus zeros."""

    relative_accuracy: float = Field(alias="relativeAccuracy")
    count: int = Field(ge=0)
    zeros: int = Field(0, ge=0)
    positive: dict[int, int] = Field(default_factory=dict)
    negative: dict[int, int] = Field(default_factory=dict)
    minimum: float | None = Field(None, alias="min")
    maximum: float | None = Field(None, alias="max")
    quantiles: dict[str, float] = Field(default_factory=dict, description="p01..p99 as reported by the sketch")


class PredictionSummary(_Wire):
    """Label counts for classifiers; the sketch of the score (regressors: the value; binary classifiers: the
    positive class's probability) for both."""

    labels: dict[str, int] | None = None
    score: Sketch | None = None


class _Written(_Wire):
    """What scoring wrote: the manifest of a run, or the record of one of its shards."""

    run: str = Field(description="the run's scheduled time, ISO 8601 (what the URI templates were filled with)")
    attempt: str
    model: ModelRef
    inputs: list[FileRef]
    parts: list[FileRef]
    rejects: list[FileRef] = Field(default_factory=list)
    counts: Counts
    output_schema: list[Column] = Field(alias="outputSchema")
    ignored_columns: list[str] = Field(default_factory=list, alias="ignoredColumns")
    summary: PredictionSummary
    started: datetime
    finished: datetime


class Manifest(_Written):
    outcome: Outcome = "Succeeded"
    scorer: str = Field(description="modelserver version that wrote the run")
    shards: int = 1


class ShardRecord(_Written):
    """What one shard of a sharded run wrote, stored beside the output until the last shard merges every record of
    the run into its manifest (modelserver.batch.commit)."""

    token: str = Field(description="identifies one execution of the run (e.g. the Job's name) across its shards")
    shard: int = Field(ge=0)
    shards: int = Field(ge=1)


class RunResult(_Wire):
    """The termination message of a scorer container: small, bounded by TERMINATION_MESSAGE_LIMIT."""

    outcome: Outcome
    reason: Reason
    message: str = Field("", max_length=1500)
    run: str = ""
    manifest: str = Field("", description="URI of the manifest the run committed ('' when it committed none)")
    counts: Counts = Field(default_factory=Counts)
    duration_s: float = Field(0.0, alias="durationSeconds", ge=0)
    labels: dict[str, int] | None = None
    score_quantiles: dict[str, float] = Field(default_factory=dict, alias="scoreQuantiles")
