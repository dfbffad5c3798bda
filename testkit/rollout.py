"""A stand-in for the operator around the pure rollout engine: each pass runs the production pass loop
(`planning.decide.decide_pass`, as the reconciler does) on an in-memory picture of the cluster (pods per revision,
router weights), answers RequestAnalysis with scripted verdicts, executes every action of the pass, and moves a
fake clock. Every pass is also computed from status after a round trip through its wire form, and must decide the
same: that is what a restarted operator would see."""

from __future__ import annotations

import copy
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from modelrollout.analysis import ab_test, experiment
from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import (
    AnalysisRun,
    MetricResult,
    ModelDeploymentStatus,
    ReplicaCounts,
    RevisionRef,
    Verdict,
)
from modelrollout.planning.decide import Analyse, Confirm, decide_pass
from modelrollout.planning.observe import RevisionHealth
from modelrollout.planning.reconcile import Observed, RevisionState
from modelrollout.rollout import (
    Action,
    Decision,
    EnsureRevision,
    Promote,
    RecordEvent,
    RequestAnalysis,
    ScaleDown,
    SetMirror,
    SetSticky,
    SetWeights,
    Verb,
    tick,
)
from modelrollout.rollout.actions import GateAnswer, HookPhase, HookRun, RequestConfirmation, RunHook

T = TypeVar("T")
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
V1 = RevisionRef(revision="aaaa1111", version="1")
V2 = RevisionRef(revision="bbbb2222", version="2")
V3 = RevisionRef(revision="cccc3333", version="3")

BASE_SPEC: dict[str, Any] = {
    "model": {"name": "churn", "version": "1", "uri": "s3://models/churn/1/model.joblib", "format": "sklearn"},
    "online": {"replicas": 4},
}
METRICS = [
    {"name": "p95", "builtin": "latencyP95", "max": 0.2},
    {"name": "errors", "builtin": "errorRate", "max": 0.01},
]


def make_spec(rollout: dict[str, Any] | None = None, **online: Any) -> ModelDeploymentSpec:
    body = copy.deepcopy(BASE_SPEC)
    if rollout is not None:
        body["rollout"] = rollout
    body["online"].update(online)
    return ModelDeploymentSpec.model_validate(body)


def analysis(**settings: Any) -> dict[str, Any]:
    return {"interval": "30s", "metrics": METRICS, **settings}


def run_for(request: AnalysisRequest, verdict: Verdict, at: datetime) -> AnalysisOutcome:
    metrics = [MetricResult(name=m.name, verdict=verdict, value=0.1, message="scripted") for m in request.metrics]
    run = AnalysisRun(at=at, verdict=verdict, kind=request.kind, step=request.step, metrics=metrics)
    return AnalysisOutcome(request=request, run=run)


Script = Callable[[AnalysisRequest], Verdict | None]


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (the pass awaits only the script's answers, which are ready at once)
    without an event loop: thousands of passes per benchmark scenario."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("the pass waited on something: Sim answers every await at once")


# An A/B evaluation's counts (stable, canary) for a request at a time; a string: the measurement failed so;
# None: leave it unanswered.
Counts = Callable[[AnalysisRequest, datetime], tuple[ab_test.Arm, ab_test.Arm] | str | None]


def always(verdict: Verdict) -> Script:
    return lambda _request: verdict


@dataclass
class Sim:
    """The operator's pass loop around `tick`, with a cluster where pods become ready when asked (unless
    `auto_ready` is off) and analysis verdicts come from `script` (None: no verdict yet). `decide` is one bare
    tick with a given outcome, for tests of the engine's own handling of outcomes."""

    spec: ModelDeploymentSpec
    target: RevisionRef = field(default_factory=lambda: V2)
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    now: datetime = T0
    script: Script = field(default=always("Successful"))
    auto_ready: bool = True
    pods: dict[str, int] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)  # pods asked per revision, ready or not
    weights: tuple[int, int] = (100, 0)
    mirror: int = 0
    sticky: Any = None
    counts: Counts | None = None  # answers Experiment requests (A/B tests)
    stable_role: str | None = None
    decisions: list[Decision] = field(default_factory=list)
    requests: list[AnalysisRequest] = field(default_factory=list)
    scaled_down: list[str] = field(default_factory=list)
    observed_pods: dict[str, int] = field(default_factory=dict)  # as the last decision saw them
    failure: str | None = None  # why the candidate's pods cannot become ready, as the handler observes it
    # Confirm gates: what each gate's webhook answers (True: a 2xx); every question asked, in order.
    gate_says: dict[str, bool] = field(default_factory=dict)
    confirmations: list[RequestConfirmation] = field(default_factory=list)
    # The preRollout hook: how a Job the engine asked for stands (None: still running); every Job asked for.
    hook_ends: HookPhase | None = None
    hook_jobs: list[str] = field(default_factory=list)

    @classmethod
    def serving(cls, spec: ModelDeploymentSpec, stable: RevisionRef = V1, **kwargs: Any) -> Sim:
        """A ModelDeployment whose `stable` already serves, healthy, and whose spec now asks for V2."""
        target = kwargs.pop("target", V2)
        sim = cls(spec=spec, target=stable, **kwargs)
        auto_ready, sim.auto_ready = sim.auto_ready, True
        sim.tick()
        sim.tick()  # the pods asked for in the first tick are ready in the second
        sim.auto_ready = auto_ready
        if sim.status.stable != stable:
            raise AssertionError(f"the first revision did not become stable: {sim.status}")
        sim.target = target
        sim.decisions.clear()
        return sim

    # --- the loop -----------------------------------------------------------------------------------------

    def observed(self, pods: dict[str, int] | None = None) -> ModelDeploymentStatus:
        """Status as the handler hands it to tick: replicas per role from the pods (the current ones by default)."""
        pods = self.pods if pods is None else pods
        replicas = {
            role: ReplicaCounts(desired=pods.get(ref.revision, 0), ready=pods.get(ref.revision, 0))
            for role, ref in (("stable", self.status.stable), ("canary", self.status.canary))
            if ref is not None
        }
        return self.status.model_copy(update={"replicas": replicas})

    def decide(self, verb: Verb | None, metrics: AnalysisOutcome | None) -> Decision:
        observed = self.observed()
        self.observed_pods = dict(self.pods)
        inputs: dict[str, Any] = {
            "target": self.target,
            "metrics": metrics,
            "now": self.now,
            "verb": verb,
            "asked": dict(self.asked),
        }
        decision = tick(observed, self.spec, failure=self.failure, **inputs)
        restarted = ModelDeploymentStatus.model_validate(observed.to_wire())
        again = tick(restarted, self.spec, failure=self.failure, **inputs)
        assert again.actions == decision.actions, "a restarted operator would act differently"
        assert again.status.to_wire() == decision.status.to_wire(), "a restarted operator would record differently"
        assert again.wake_at == decision.wake_at
        return decision

    def _execute(self, decision: Decision) -> None:
        for action in decision.actions:
            match action:
                case EnsureRevision(revision=ref, replicas=n):
                    self.asked[ref.revision] = n
                    if self.auto_ready:
                        self.pods[ref.revision] = n
                case SetWeights(stable=s, canary=c):
                    self.weights = (s, c)
                case SetMirror(percent=p):
                    self.mirror = p
                case SetSticky(by=by):
                    self.sticky = by
                case Promote(revision=ref):
                    self.stable_role = ref.revision
                case ScaleDown(revision=rev):
                    self.pods[rev] = self.asked[rev] = 0
                    self.scaled_down.append(rev)
                case RunHook(job=job):
                    if job not in self.hook_jobs:
                        self.hook_jobs.append(job)
                case RecordEvent() | RequestAnalysis() | RequestConfirmation():
                    pass
        self.status = decision.status
        self.decisions.append(decision)

    def tick(self, verb: Verb | str | None = None) -> Decision:
        """One operator pass, through the production loop (`planning.decide.decide_pass`): tick, have each
        requested analysis answered by the script, tick again; then execute every action of the pass. The pass is
        also run from status after a round trip through its wire form, and must decide the same: that is what a
        restarted operator would see."""
        if isinstance(verb, str):
            verb = Verb(name=verb)  # type: ignore[arg-type]
        observed = self._observed()
        self.observed_pods = dict(self.pods)
        answered: list[AnalysisOutcome | None] = []
        said: list[GateAnswer] = []

        async def analyse(request: AnalysisRequest) -> AnalysisOutcome | None:
            self.requests.append(request)
            answered.append(self._answer(request))
            return answered[-1]

        async def confirm(request: RequestConfirmation) -> GateAnswer:
            self.confirmations.append(request)
            ok = self.gate_says.get(request.gate, False)
            said.append(GateAnswer(request.gate, request.revision.revision, ok, "200: yes" if ok else "403: not yet"))
            return said[-1]

        decision, actions = _run(self._pass(self.status, observed, verb, analyse, confirm))
        replayed, resaid = iter(answered), iter(said)

        async def again(_request: AnalysisRequest) -> AnalysisOutcome | None:
            return next(replayed)

        async def confirm_again(_request: RequestConfirmation) -> GateAnswer:
            return next(resaid)

        restarted = ModelDeploymentStatus.model_validate(self.status.to_wire())
        redo, redo_actions = _run(self._pass(restarted, observed, verb, again, confirm_again))
        assert redo_actions == actions, "a restarted operator would act differently"
        assert redo.status.to_wire() == decision.status.to_wire(), "a restarted operator would record differently"
        assert redo.wake_at == decision.wake_at
        whole = Decision(status=decision.status, actions=tuple(actions), wake_at=decision.wake_at)
        self._execute(whole)
        return whole

    async def _pass(
        self, status: ModelDeploymentStatus, observed: Observed, verb: Verb | None, analyse: Analyse, confirm: Confirm
    ) -> tuple[Decision, list[Action]]:
        return await decide_pass(
            self.spec,
            status,
            observed=observed,
            target=self.target,
            verb=verb,
            now=self.now,
            analyse=analyse,
            confirm=confirm,
        )

    def _observed(self) -> Observed:
        """The cluster as the reconciler observes it: each revision's Deployment (pods asked for, pods ready) and,
        for the candidate, why its pods cannot become ready."""
        canary = self.status.canary.revision if self.status.canary else None
        revisions = {}
        for revision, asked in self.asked.items():
            ready = self.pods.get(revision, 0)
            failure = self.failure if revision == canary else None
            health = RevisionHealth(
                revision, desired=asked, ready=ready, available=failure is None and ready >= asked, failure=failure
            )
            revisions[revision] = RevisionState(health=health, replicas=asked, deployment={})
        hooks = {job: HookRun(job, self.hook_ends or "Running") for job in self.hook_jobs}
        return Observed(revisions=revisions, hooks=hooks)

    def _answer(self, request: AnalysisRequest) -> AnalysisOutcome | None:
        if request.kind == "Experiment":
            counts = self.counts(request, self.now) if self.counts is not None else None
            if isinstance(counts, str):
                return experiment.error_outcome(request, self.now, counts)
            return None if counts is None else experiment.judge(request, self.now, *counts)
        verdict = self.script(request)
        return None if verdict is None else run_for(request, verdict, self.now)

    def wait(self, seconds: float) -> Decision:
        self.now += timedelta(seconds=seconds)
        return self.tick()

    def run(self, *, until: Callable[[Sim], bool], step_s: float = 10, limit: int = 500) -> None:
        for _ in range(limit):
            if until(self):
                return
            self.wait(step_s)
        raise AssertionError(f"not reached within {limit} ticks: {self.status.phase} {self.status.message}")

    # --- reading ------------------------------------------------------------------------------------------

    def events(self, reason: str | None = None) -> list[RecordEvent]:
        found = [a for d in self.decisions for a in d.actions if isinstance(a, RecordEvent)]
        return [e for e in found if reason is None or e.reason == reason]

    def actions(self, kind: type[Any]) -> list[Any]:
        return [a for d in self.decisions for a in d.actions if isinstance(a, kind)]

    @property
    def outcomes(self) -> list[tuple[str, str]]:
        return [(h.revision, h.outcome) for h in self.status.history]
