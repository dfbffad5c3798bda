"""The observed state of a ModelDeployment (`status`).

All rollout state lives here, so a restarted operator resumes from the object alone: which revision is stable,
which is the candidate, the step it is on and since when, the weights it set, and every analysis verdict.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from modelrollout.api.base import ApiModel
from modelrollout.api.gates import GateName
from modelrollout.api.model import ModelSpec
from modelrollout_contract.batch import Histogram

Phase = Literal["Pending", "Progressing", "Paused", "Promoting", "Healthy", "Degraded", "RolledBack", "Failed"]
ConditionStatus = Literal["True", "False", "Unknown"]
Verdict = Literal["Successful", "Failed", "Inconclusive", "Error"]
Outcome = Literal["Promoted", "RolledBack", "Aborted", "Superseded", "Failed", "Undecided"]
RunKind = Literal["Background", "Step", "Final", "Experiment"]
PauseReason = Literal["PauseStep", "User", "Inconclusive", "AnalysisMisconfigured"]


class RevisionRef(ApiModel):
    """One revision of the pods: a short hash of what they run, and the model version inside."""

    revision: str = Field(max_length=16, description="Short hash of model, image, env and resources.")
    version: str = Field(max_length=63, description="spec.model.version of that revision.")


class Weights(ApiModel):
    """Traffic percentages currently set on the router."""

    stable: int = Field(default=100, ge=0, le=100, description="Percent of requests answered by stable.")
    canary: int = Field(default=0, ge=0, le=100, description="Percent of requests answered by the canary.")
    mirror: int = Field(default=0, ge=0, le=100, description="Percent of requests mirrored to the canary.")


class MetricResult(ApiModel):
    """One metric's measurement in one analysis run, with the evidence behind its verdict."""

    name: str = Field(max_length=63, description="spec.rollout.analysis.metrics[].name.")
    verdict: Verdict = Field(description="Successful, Failed, Inconclusive or Error.")
    value: float | None = Field(default=None, description="Canary value; absent when there was no data.")
    stable_value: float | None = Field(default=None, description="Stable value over the same window.")
    message: str | None = Field(default=None, max_length=1024, description="Why, in words.")
    evidence: dict[str, float] | None = Field(
        default=None, description="Judge statistics (bounds, p- or e-values, sample sizes)."
    )


class AnalysisRun(ApiModel):
    """One analysis run: every metric evaluated over one window."""

    at: datetime = Field(description="When the run was evaluated.")
    verdict: Verdict = Field(description="The run's verdict: the worst of its metrics.")
    kind: RunKind | None = Field(
        default=None,
        description="Background (every interval while the candidate gets traffic), Step (an analysis step or "
        "blue-green pre-promotion analysis), Final (shadow's verdict over its whole duration) or Experiment (an A/B "
        "test's evaluation of the success metric since the split).",
    )
    step: int | None = Field(default=None, description="Canary step index the run belonged to.")
    metrics: list[MetricResult] = Field(default_factory=list, description="Per-metric results.")


class AnalysisStatus(ApiModel):
    """Recent analysis runs and the counters that decide rollback or pause."""

    runs: list[AnalysisRun] = Field(default_factory=list, description="Latest runs, newest last (bounded).")
    failures: int = Field(default=0, ge=0, description="Failed runs in this rollout.")
    consecutive_failures: int = Field(default=0, ge=0, description="Failed runs in a row.")
    consecutive_inconclusive: int = Field(
        default=0, ge=0, description="Runs in a row that could not decide (Inconclusive or Error)."
    )
    next_run_at: datetime | None = Field(
        default=None, description="When the next background run is due; unset while the candidate gets no traffic."
    )


class Condition(ApiModel):
    """A Kubernetes-style condition (Ready, Progressing, Degraded)."""

    type: str = Field(max_length=64, description="Ready, Progressing or Degraded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=128, description="CamelCase reason, machine-readable.")
    message: str = Field(default="", max_length=4096, description="Human-readable details.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="Generation this condition describes.")


class HistoryEntry(ApiModel):
    """A finished rollout."""

    revision: str = Field(max_length=16, description="The candidate revision.")
    version: str = Field(max_length=63, description="Its model version.")
    outcome: Outcome = Field(
        description="Promoted, RolledBack, Aborted, Superseded, Failed or Undecided (an A/B test without a winner)."
    )
    started_at: datetime = Field(description="When the rollout began.")
    finished_at: datetime = Field(description="When it ended.")
    message: str | None = Field(default=None, max_length=1024, description="Why it ended so.")


class Interval(ApiModel):
    """A confidence interval."""

    low: float = Field(description="Lower bound.")
    high: float = Field(description="Upper bound.")


class AbTestResult(ApiModel):
    """The state of an A/B test, and its decision once made."""

    winner: Literal["stable", "canary", "undecided"] | None = Field(
        default=None, description="Decision; absent while the test runs."
    )
    effect: float | None = Field(default=None, description="Success rate of canary minus stable.")
    interval: Interval | None = Field(default=None, description="Confidence interval of the effect.")
    p_value: float | None = Field(default=None, ge=0, le=1, description="p-value (two-proportion test).")
    e_value: float | None = Field(default=None, ge=0, description="e-value (sequential test).")
    samples_stable: int = Field(default=0, ge=0, description="Trials of stable.")
    samples_canary: int = Field(default=0, ge=0, description="Trials of the canary.")
    rate_stable: float | None = Field(default=None, ge=0, le=1, description="Success rate of stable.")
    rate_canary: float | None = Field(default=None, ge=0, le=1, description="Success rate of the canary.")


class ScheduledScaleDown(ApiModel):
    """An old revision kept running for a fast undo, and when it is scaled to zero."""

    revision: str = Field(max_length=16, description="The revision to scale down.")
    at: datetime = Field(description="When to scale it down.")


class ReplicaCounts(ApiModel):
    """Pods of one workload, read back from its Deployment."""

    desired: int = Field(default=0, ge=0, description="Replicas asked for.")
    ready: int = Field(default=0, ge=0, description="Replicas ready.")


BatchRunPhase = Literal["Running", "Succeeded", "Failed"]
BatchRole = Literal["stable", "shadow", "canary", "preflight"]
GateVerdict = Literal["Passed", "Failed"]


class BatchCounts(ApiModel):
    """Records of one run, from the scorer's result."""

    read: int = Field(default=0, ge=0, description="Records read from the input.")
    scored: int = Field(default=0, ge=0, description="Records scored into the output.")
    rejected: int = Field(default=0, ge=0, description="Records skipped into _rejects/ (invalid features).")


class BatchComparison(ApiModel):
    """A candidate's run against stable's: shadow on the same records, canary share against share."""

    records: int = Field(default=0, ge=0, description="Shadow: records both models scored.")
    agreement: float | None = Field(default=None, description="Classifiers: share of identical labels.")
    mean_abs_diff: float | None = Field(default=None, description="Mean absolute difference of the score.")
    psi: float | None = Field(default=None, description="Population stability index of the score.")
    rejected_increase: float | None = Field(
        default=None, description="Percentage points of records rejected beyond stable's share."
    )
    duration_ratio: float | None = Field(default=None, description="Candidate's scoring time over stable's.")
    stable_seconds: float | None = Field(default=None, ge=0, description="Shadow: stable's predict time, seconds.")
    counts_equal: bool | None = Field(default=None, description="Shadow: both scored as many records.")


class BatchRun(ApiModel):
    """One run (a Job) of a batch CronJob, or of a pre-flight or a `run` verb, as the operator saw it end."""

    job: str = Field(max_length=253, description="The Job's name.")
    role: BatchRole = Field(description="stable, shadow (candidate beside stable), canary (its share), preflight.")
    revision: str = Field(max_length=16, description="The revision that ran.")
    version: str = Field(default="", max_length=63, description="Its model version.")
    scheduled_time: datetime | None = Field(default=None, description="The run's scheduled time (its data's time).")
    created_at: datetime = Field(description="When the Job was created.")
    phase: BatchRunPhase = Field(description="Running, Succeeded or Failed.")
    reason: str | None = Field(default=None, max_length=128, description="The scorer's reason (SchemaMismatch...).")
    message: str | None = Field(default=None, max_length=1500, description="What the scorer said.")
    counts: BatchCounts | None = Field(default=None, description="Records read, scored and rejected.")
    duration_seconds: float | None = Field(default=None, ge=0, description="How long scoring took.")
    manifest: str | None = Field(default=None, max_length=2048, description="URI of the committed manifest.")
    keys: str | None = Field(default=None, max_length=32, description="Canary: the key buckets this part scored.")
    quantiles: dict[str, float] | None = Field(default=None, description="Quantiles of the score (p01..p99).")
    # What a canary's share is compared with stable's share by, read from the pod in the pass that judges it and
    # never written to status (it is the scorer's, and too large to keep for every run).
    histogram: SkipJsonSchema[Histogram | None] = Field(default=None, exclude=True)
    comparison: BatchComparison | None = Field(default=None, description="A candidate's run against stable's.")
    gate: GateVerdict | None = Field(default=None, description="A candidate's run: whether it passed the gates.")
    gate_message: str | None = Field(default=None, max_length=1024, description="Why it passed or failed.")


class RevisionModel(ApiModel):
    """The model a revision runs, kept for when the spec no longer describes it (stable during a rollout)."""

    revision: str = Field(max_length=16, description="The revision.")
    model: ModelSpec = Field(description="Its spec.model, the image filled in.")


class BatchStatus(ApiModel):
    """What batch scoring did: the latest runs and the rollout's progress run by run."""

    runs: list[BatchRun] = Field(default_factory=list, description="Latest runs, newest last (bounded).")
    passed_runs: int = Field(default=0, ge=0, description="Candidate runs that passed in the current rollout.")
    judged_since: datetime | None = Field(
        default=None, description="Candidate runs created from this second on judge the current rollout."
    )
    judged: list[str] = Field(
        default_factory=list, max_length=50, description="Candidate Jobs already judged (each run counts once)."
    )
    preflight_job: str | None = Field(default=None, max_length=253, description="Strategy direct: the pre-flight Job.")
    stable_model: RevisionModel | None = Field(
        default=None, description="The model of the stable revision, which batch scores with while a rollout runs."
    )
    last_schedule_time: datetime | None = Field(default=None, description="When the stable CronJob last started a run.")


class StreamShare(ApiModel):
    """The share document in force (modelrollout_contract.stream, ConfigMap `<name>-stream`): which revision leads
    (chooses the cutovers), which follows and its percent of the records, and whether that pair is final."""

    epoch: int = Field(ge=0, description="Raised by one at every change.")
    leader: RevisionRef = Field(description="The revision that chooses every cutover: the serving one.")
    follower: RevisionRef | None = Field(default=None, description="The candidate, while one has a share.")
    percent: int = Field(default=0, ge=0, le=100, description="The follower's share of the records (by key).")
    final: bool = Field(default=False, description="A hand-over: 100 (promotion) or 0 (rollback), for good.")


class RevisionProgress(ApiModel):
    """One revision's consumers as their metrics report them."""

    revision: str = Field(max_length=16, description="The revision.")
    epoch: int | None = Field(default=None, description="Lowest epoch its committed offsets reached, over partitions.")
    partitions: int = Field(default=0, ge=0, description="Partitions it reports an epoch for.")
    lag: int | None = Field(default=None, ge=0, description="Records behind the end of the topic, summed.")


class StreamStatus(ApiModel):
    """Stream inference: the share in force and how far each revision's consumers are."""

    share: StreamShare | None = Field(default=None, description="The share document in force.")
    group: str | None = Field(default=None, max_length=255, description="The serving revision's consumer group.")
    groups: dict[str, str] = Field(
        default_factory=dict, description="Consumer group per revision that has run (the first one's is the spec's)."
    )
    shadow: str | None = Field(
        default=None, max_length=16, description="The revision shadowing: its answers into kafka.shadowTopic."
    )
    shadow_group: str | None = Field(default=None, max_length=255, description="The shadowing revision's group.")
    partitions: int | None = Field(default=None, ge=0, description="The input topic's partitions, as consumers see.")
    progress: list[RevisionProgress] = Field(default_factory=list, description="Per running revision.")
    waiting: str | None = Field(default=None, max_length=1024, description="What a hand-over waits for.")


class GateStatus(ApiModel):
    """The gate the rollout waits at (spec.rollout.gates)."""

    name: GateName = Field(description="confirmRollout, preRollout or confirmPromotion.")
    since: datetime = Field(description="When the rollout reached the gate.")
    checks: int = Field(default=0, ge=0, description="Confirm gates: answers so far that were not a yes.")
    next_check_at: datetime | None = Field(default=None, description="Confirm gates: when the webhook is asked next.")
    answer: str | None = Field(
        default=None, max_length=512, description="The webhook's last answer, or how the hook Job stands."
    )
    job: str | None = Field(default=None, max_length=253, description="preRollout: the hook Job's name.")


GraphMemberPhase = Literal[Phase, "Missing", "NotServing", "OtherModel"]


class GraphMemberStatus(ApiModel):
    """One member of spec.online.graph as this pass found it: `self` is this ModelDeployment; another member is
    read from its own ModelDeployment's status, which its own rollout writes."""

    name: str = Field(max_length=40, description="The member's name in the graph ('self': this ModelDeployment).")
    model_deployment: str = Field(max_length=63, description="The ModelDeployment that serves it.")
    phase: GraphMemberPhase = Field(
        description="Its ModelDeployment's phase; Missing (no such ModelDeployment), NotServing (it has no "
        "spec.online), OtherModel (it serves another model name, which requests for this one would not find)."
    )
    stable: RevisionRef | None = Field(default=None, description="The revision answering for it.")
    canary: RevisionRef | None = Field(default=None, description="The revision it is rolling out, if any.")
    canary_weight: int = Field(default=0, ge=0, le=100, description="The canary's percent of its requests.")


AbnVerdict = Literal["Control", "Better", "Worse", "Undecided"]


class AbnVariantResult(ApiModel):
    """One variant of an A/B/n test, as its last evaluation counted it."""

    name: str = Field(max_length=40, description="'self' (the control) or a member.")
    version: str = Field(max_length=63, description="The version its users were answered by.")
    successes: int = Field(default=0, ge=0, description="Successes since the test started.")
    trials: int = Field(default=0, ge=0, description="Trials since the test started.")
    statistic: float | None = Field(
        default=None, description="Against the control: the p-value (twoProportion) or the e-value (sequential)."
    )
    threshold: float | None = Field(
        default=None, description="What the statistic had to pass after the correction for multiple comparisons."
    )
    verdict: AbnVerdict = Field(default="Undecided", description="Against the control, after the correction.")


class GraphAbnStatus(ApiModel):
    """The A/B/n test of spec.online.graph.abn."""

    started_at: datetime = Field(description="When the split began (restarted when a variant or weight changes).")
    key: str = Field(max_length=64, description="What was split (variants, weights, versions): a change restarts it.")
    evaluated_at: datetime | None = Field(default=None, description="The last evaluation.")
    winner: str | None = Field(default=None, max_length=40, description="The variant to keep, once decided.")
    message: str | None = Field(default=None, max_length=4096, description="The last evaluation, in words.")
    variants: list[AbnVariantResult] = Field(default_factory=list, description="Per variant, in the spec's order.")


class GraphStatus(ApiModel):
    """The serving graph's members, each with its own rollout."""

    members: list[GraphMemberStatus] = Field(default_factory=list, description="'self' first, then as listed.")
    abn: GraphAbnStatus | None = Field(default=None, description="The A/B/n test, when spec.online.graph.abn is set.")


class ModelDeploymentStatus(ApiModel):
    """What the operator observed and decided. Written only through the status subresource."""

    phase: Phase = Field(default="Pending", description="Where the ModelDeployment stands.")
    observed_generation: int | None = Field(default=None, description="metadata.generation last acted upon.")
    modes: str | None = Field(default=None, max_length=64, description="Modes served, e.g. online,batch.")
    message: str | None = Field(default=None, max_length=4096, description="The latest decision, in words.")
    stable: RevisionRef | None = Field(default=None, description="The revision serving users.")
    canary: RevisionRef | None = Field(default=None, description="The revision being rolled out.")
    current_step: int | None = Field(default=None, ge=0, description="Index of the canary step in progress.")
    step_started_at: datetime | None = Field(default=None, description="When the current step began.")
    rollout_started_at: datetime | None = Field(default=None, description="When the current rollout began.")
    paused: bool = Field(default=False, description="True while paused, by a step or a user.")
    pause_reason: PauseReason | None = Field(
        default=None,
        description="Why it is paused: PauseStep, User, Inconclusive (analysis could not decide), "
        "or AnalysisMisconfigured.",
    )
    gate: GateStatus | None = Field(default=None, description="The gate the rollout waits at, while it waits.")
    gates_passed: list[GateName] = Field(
        default_factory=list, max_length=3, description="The gates the current rollout has passed."
    )
    held: RevisionRef | None = Field(
        default=None,
        description="A target not rolled out again (after abort, rollback or undo) until the spec asks for "
        "another revision or a user says retry.",
    )
    scale_downs: list[ScheduledScaleDown] = Field(
        default_factory=list, description="Old revisions still running after promotion, and when they go."
    )
    last_verb_id: str | None = Field(
        default=None, max_length=128, description="Id of the last user verb applied; a repeat is ignored."
    )
    weights: Weights = Field(default_factory=Weights, description="Traffic split currently applied.")
    replicas: dict[str, ReplicaCounts] = Field(
        default_factory=dict,
        description="Pods per role (stable, canary) from the Deployments of the status.stable and "
        "status.canary revisions, and (fallback) of online.fallback's Deployment.",
    )
    analysis: AnalysisStatus = Field(default_factory=AnalysisStatus, description="Analysis runs and counters.")
    ab_test: AbTestResult | None = Field(default=None, description="A/B test state and decision.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing, Degraded.")
    history: list[HistoryEntry] = Field(default_factory=list, description="Finished rollouts, newest last.")
    batch: BatchStatus | None = Field(default=None, description="Batch scoring: runs and rollout progress.")
    stream: StreamStatus | None = Field(default=None, description="Stream inference: shares and hand-overs.")
    graph: GraphStatus | None = Field(default=None, description="spec.online.graph: where each member stands.")
