"""User verbs, applied at the start of a tick. A verb that makes no sense in the current state changes nothing
and says why in a Warning event, so the user learns it from `kubectl describe`."""

from __future__ import annotations

from collections.abc import Callable

from modelrollout.rollout import gates
from modelrollout.rollout.lifecycle import enter_promoting, next_step, rollback, undo
from modelrollout.rollout.verbs import Verb, VerbName
from modelrollout.rollout.work import Work, label


def _ignored(w: Work, verb: Verb, why: str) -> None:
    w.event("Warning", "VerbIgnored", f"{verb.name}: {why}")


def _not_running(w: Work, verb: Verb) -> None:
    held = w.status.held
    if held is not None:
        _ignored(w, verb, f"the rollout of {label(held)} was stopped; use retry to roll it out again")
    else:
        _ignored(w, verb, "no rollout in progress")


def _promote(w: Work, verb: Verb) -> None:
    if w.status.phase == "Promoting":
        _ignored(w, verb, f"{label(w.canary)} is already being promoted")
        return
    w.unpause()
    if verb.full:
        enter_promoting(w, "promote --full by a user")
        return
    if gates.skip(w, "a user (promote)"):
        return
    index = w.status.current_step or 0
    step = w.step()
    w.event("Normal", "Promote", f"step {index} ({step.describe() if step else 'none'}) skipped by a user")
    next_step(w)


def _pause(w: Work, verb: Verb) -> None:
    if w.status.phase == "Promoting":
        _ignored(w, verb, "promotion has started and cannot pause; abort to return to stable")
    elif w.status.pause_reason != "User":
        w.pause("User", "paused by a user; resume to continue")


def _resume(w: Work, verb: Verb) -> None:
    reason = w.status.pause_reason
    if reason == "PauseStep":
        _ignored(w, verb, "the rollout waits at a pause step; promote moves past it")
    elif reason is None:
        _ignored(w, verb, "the rollout is not paused")
    else:
        w.unpause()
        if w.status.analysis.next_run_at is not None:
            w.status.analysis.next_run_at = w.after(w.plan.interval_s)
        w.event("Normal", "Resumed", f"resumed by a user (was paused: {reason})")


def _retry(w: Work, verb: Verb) -> None:
    held = w.status.held
    if w.in_rollout or held is None:
        _ignored(w, verb, "nothing to retry: only an aborted or rolled back rollout can be retried")
        return
    w.event("Normal", "Retry", f"retrying the rollout of {label(held)}")
    w.status.held = None  # follow_target starts it in this tick


def _undo(w: Work, verb: Verb) -> None:
    if w.in_rollout:
        message = f"undone by a user: {label(w.canary)} rolled back"
        rollback(w, phase="RolledBack", outcome="RolledBack", reason="Undone", message=message)
    else:
        undo(w)


def _abort(w: Work, verb: Verb) -> None:
    message = f"aborted by a user: {label(w.canary)} stopped"
    rollback(w, phase="Degraded", outcome="Aborted", reason="Aborted", message=message)


def _run(w: Work, verb: Verb) -> None:
    # The online engine never schedules runs; a spec with batch gets `run` from its batch mode before this.
    _ignored(w, verb, "run starts a batch run, and this ModelDeployment declares no spec.batch")


_ANY_STATE: dict[VerbName, Callable[[Work, Verb], None]] = {"retry": _retry, "undo": _undo, "run": _run}
_IN_ROLLOUT: dict[VerbName, Callable[[Work, Verb], None]] = {
    "abort": _abort,
    "promote": _promote,
    "pause": _pause,
    "resume": _resume,
}


def apply_verb(w: Work, verb: Verb) -> None:
    s = w.status
    if verb.id is not None:
        if verb.id == s.last_verb_id:
            return  # already applied; the annotation was not cleared yet
        s.last_verb_id = verb.id
    if verb.name in _ANY_STATE:
        _ANY_STATE[verb.name](w, verb)
    elif not w.in_rollout:
        _not_running(w, verb)
    else:
        _IN_ROLLOUT[verb.name](w, verb)
