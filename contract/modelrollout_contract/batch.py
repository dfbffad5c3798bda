"""What a batch run leaves behind: the manifest (the run's commit and lineage record, written last, beside its
output) and the run result (a compact summary the scorer writes as its container's termination message, so the
operator learns how a run ended from the pod's status, with no access to the data lake and no data-plane I/O).

A run may score a share of the records (`KeyRange`: a canary by key, the same buckets as the router's sticky
users), several models may write shares of one run (`Manifest.models`, `Manifest.shares`), and a shadow run
compares its model with a reference model on the same records (`Comparison`).

Readers trust only runs with a manifest, and only the parts it lists (modelserver.batch.commit)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelrollout_contract.sticky import BUCKETS

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


class KeyRange(_Wire):
    """The records a run (or a shard) scored: those whose key in `column` falls in a bucket in [from, to) (none
    when from == to: a share that is empty this run, like stable's in a canary at 100%)
    (modelrollout_contract.sticky.buckets_of; our router sends a user to the candidate when their bucket is below
    weight x 100, so a canary at weight w scores [0, w x 100) and stable [w x 100, 10000))."""

    column: str = Field(min_length=1)
    start: int = Field(alias="from", ge=0, le=BUCKETS, description="the first bucket of the range")
    end: int = Field(alias="to", ge=0, le=BUCKETS, description="the bucket after the last one")

    @model_validator(mode="after")
    def _ordered(self) -> KeyRange:
        if self.start > self.end:
            raise ValueError(f"a reversed key range: from {self.start} is above to {self.end}")
        return self


class Share(_Wire):
    """What one shard of a run scored: with which model, which keys (None: every key) and how many records."""

    shard: int = Field(ge=0)
    model: ModelRef
    keys: KeyRange | None = None
    counts: Counts


class Comparison(_Wire):
    """The run's model (the candidate) against the reference model (the stable one) on the same input records.

    Records valid for both models are compared row by row. The score is a regressor's value or a binary
    classifier's P(positive class) (none for other classifiers: no diffs, no PSI). `psi` is the population stability
    index of the two score distributions over those records, binned at the reference's deciles (estimated from
    sketches: see modelserver.batch.compare)."""

    reference: ModelRef
    records: int = Field(ge=0, description="records both models scored (valid for both)")
    scored: int = Field(ge=0, description="records the candidate scored")
    reference_scored: int = Field(ge=0, alias="referenceScored")
    rejected: int = Field(ge=0, description="records invalid for the candidate")
    reference_rejected: int = Field(ge=0, alias="referenceRejected")
    agreement: float | None = Field(None, ge=0, le=1, description="classifiers: share of records with the same label")
    mean_abs_diff: float | None = Field(None, alias="meanAbsDiff", ge=0)
    max_abs_diff: float | None = Field(None, alias="maxAbsDiff", ge=0)
    psi: float | None = Field(None, ge=0)
    psi_bins: int = Field(10, alias="psiBins", ge=1, description="bins the PSI used (equal deciles merge)")
    seconds: float = Field(ge=0, description="time in the candidate's predict calls")
    reference_seconds: float = Field(ge=0, alias="referenceSeconds", description="time in the reference's")


class ComparisonSums(_Wire):
    """A shard's comparison before it is summarised: sums that add up across shards, and both score sketches (over
    the compared records), so a sharded run's merged Comparison is what one process would have computed."""

    reference: ModelRef
    records: int = Field(ge=0)
    scored: int = Field(ge=0)
    reference_scored: int = Field(ge=0, alias="referenceScored")
    rejected: int = Field(ge=0)
    reference_rejected: int = Field(ge=0, alias="referenceRejected")
    agreeing: int | None = Field(None, ge=0, description="classifiers: records with the same label")
    diffed: int = Field(0, ge=0, description="records with a finite score from both models")
    abs_diff_sum: float | None = Field(None, alias="absDiffSum", ge=0)
    max_abs_diff: float | None = Field(None, alias="maxAbsDiff", ge=0)
    score: Sketch | None = Field(None, description="the candidate's score over the compared records")
    reference_score: Sketch | None = Field(None, alias="referenceScore")
    seconds: float = Field(0.0, ge=0)
    reference_seconds: float = Field(0.0, alias="referenceSeconds", ge=0)


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
    """`model` is shard 0's; `models` every distinct model of the run's shards in shard order (two in a canary by
    key), `shares` what each shard scored."""

    outcome: Outcome = "Succeeded"
    scorer: str = Field(description="modelserver version that wrote the run")
    shards: int = 1
    models: list[ModelRef] = Field(default_factory=list)
    shares: list[Share] = Field(default_factory=list)
    comparison: Comparison | None = Field(None, description="a shadow run: its model against the reference")


class ShardRecord(_Written):
    """What one shard of a sharded run wrote, stored beside the output until the last shard merges every record of
    the run into its manifest (modelserver.batch.commit)."""

    token: str = Field(description="identifies one execution of the run (e.g. the Job's name) across its shards")
    shard: int = Field(ge=0)
    shards: int = Field(ge=1)
    keys: KeyRange | None = Field(None, description="the records this shard selected (None: every key)")
    comparison: ComparisonSums | None = None


class Histogram(_Wire):
    """The score's distribution in fixed bins, small enough for a termination message: the buckets of the scorer's
    sketch (Sketch: bucket k holds values in (gamma^(k-1), gamma^k], mirrored for negatives, zeros apart), merged
    `factor` at a time (bin b holds buckets k with k // factor == b; factor a power of two, the least that keeps
    the non-empty bins within MAX_HISTOGRAM_BINS). The bins depend on the sketch's accuracy and the factor alone,
    so two runs' histograms compare bin by bin once brought to the larger factor: what the operator's population
    stability index of a canary's share against stable's share is computed from."""

    factor: int = Field(1, ge=1)
    zeros: int = Field(0, ge=0)
    positive: dict[int, int] = Field(default_factory=dict)
    negative: dict[int, int] = Field(default_factory=dict)


# Bins a Histogram keeps at most (about 10 bytes each on the wire).
MAX_HISTOGRAM_BINS = 120


class RunResult(_Wire):
    """The termination message of a scorer container: small, bounded by TERMINATION_MESSAGE_LIMIT. Its counts and
    summary are the committed run's, or this shard's part of it when another shard commits; in a run of several
    models (a canary by key), those of this pod's model's share alone."""

    outcome: Outcome
    reason: Reason
    message: str = Field("", max_length=1500)
    run: str = ""
    manifest: str = Field("", description="URI of the manifest the run committed ('' when it committed none)")
    counts: Counts = Field(default_factory=Counts)
    duration_s: float = Field(0.0, alias="durationSeconds", ge=0)
    labels: dict[str, int] | None = None
    score_quantiles: dict[str, float] = Field(default_factory=dict, alias="scoreQuantiles")
    keys: KeyRange | None = Field(None, description="the share of the records this pod's shard scored")
    comparison: Comparison | None = None
    histogram: Histogram | None = Field(None, description="the score's distribution (this pod's model's share)")
