"""`tick`: one pure step of the rollout state machine. Everything it knows comes from its arguments, and
everything it decides is in the Decision, so a restarted operator resumes from status alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from modelrollout.analysis.request import AnalysisOutcome
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import ModelDeploymentStatus, RevisionRef
from modelrollout.rollout import gates
from modelrollout.rollout.actions import Action, GateAnswer, HookRun
from modelrollout.rollout.analysing import consume, pending, request_due
from modelrollout.rollout.commands import apply_verb
from modelrollout.rollout.conditions import sync_conditions
from modelrollout.rollout.lifecycle import candidate_failed, first_revision_failed, follow_target, scale_downs_due
from modelrollout.rollout.plan import PauseStep, WindowStep, build_plan
from modelrollout.rollout.resizing import follow_size
from modelrollout.rollout.steps import run_steps
from modelrollout.rollout.verbs import Verb
from modelrollout.rollout.work import Work


@dataclass(frozen=True, slots=True)
class Decision:
    """The new status, the actions to execute first (in order), and when time alone will next change
    something (a pause or window ending, an analysis or a scale-down falling due); None when only a
    readiness change, a spec change or a verb can. A `wake_at` at or before `now` means: tick again now."""

    status: ModelDeploymentStatus
    actions: tuple[Action, ...]
    wake_at: datetime | None


def _settle_phase(w: Work) -> None:
    s = w.status
    if w.in_rollout and s.phase != "Promoting":
        s.phase = "Paused" if s.paused else "Progressing"


def _wake_at(w: Work) -> datetime | None:
    times = [d.at for d in w.status.scale_downs] + [p.at for p in pending(w)]
    if not w.status.paused:
        times += gates.next_wake(w)
    step = w.step() if w.in_rollout and not w.status.paused and w.status.phase != "Promoting" else None
    if isinstance(step, PauseStep | WindowStep) and step.seconds is not None:
        times.append(w.after(step.seconds, w.status.step_started_at))
    return max(min(times), w.now) if times else None


def tick(
    status: ModelDeploymentStatus,
    spec: ModelDeploymentSpec,
    *,
    target: RevisionRef,
    metrics: AnalysisOutcome | None,
    now: datetime,
    verb: Verb | None = None,
    failure: str | None = None,
    asked: Mapping[str, int] | None = None,
    answer: GateAnswer | None = None,
    hook: HookRun | None = None,
) -> Decision:
    """Advance the rollout of `target` (the revision the spec asks for) by everything that can happen at `now`.

    `status.replicas["stable"|"canary"]` must describe the Deployments of `status.stable` / `status.canary`
    as given. `metrics` is the outcome of a RequestAnalysis from an earlier decision (ignored when stale).
    `failure` says why the candidate (`status.canary`) cannot become available, when it cannot.
    `asked` is the pods we last asked each revision to run (by revision); with it, the roles follow a change of
    the spec's size. Without it (a caller that cannot know), sizes change only at the steps.
    `answer` is a confirm gate's webhook answer to a RequestConfirmation of an earlier decision; `hook` how the
    preRollout hook Job of `status.gate.job` stands.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (status times are UTC)")
    w = Work(
        spec=spec,
        target=target,
        now=now,
        before=status,
        status=status.model_copy(deep=True),
        plan=build_plan(spec.rollout),
        answer=answer,
        hook=hook,
    )
    if verb is not None:
        apply_verb(w, verb)
    follow_target(w)
    # The failure was observed for the candidate we were given; a candidate this tick replaced has no pods yet.
    failing = failure is not None and w.before.canary is not None and w.status.canary == w.before.canary
    if failing and failure is not None:
        candidate_failed(w, failure)
    if metrics is not None and w.in_rollout:
        consume(w, metrics)
    run_steps(w)
    request_due(w)
    scale_downs_due(w)
    if asked is not None:
        follow_size(w, asked)
    _settle_phase(w)
    if failing and failure is not None and w.in_rollout and w.status.stable is None:
        first_revision_failed(w, failure)
    sync_conditions(w.status, now=now)
    return Decision(status=w.status, actions=tuple(w.actions), wake_at=_wake_at(w))
