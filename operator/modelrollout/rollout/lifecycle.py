"""Starting, finishing and abandoning rollouts: every transition that changes which revision is the candidate."""

from __future__ import annotations

from modelrollout.analysis.evaluate import clip
from modelrollout.api.notifications import NotificationKind
from modelrollout.api.status import (
    AnalysisStatus,
    HistoryEntry,
    Outcome,
    Phase,
    RevisionRef,
    ScheduledScaleDown,
)
from modelrollout.rollout.actions import Promote, ScaleDown, SetWeights
from modelrollout.rollout.sizing import full_replicas
from modelrollout.rollout.work import PROMOTED, ROLLED_BACK, STARTED, Work, label


def _record(w: Work, ref: RevisionRef, outcome: Outcome, message: str) -> None:
    entry = HistoryEntry(
        revision=ref.revision,
        version=ref.version,
        outcome=outcome,
        started_at=w.status.rollout_started_at or w.now,
        finished_at=w.now,
        message=clip(message),
    )
    # Kept whole here: the pass trims it to the operator's one limit (settings.planning.history_limit) before writing.
    w.status.history = [*w.status.history, entry]


def _clear_rollout(w: Work) -> None:
    s = w.status
    s.canary = None
    s.gate, s.gates_passed = None, []
    s.current_step = s.step_started_at = s.rollout_started_at = None
    s.paused, s.pause_reason = False, None
    s.analysis.next_run_at = None


def _keep_running(w: Work, ref: RevisionRef) -> None:
    """A revision that serves again must not be scaled down by an old schedule."""
    w.status.scale_downs = [d for d in w.status.scale_downs if d.revision != ref.revision]


def follow_target(w: Work) -> None:
    """Reconcile the rollout with the revision the spec asks for: supersede, start, or settle."""
    s, target = w.status, w.target
    if s.held is not None and s.held.revision != target.revision:
        s.held = None  # the spec moved on from the revision we refused
    if s.held is not None and s.canary is None and s.stable is not None and s.stable.revision == s.held.revision:
        s.held = None  # it serves anyway (an undo of an undo brought it back)
    held = s.held is not None
    if s.canary is not None:
        if s.canary.revision == target.revision or held:
            return
        supersede(w)
    if held:
        return
    if s.stable is not None and s.stable.revision == target.revision:
        if s.phase != "Healthy":
            s.phase = "Healthy"
            s.message = f"serving {label(s.stable)}, the revision the spec asks for"
        return
    start(w)


def start(w: Work) -> None:
    s, target = w.status, w.target
    s.canary = target
    s.current_step, s.step_started_at, s.rollout_started_at = 0, w.now, w.now
    s.paused, s.pause_reason = False, None
    s.gate, s.gates_passed = None, []
    s.analysis = AnalysisStatus()
    s.ab_test = None
    _keep_running(w, target)
    gated = w.pending_gate(("confirmRollout", "preRollout", "confirmPromotion")) is not None
    if s.stable is None or (not w.plan.steps and not gated):
        # Nothing to compare with (first revision) or nothing to step through (direct): promote once available.
        s.phase, s.current_step = "Promoting", len(w.plan.steps)
        w.ensure(target, "canary", full_replicas(w.spec))
        what = "first revision" if s.stable is None else "strategy direct"
        w.event("Normal", "RolloutStarted", f"{what}: bringing up {label(target)}; it serves once available",
                notify=STARTED)  # fmt: skip
        return
    s.phase = "Progressing"
    w.event(
        "Normal",
        "RolloutStarted",
        f"rolling out {label(target)} with strategy {w.spec.rollout.strategy}; {label(s.stable)} keeps serving",
        notify=STARTED,
    )


def supersede(w: Work) -> None:
    old = w.canary
    if w.status.stable is not None and w.status.stable.revision == w.target.revision:
        message = f"{label(old)} was superseded: the spec asks for the stable {label(w.status.stable)} again"
    else:
        message = f"{label(old)} was superseded by {label(w.target)} before it was promoted"
    w.reset_traffic()
    w.emit(ScaleDown(revision=old.revision, reason="superseded"))
    _record(w, old, "Superseded", message)
    _clear_rollout(w)
    w.event("Normal", "Superseded", message)


def rollback(
    w: Work,
    *,
    phase: Phase,
    outcome: Outcome,
    reason: str,
    message: str,
    also_notify: frozenset[NotificationKind] = frozenset(),
) -> None:
    """Stop the rollout with stable serving everything, and hold the target so it is not rolled out again
    until the spec changes or a user says retry. `also_notify`: what else it is told as (analysisFailed, abDecided)."""
    old = w.canary
    w.reset_traffic()
    w.emit(ScaleDown(revision=old.revision, reason=reason))
    _record(w, old, outcome, message)
    _clear_rollout(w)
    w.status.held = w.target
    w.status.phase = phase
    w.event("Warning", reason, message, notify=ROLLED_BACK | also_notify)


def candidate_failed(w: Work, failure: str) -> None:
    """The candidate cannot become available (an image that does not pull, a model that does not load, the
    progress deadline passed): waiting longer only delays the bad news, so stable takes everything back now."""
    stable = w.status.stable
    if not w.in_rollout or stable is None:
        return
    message = f"{label(w.canary)} cannot become available: {failure}; {label(stable)} keeps serving"
    rollback(w, phase="Degraded", outcome="Failed", reason="RevisionFailed", message=message)


def first_revision_failed(w: Work, failure: str) -> None:
    """A first revision has nothing to fall back to: it stays Degraded (and keeps trying) until it becomes
    available or the spec changes. Said once, not on every pass."""
    message = f"{label(w.canary)} cannot become available: {failure}"
    if w.before.phase != "Degraded" or w.before.message != message:
        w.event("Warning", "RevisionFailed", message)
    w.status.phase, w.status.message = "Degraded", message


def next_step(w: Work) -> None:
    s = w.status
    s.current_step = (s.current_step or 0) + 1
    s.step_started_at = w.now
    # With confirmPromotion still to pass, the steps' loop stops at that gate before promoting.
    if s.current_step >= len(w.plan.steps) and w.pending_gate(("confirmPromotion",)) is None:
        enter_promoting(w, "all steps done")


def enter_promoting(w: Work, why: str) -> None:
    s = w.status
    s.current_step = len(w.plan.steps)
    s.step_started_at = w.now
    s.paused, s.pause_reason = False, None
    s.gate = None  # promote --full leaves any gate behind: a human decided
    s.phase = "Promoting"
    w.event("Normal", "Promoting", f"{why}: promoting {label(w.canary)} once it runs at full size")


def promote_when_ready(w: Work) -> None:
    """The last stage of every rollout: the candidate at full size, then it becomes stable."""
    s, new = w.status, w.canary
    full = full_replicas(w.spec)
    w.ensure(new, "canary", full)
    ready = w.ready(new)
    if ready < full:
        s.message = f"promoting {label(new)}: {ready} of {full} pods ready"
        return
    old = s.stable
    if s.weights.mirror:
        w.set_mirror(0)
    w.emit(Promote(revision=new, previous=old))
    # Re-sent even when unchanged: after Promote, the stable role means the new revision.
    w.emit(SetWeights(stable=100, canary=0))
    w.end_split()  # only now: every user is on the new revision, so assignment no longer matters
    s.weights = s.weights.model_copy(update={"stable": 100, "canary": 0})
    if old is not None and old.revision != new.revision:
        _schedule_scale_down(w, old)
    undo = s.held is not None and s.held.revision == w.target.revision != new.revision
    if old is None:
        message = f"{label(new)} is available and serving"
    elif undo:
        message = f"undo: {label(new)} serves again instead of {label(old)}"
    else:
        message = f"{label(new)} promoted; it replaces {label(old)}"
    _record(w, new, "Promoted", message)
    _clear_rollout(w)
    s.stable = new
    if s.held is not None and s.held.revision == new.revision:
        s.held = None
    s.phase = "RolledBack" if undo else "Healthy"
    w.event("Normal", "Promoted", message, notify=PROMOTED)


def _schedule_scale_down(w: Work, old: RevisionRef) -> None:
    delay = w.plan.scale_down_delay_s
    w.status.scale_downs = [
        *[d for d in w.status.scale_downs if d.revision != old.revision],
        ScheduledScaleDown(revision=old.revision, at=w.after(delay)),
    ]


def undo(w: Work) -> None:
    """Roll back to the revision promoted before the current stable (kept at zero replicas, so it returns
    without its spec), skipping every step: it was already proven in production."""
    s = w.status
    stable = s.stable
    previous = next(
        (h for h in reversed(s.history) if h.outcome == "Promoted" and stable and h.revision != stable.revision),
        None,
    )
    if stable is None or previous is None:
        w.event("Warning", "NothingToUndo", "undo: no earlier promoted revision in status.history")
        return
    target = RevisionRef(revision=previous.revision, version=previous.version)
    s.held = w.target
    s.canary = target
    s.current_step, s.step_started_at, s.rollout_started_at = len(w.plan.steps), w.now, w.now
    s.paused, s.pause_reason = False, None
    s.analysis = AnalysisStatus()
    s.phase = "Promoting"
    _keep_running(w, target)
    # A rollback to the earlier revision; its Promoted, once it serves, is told as promoted.
    w.event("Normal", "Undo", f"undo: bringing back {label(target)} in place of {label(stable)}", notify=ROLLED_BACK)


def scale_downs_due(w: Work) -> None:
    s = w.status
    serving = {r.revision for r in (s.stable, s.canary) if r is not None}
    due = [d for d in s.scale_downs if d.at <= w.now]
    s.scale_downs = [d for d in s.scale_downs if d.at > w.now]
    for d in due:
        if d.revision not in serving:
            w.emit(ScaleDown(revision=d.revision, reason="scaleDownDelay passed after promotion"))
