"""PURE rendering of ModelDeployments for the terminal: no I/O, the clock passed in, so every view is unit-tested.

`render_status` is the `kubectl modelrollout status` view, `render_list` the `list` table. Colour carries no
information that the words do not: a phase is also spelled out, a step's state also has a marker, so the text
read from a pipe (no colours) says the same as the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from modelrollout.analysis import ab_test
from modelrollout.api.resource import ModelDeployment
from modelrollout.api.rollout import AbTestSettings
from modelrollout.api.status import (
    AbTestResult,
    AnalysisRun,
    AnalysisStatus,
    GateStatus,
    ModelDeploymentStatus,
    RevisionRef,
    Weights,
)
from modelrollout.rollout.plan import AnalysisStep, PauseStep, Plan, ShadowStep, Step, WindowStep, build_plan

PHASE_STYLES: Mapping[str, str] = {
    "Pending": "dim",
    "Progressing": "bold cyan",
    "Paused": "bold yellow",
    "Promoting": "bold blue",
    "Healthy": "bold green",
    "Degraded": "bold red",
    "RolledBack": "bold magenta",
    "Failed": "bold red",
}
VERDICT_STYLES: Mapping[str, str] = {
    "Successful": "green",
    "Failed": "bold red",
    "Inconclusive": "yellow",
    "Error": "red",
}
OUTCOME_STYLES: Mapping[str, str] = {
    "Promoted": "green",
    "RolledBack": "magenta",
    "Aborted": "yellow",
    "Superseded": "dim",
    "Failed": "red",
    "Undecided": "yellow",
}
PAUSE_HINTS: Mapping[str, str] = {
    "PauseStep": "waiting at a pause step; promote goes on",
    "User": "paused by a user; resume continues",
    "Inconclusive": "analysis could not decide; resume, promote or abort",
    "AnalysisMisconfigured": "the analysis cannot run as configured; fix the spec, promote or abort",
}
BAR_WIDTH = 40
RECENT_RUNS = 3
RECENT_EVENTS = 5
NONE = "-"


@dataclass(frozen=True, slots=True)
class EventInfo:
    """A core/v1 Event about the ModelDeployment, reduced to what the status view shows."""

    type: str  # Normal | Warning
    reason: str
    message: str
    at: datetime | None
    count: int = 1


# --- small formatters ----------------------------------------------------------------------------------------------


def age(seconds: float) -> str:
    """kubectl-style age: 45s, 3m20s, 2h5m, 3d4h."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s % 60 and s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60}m" if (s % 3600) // 60 else f"{s // 3600}h"
    return f"{s // 86400}d{(s % 86400) // 3600}h" if (s % 86400) // 3600 else f"{s // 86400}d"


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def when(at: datetime | None, now: datetime) -> str:
    """`2026-11-23 12:00:30Z (2m ago)`; `in 20s` for the future."""
    if at is None:
        return NONE
    at = _utc(at)
    delta = (now - at).total_seconds()
    relative = f"{age(delta)} ago" if delta >= 0 else f"in {age(-delta)}"
    return f"{at:%Y-%m-%d %H:%M:%S}Z ({relative})"


def stamp(at: datetime | None) -> str:
    return NONE if at is None else f"{_utc(at):%Y-%m-%d %H:%M:%S}Z"


def number(value: float | None) -> str:
    return NONE if value is None else f"{value:.4g}"


def revision(ref: RevisionRef | None) -> str:
    return NONE if ref is None else f"{ref.revision} (version {ref.version})"


def phase_text(phase: str) -> Text:
    return Text(phase, style=PHASE_STYLES.get(phase, ""))


def verdict_text(verdict: str) -> Text:
    return Text(verdict, style=VERDICT_STYLES.get(verdict, ""))


def weights_bar(weights: Weights, width: int = BAR_WIDTH) -> Text:
    """`stable 90% ████████████████████████████████████░░░░ canary 10%` (+ `mirror 100%` when mirroring)."""
    canary_cells = round(width * weights.canary / 100)
    if weights.canary and not canary_cells:
        canary_cells = 1  # 1% still shows
    bar = Text(f"stable {weights.stable}% ")
    bar.append("█" * (width - canary_cells), style="green")
    bar.append("░" * canary_cells, style="cyan")
    bar.append(f" canary {weights.canary}%")
    if weights.mirror:
        bar.append(f"   mirror {weights.mirror}% (copies to the canary; answers from stable)", style="cyan")
    return bar


def _heading(title: str, detail: str = "") -> Text:
    text = Text(title, style="bold underline")
    if detail:
        text.append(f"  {detail}", style="dim")
    return text


def _section(title: str, detail: str, *body: RenderableType) -> Group:
    return Group(_heading(title, detail), Padding(Group(*body), (0, 0, 0, 2), expand=False))


def _fields(rows: Iterable[tuple[str, RenderableType | str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def _table(*columns: str) -> Table:
    """A plain table whose last column (a message) wraps and whose others never do."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, column in enumerate(columns):
        last = i == len(columns) - 1
        table.add_column(column, no_wrap=not last, overflow="fold" if last else "ellipsis", ratio=1 if last else None)
    return table


# --- status --------------------------------------------------------------------------------------------------------


def _plan(md: ModelDeployment) -> Plan | str:
    try:
        return build_plan(md.spec.rollout)
    except ValueError as exc:  # a spec the CRD admitted but the planner rejects: say so, render the rest
        return f"cannot plan the rollout: {exc}"


def pause_words(status: ModelDeploymentStatus) -> str:
    reason = status.pause_reason
    if reason is None:
        return "paused"
    return f"paused: {reason} ({PAUSE_HINTS[reason]})" if reason in PAUSE_HINTS else f"paused: {reason}"


def gate_words(gate: GateStatus, now: datetime) -> Text:
    """`waiting at confirmPromotion for 3m10s; asked 6 times; last answer: 403: not yet; next ask in 20s`."""
    waited = age(max(0.0, (now - _utc(gate.since)).total_seconds()))
    text = Text(f"waiting at {gate.name} for {waited}", style="bold yellow")
    if gate.job is not None:
        text.append(f"; hook Job {gate.job}", style="yellow")
    if gate.checks:
        text.append(f"; asked {gate.checks} times", style="yellow")
    if gate.answer:
        text.append(f"; last answer: {gate.answer}", style="yellow")
    if gate.next_check_at is not None:
        left = age(max(0.0, (_utc(gate.next_check_at) - now).total_seconds()))
        text.append(f"; next ask in {left}", style="yellow")
    return text


def _step_state(index: int, status: ModelDeploymentStatus) -> tuple[str, str, str]:
    """(marker, word, style) of step `index` in the rollout `status` describes."""
    current = status.current_step or 0
    if status.phase == "Promoting" or index < current:
        return "✓", "done", "green"
    if index > current:
        return " ", "", "dim"
    if status.paused:
        return "‖", f"paused ({status.pause_reason})" if status.pause_reason else "paused", "bold yellow"
    return "▶", "current", "bold cyan"


def _step_timing(step: Step, status: ModelDeploymentStatus, now: datetime) -> str:
    started = status.step_started_at
    if started is None:
        return ""
    elapsed = (now - _utc(started)).total_seconds()
    seconds = step.seconds if isinstance(step, PauseStep | AnalysisStep | WindowStep | ShadowStep) else None
    if seconds is not None:
        left = seconds - elapsed
        return f"started {age(elapsed)} ago, {age(left)} left" if left > 0 else f"started {age(elapsed)} ago, due"
    return f"started {age(elapsed)} ago"


def _steps(md: ModelDeployment, status: ModelDeploymentStatus, plan: Plan | str, now: datetime) -> RenderableType:
    strategy = md.spec.rollout.strategy
    if isinstance(plan, str):
        return _section("Steps", strategy, Text(plan, style="red"))
    total = len(plan.steps)
    in_rollout = status.canary is not None
    if not in_rollout:
        detail = f"{strategy}, {total} step{'s' * (total != 1)}; no rollout in progress"
    elif status.phase == "Promoting":
        detail = f"{strategy}: all {total} steps done, promoting"
    else:
        current = status.current_step or 0
        detail = f"{strategy}: at step {current} ({current} of {total} done)"
    if not plan.steps:
        note = "no steps: the candidate replaces stable as soon as it is available"
        return _section("Steps", detail, Text(note, style="dim"))
    table = Table.grid(padding=(0, 1))
    for _ in range(4):
        table.add_column()
    for i, step in enumerate(plan.steps):
        if not in_rollout:
            table.add_row(" ", str(i), step.describe(), "")
            continue
        marker, word, style = _step_state(i, status)
        extra = word
        if i == (status.current_step or 0) and status.phase != "Promoting":
            timing = _step_timing(step, status, now)
            extra = f"{word}; {timing}" if timing else word
        table.add_row(Text(marker, style=style), str(i), Text(step.describe(), style=style), Text(extra))
    last = "promotion (in progress)" if status.phase == "Promoting" else "promotion"
    table.add_row(" ", "", Text(f"then {last}", style="dim"), "")
    return _section("Steps", detail, table)


def _run_table(run: AnalysisRun, now: datetime) -> Table:
    where = f"{run.kind} run" if run.kind else "Run"
    if run.step is not None:
        where += f" (step {run.step})"
    title = Text(f"{where} at {when(run.at, now)}: ")
    title.append_text(verdict_text(run.verdict))
    table = _table("metric", "verdict", "value", "stable", "message")
    for m in run.metrics:
        table.add_row(m.name, verdict_text(m.verdict), number(m.value), number(m.stable_value), m.message or "")
    outer = Table.grid()
    outer.add_row(title)
    if run.metrics:
        outer.add_row(table)
    return outer


def _analysis(analysis: AnalysisStatus, now: datetime, runs: int) -> RenderableType | None:
    if not analysis.runs and not (analysis.failures or analysis.consecutive_inconclusive or analysis.next_run_at):
        return None
    counters = (
        f"failures {analysis.failures}, consecutive failures {analysis.consecutive_failures}, "
        f"consecutive inconclusive {analysis.consecutive_inconclusive}"
    )
    nxt = f"next run {when(analysis.next_run_at, now)}" if analysis.next_run_at else "no run scheduled"
    parts: list[RenderableType] = [Text(f"{counters}; {nxt}")]
    shown = analysis.runs[-runs:] if runs > 0 else []
    if len(analysis.runs) > len(shown):
        parts.append(Text(f"latest {len(shown)} of {len(analysis.runs)} runs, newest last", style="dim"))
    parts += [_run_table(run, now) for run in shown]
    return _section("Analysis", f"{len(analysis.runs)} run(s) recorded", *parts)


def _replicas(status: ModelDeploymentStatus) -> str:
    if not status.replicas:
        return NONE
    order = {"stable": 0, "canary": 1}
    roles = sorted(status.replicas.items(), key=lambda item: (order.get(item[0], 2), item[0]))
    return ", ".join(f"{role} {c.ready}/{c.desired} ready" for role, c in roles)


def _conditions(status: ModelDeploymentStatus, now: datetime) -> RenderableType | None:
    if not status.conditions:
        return None
    table = _table("type", "status", "reason", "since", "message")
    for c in status.conditions:
        style = "green" if c.status == "True" else ("dim" if c.status == "Unknown" else "")
        since = age((now - _utc(c.last_transition_time)).total_seconds())
        table.add_row(c.type, Text(c.status, style=style), c.reason, since, c.message)
    return _section("Conditions", "", table)


RUN_STYLES = {"Succeeded": "green", "Failed": "red", "Running": "cyan", "Passed": "green"}


def _batch_runs(status: ModelDeploymentStatus, limit: int) -> RenderableType | None:
    """The latest batch runs: which data, which version, how many records, and a candidate's verdict."""
    batch = status.batch
    if batch is None or not batch.runs or limit <= 0:
        return None
    table = _table("job", "role", "v", "data of", "phase", "records", "says")
    for run in reversed(batch.runs[-limit:]):  # newest first
        counts = run.counts
        records = NONE if counts is None else f"{counts.scored}/{counts.read}" + (
            f", {counts.rejected} rej" if counts.rejected else "")  # fmt: skip
        data_of = run.scheduled_time.strftime("%Y-%m-%d %H:%M") if run.scheduled_time else NONE
        says = Text()
        if run.gate is not None:
            says.append(f"{run.gate}: ", style=RUN_STYLES.get(run.gate, "red"))
        failed = f"{run.reason}: {run.message}" if run.phase == "Failed" else None
        says.append(run.gate_message or failed or run.manifest or "")
        if run.duration_seconds is not None:
            says.append(f" ({age(run.duration_seconds)})", style="dim")
        table.add_row(run.job, run.role, run.version, data_of, Text(run.phase, style=RUN_STYLES.get(run.phase, "")),
                      records, says)  # fmt: skip
    detail = f"newest first; {batch.passed_runs} candidate run(s) passed" if status.canary else "newest first"
    return _section("Batch runs", detail, table)


def _history(status: ModelDeploymentStatus) -> RenderableType | None:
    if not status.history:
        return None
    table = _table("revision", "version", "outcome", "started", "finished", "message")
    for h in reversed(status.history):  # newest first, like `kubectl rollout history` reads best
        outcome = Text(h.outcome, style=OUTCOME_STYLES.get(h.outcome, ""))
        table.add_row(h.revision, h.version, outcome, stamp(h.started_at), stamp(h.finished_at), h.message or "")
    return _section("History", "newest first", table)


def _events(events: Sequence[EventInfo], now: datetime, limit: int) -> RenderableType | None:
    if not events or limit <= 0:
        return None
    table = _table("age", "type", "reason", "message")
    ordered = sorted(events, key=lambda e: e.at or datetime.min.replace(tzinfo=UTC))[-limit:]
    for e in ordered:
        seen = age((now - _utc(e.at)).total_seconds()) if e.at else NONE
        count = f" (x{e.count})" if e.count > 1 else ""
        style = "yellow" if e.type == "Warning" else ""
        table.add_row(seen, Text(e.type, style=style), e.reason, e.message + count)
    return _section("Events", f"latest {len(ordered)}", table)


def _summary(md: ModelDeployment, status: ModelDeploymentStatus, now: datetime) -> Table:
    phase = phase_text(status.phase)
    if status.paused:
        phase.append(f"  {pause_words(status)}", style="yellow")
    rows: list[tuple[str, RenderableType | str]] = [
        ("Phase", phase),
        ("Message", status.message or NONE),
        ("Stable", revision(status.stable)),
        ("Canary", revision(status.canary)),
    ]
    if status.held is not None:
        rows.append(("Held", f"{revision(status.held)}: not rolled out again until the spec changes or retry"))
    if status.gate is not None:
        rows.append(("Gate", gate_words(status.gate, now)))
    elif status.gates_passed:
        rows.append(("Gates passed", ", ".join(status.gates_passed)))
    rows.append(("Weights", weights_bar(status.weights)))
    rows.append(("Replicas", _replicas(status)))
    if status.rollout_started_at is not None:
        rows.append(("Rollout started", when(status.rollout_started_at, now)))
    if status.ab_test is not None:
        rows.append(("A/B test", _ab_test(status.ab_test, md.spec.rollout.ab_test)))
    for sd in status.scale_downs:
        rows.append(("Scale-down", f"revision {sd.revision} {when(sd.at, now)}"))
    generation = md.metadata.generation
    if generation is not None and status.observed_generation not in (None, generation):
        rows.append(("Generation", f"{generation}, operator has seen {status.observed_generation} (catching up)"))
    rows.append(("Last verb", status.last_verb_id or NONE))
    return _fields(rows)


def _ab_test(ab: AbTestResult, settings: AbTestSettings | None) -> str:
    state = f"winner {ab.winner}" if ab.winner else "running"
    return f"{state}, {ab_test.describe(ab, settings)}" if settings else state


def render_status(
    md: ModelDeployment,
    events: Sequence[EventInfo] = (),
    *,
    now: datetime | None = None,
    runs: int = RECENT_RUNS,
    recent_events: int = RECENT_EVENTS,
) -> RenderableType:
    """Everything `kubectl modelrollout status` shows about one ModelDeployment."""
    now = now or datetime.now(UTC)
    status = md.status or ModelDeploymentStatus()
    title = Text(md.metadata.name or "?", style="bold")
    modes = status.modes or ",".join(md.spec.modes)
    title.append(
        f"  namespace {md.metadata.namespace or NONE}, model {md.spec.model.name} version {md.spec.model.version}, "
        f"{modes}, strategy {md.spec.rollout.strategy}",
        style="dim",
    )
    parts: list[RenderableType | None] = [title, _summary(md, status, now)]
    if md.status is None:
        parts.append(Text("no status yet: the operator has not seen this ModelDeployment", style="yellow"))
    parts.append(Text(""))
    parts.append(_steps(md, status, _plan(md), now))
    for section in (
        _analysis(status.analysis, now, runs),
        _batch_runs(status, runs),
        _conditions(status, now),
        _history(status),
        _events(events, now, recent_events),
    ):
        if section is not None:
            parts += [Text(""), section]
    return Group(*(p for p in parts if p is not None))


# --- list ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListRow:
    namespace: str
    name: str
    modes: str
    strategy: str
    stable: str
    canary: str
    weight: str
    phase: str
    created: datetime | None


def _created(raw: Mapping[str, Any]) -> datetime | None:
    value = raw.get("metadata", {}).get("creationTimestamp")
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def list_row(raw: Mapping[str, Any]) -> ListRow:
    """One row of `list` from an object as the API server returns it; an object our models reject still gets a
    row (phase `Invalid`), so one bad object never hides the others."""
    meta = raw.get("metadata", {})
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", "?"))
    try:
        md = ModelDeployment.model_validate(raw)
    except ValidationError:
        strategy = str(raw.get("spec", {}).get("rollout", {}).get("strategy", NONE))
        return ListRow(namespace, name, NONE, strategy, NONE, NONE, NONE, "Invalid", _created(raw))
    status = md.status or ModelDeploymentStatus()
    weight = str(status.weights.canary)
    if status.weights.mirror:
        weight += f" (mirror {status.weights.mirror})"
    return ListRow(
        namespace=namespace,
        name=name,
        modes=status.modes or ",".join(md.spec.modes),
        strategy=md.spec.rollout.strategy,
        stable=status.stable.version if status.stable else "",
        canary=status.canary.version if status.canary else "",
        weight=weight,
        phase=status.phase + (" (paused)" if status.paused and status.phase != "Paused" else ""),
        created=_created(raw),
    )


def render_list(rows: Sequence[ListRow], *, all_namespaces: bool, now: datetime | None = None) -> RenderableType:
    """The `list` table: the same columns as `kubectl get mdep`, phase coloured."""
    now = now or datetime.now(UTC)
    columns = ["NAME", "MODES", "STRATEGY", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
    if all_namespaces:
        columns.insert(0, "NAMESPACE")
    table = Table(*columns, box=None, pad_edge=False, header_style="bold", show_edge=False)
    for row in sorted(rows, key=lambda r: (r.namespace, r.name)):
        created = age((now - _utc(row.created)).total_seconds()) if row.created else NONE
        phase = Text(row.phase, style=PHASE_STYLES.get(row.phase.split(" ")[0], "red"))
        cells: list[RenderableType] = [
            row.name,
            row.modes,
            row.strategy,
            row.stable,
            row.canary,
            row.weight,
            phase,
            created,
        ]
        if all_namespaces:
            cells.insert(0, row.namespace)
        table.add_row(*cells)
    return table
