"""The gates of `spec.rollout.gates`: confirmRollout and preRollout before the first step, confirmPromotion after the
last. A gate holds the rollout where it is (no pods for the candidate before confirmRollout, no traffic before
preRollout, no promotion before confirmPromotion) until it says yes; the webhook's answers and the hook Job's end
come in as tick inputs (`GateAnswer`, `HookRun`), so the engine stays pure and a restarted operator resumes at the
same gate from status."""

from __future__ import annotations

from datetime import datetime, timedelta

from modelrollout.api.base import duration_seconds
from modelrollout.api.gates import ConfirmGate, GateName
from modelrollout.api.status import GateStatus
from modelrollout.rollout.actions import GateAnswer, HookRun, RequestConfirmation, RunHook
from modelrollout.rollout.lifecycle import rollback
from modelrollout.rollout.work import Work, label

BEFORE_STEPS: tuple[GateName, ...] = ("confirmRollout", "preRollout")
BEFORE_PROMOTION: tuple[GateName, ...] = ("confirmPromotion",)
_ANSWER_CHARS = 512


def hook_job_key(w: Work) -> str:
    """What names this rollout's hook Job (the planner prefixes the ModelDeployment's name): the candidate and when
    its rollout started, so a retried rollout runs a Job of its own instead of finding the failed one."""
    started = w.status.rollout_started_at or w.now
    return f"{w.canary.revision}-{_base36(int(started.timestamp()))}"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def passed(w: Work, names: tuple[GateName, ...]) -> bool:
    """Whether every gate of `names` is passed; the first one not yet passed is worked on (and may pass now)."""
    while (name := w.pending_gate(names)) is not None:
        if not _at(w, name) or not w.in_rollout:
            return False
    return True


def _reach(w: Work, name: GateName) -> GateStatus:
    gate = w.status.gate
    if gate is None or gate.name != name:
        gate = w.status.gate = GateStatus(name=name, since=w.now)
        w.event("Normal", "GateWaiting", f"{label(w.canary)} waits at gate {name}")
    return gate


def _pass(w: Work, name: GateName, why: str) -> None:
    w.status.gate = None
    w.status.gates_passed = [*w.status.gates_passed, name]
    w.event("Normal", "GatePassed", f"gate {name} passed for {label(w.canary)}: {why}")


def _at(w: Work, name: GateName) -> bool:
    gate = _reach(w, name)
    if name == "preRollout":
        return _hook(w, gate, w.hook)
    confirm = w.spec.rollout.gates.confirm(name) if w.spec.rollout.gates else None
    assert confirm is not None  # pending_gate only returns configured gates
    return _confirm(w, gate, confirm, w.answer)


def _confirm(w: Work, gate: GateStatus, confirm: ConfirmGate, answer: GateAnswer | None) -> bool:
    name = gate.name
    if answer is not None and answer.gate == name and answer.revision == w.canary.revision:
        if answer.ok:
            _pass(w, name, f"the webhook said yes ({answer.detail})" if answer.detail else "the webhook said yes")
            return True
        gate.checks += 1
        gate.answer = answer.detail[:_ANSWER_CHARS]
        gate.next_check_at = w.after(duration_seconds(confirm.interval))
    deadline = timeout_at(gate, confirm)
    if deadline is not None and w.now >= deadline:
        waited = f"no yes from the {name} webhook within {confirm.wait_up_to} (last answer: {gate.answer or 'none'})"
        if confirm.on_timeout == "proceed":
            _pass(w, name, f"{waited}; onTimeout: proceed")
            return True
        message = f"{waited}; onTimeout: abort: {label(w.canary)} rolled back"
        rollback(w, phase="RolledBack", outcome="Aborted", reason="GateTimedOut", message=message)
        return False
    if gate.next_check_at is None or gate.next_check_at <= w.now:
        w.emit(RequestConfirmation(gate=name, revision=w.canary))
    w.status.message = f"waiting at gate {name} for a yes from its webhook" + (
        f" (asked {gate.checks} times; last answer: {gate.answer})" if gate.checks else ""
    )
    return False


def timeout_at(gate: GateStatus, confirm: ConfirmGate) -> datetime | None:
    if confirm.wait_up_to is None:
        return None
    return gate.since + timedelta(seconds=duration_seconds(confirm.wait_up_to))


def _hook(w: Work, gate: GateStatus, hook: HookRun | None) -> bool:
    # One pod of the candidate is enough to smoke-test it; the first step sizes it for its traffic.
    w.ensure(w.canary, "canary", 1)
    if w.ready(w.canary) < 1:
        w.status.message = f"gate preRollout: waiting for a ready pod of {label(w.canary)} to run the hook against"
        return False
    if gate.job is None:
        gate.job = hook_job_key(w)
    ended = hook if hook is not None and hook.job == gate.job and hook.phase != "Running" else None
    if ended is not None and ended.phase == "Succeeded":
        _pass(w, "preRollout", "the hook Job succeeded")
        return True
    if ended is not None:
        why = ended.message or "no reason given"
        message = f"the preRollout hook Job failed ({why}): {label(w.canary)} rolled back"
        rollback(w, phase="RolledBack", outcome="RolledBack", reason="PreRolloutFailed", message=message)
        return False
    w.emit(RunHook(job=gate.job, revision=w.canary))
    gate.answer = (hook.message if hook is not None and hook.job == gate.job else "") or "running"
    w.status.message = f"gate preRollout: the hook Job for {label(w.canary)} is running"
    return False


def next_wake(w: Work) -> list[datetime]:
    """When time alone moves a waiting confirm gate on: its next question, and its waitUpTo."""
    gate, gates = w.status.gate, w.spec.rollout.gates
    if gate is None or gates is None or not w.in_rollout:
        return []
    confirm = gates.confirm(gate.name)
    if confirm is None:
        return []
    return [t for t in (gate.next_check_at, timeout_at(gate, confirm)) if t is not None]


def skip(w: Work, by: str) -> bool:
    """A user's promote passes the gate the rollout waits at (a human said yes). False when it waits at none."""
    gate = w.status.gate
    if gate is None:
        return False
    _pass(w, gate.name, f"passed by {by}")
    return True
