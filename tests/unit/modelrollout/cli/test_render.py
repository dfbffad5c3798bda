"""`render_status` and `render_list`, read as text the way a pipe receives them."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from typing import Any

import pytest
from rich.console import Console
from testkit.manifests import load_example
from testkit.rollout import T0, Sim, make_spec

from modelrollout.api.resource import ModelDeployment, ObjectMeta
from modelrollout.api.status import (
    AnalysisRun,
    BatchComparison,
    BatchCounts,
    BatchRun,
    BatchStatus,
    ModelDeploymentStatus,
    RevisionRef,
    Weights,
)
from modelrollout.cli.render import (
    EventInfo,
    age,
    list_row,
    render_list,
    render_status,
    weights_bar,
)
from tests.unit.modelrollout.cli import states
from tests.unit.modelrollout.cli.states import resource, text


def view(sim: Any, *, later: float = 0, **kwargs: Any) -> str:
    return text(render_status(resource(sim), now=sim.now + timedelta(seconds=later), **kwargs))


def lines_with(output: str, *words: str) -> list[str]:
    return [line for line in output.splitlines() if all(w in line for w in words)]


# --- canary ----------------------------------------------------------------------------------------------------------


def test_canary_progressing_shows_the_current_step_out_of_all_with_time_left() -> None:
    out = view(states.canary_at_timed_pause(), later=30)
    assert "churn" in out
    assert "namespace prod" in out
    assert "strategy canary" in out
    assert lines_with(out, "Phase", "Progressing")
    assert lines_with(out, "Stable", "aaaa1111 (version 1)")
    assert lines_with(out, "Canary", "bbbb2222 (version 2)")
    assert "canary: at step 1 (1 of 5 done)" in out
    # every step described by the planner, the done one ticked, the current one marked and timed
    assert lines_with(out, "✓", "0", "setWeight 10", "done")
    assert lines_with(out, "▶", "1", "pause 120s", "current", "started 30s ago", "1m30s left")
    for described in ("analysis of all metrics over 60s", "setWeight 50", "pause until promoted"):
        (line,) = lines_with(out, described)
        assert "✓" not in line
        assert "▶" not in line
    assert "then promotion" in out


def test_weights_are_a_bar_with_both_percentages() -> None:
    out = view(states.canary_at_timed_pause())
    (line,) = lines_with(out, "Weights")
    assert re.search(r"stable 90% █+░+ canary 10%", line), line
    assert "mirror" not in line


def test_replicas_per_role_desired_and_ready() -> None:
    sim = states.canary_at_timed_pause()
    md = resource(sim)
    assert md.status is not None
    md.status.replicas["canary"] = md.status.replicas["canary"].model_copy(update={"desired": 2, "ready": 1})
    out = text(render_status(md, now=sim.now))
    (line,) = lines_with(out, "Replicas")
    assert "stable 4/4 ready, canary 1/2 ready" in line


def test_paused_at_a_pause_step_says_why_and_how_to_go_on() -> None:
    out = view(states.canary_paused_at_last_step())
    (phase,) = lines_with(out, "Phase")
    assert "Paused" in phase
    assert "PauseStep" in phase
    assert "promote goes on" in phase
    assert "canary: at step 4 (4 of 5 done)" in out
    assert lines_with(out, "‖", "4", "pause until promoted", "paused (PauseStep)")
    assert len(lines_with(out, "✓", "done")) == 4


def test_paused_by_a_user_with_the_last_verb_id() -> None:
    out = view(states.canary_paused_by_user())
    (phase,) = lines_with(out, "Phase")
    assert "paused: User" in phase
    assert "resume continues" in phase
    assert lines_with(out, "‖", "1", "pause 120s", "paused (User)")
    assert lines_with(out, "Last verb", "verb-7f3a")


def test_promoting_marks_every_step_done() -> None:
    out = view(states.canary_promoting())
    assert lines_with(out, "Phase", "Promoting")
    assert "all 5 steps done, promoting" in out
    assert len(lines_with(out, "✓", "done")) == 5
    assert "then promotion (in progress)" in out
    assert lines_with(out, "Last verb", "verb-full")


def test_rolled_back_shows_the_held_revision_and_the_history() -> None:
    out = view(states.canary_rolled_back())
    assert lines_with(out, "Phase", "RolledBack")
    assert lines_with(out, "Canary", "-")
    assert lines_with(out, "Held", "bbbb2222 (version 2)", "retry")
    assert "no rollout in progress" in out
    assert re.search(r"stable 100% █+ canary 0%", out)
    # history: newest first, with outcome, both times and the reason
    history = out[out.index("History") :]
    rolled_back = history.index("RolledBack")
    promoted = history.index("Promoted")
    assert rolled_back < promoted
    assert lines_with(history, "bbbb2222", "2", "RolledBack", "2026-11-23 12:00:00Z", "2026-11-23 12:00:")
    assert lines_with(history, "aaaa1111", "1", "Promoted")
    assert "Background analysis" in history
    for header in ("revision", "version", "outcome", "started", "finished", "message"):
        assert header in history


def test_failed_analysis_metrics_with_values_stable_values_and_reasons() -> None:
    sim = states.canary_at_timed_pause()
    md = resource(sim)
    assert md.status is not None
    md = md.model_copy(update={"status": states.with_failed_run(md.status, sim.now)})
    out = text(render_status(md, now=sim.now + timedelta(seconds=10)))
    analysis = out[out.index("Analysis") :]
    assert "failures 2, consecutive failures 2, consecutive inconclusive 0" in analysis
    assert "next run 2026-11-23 12:01:00Z (in 20s)" in analysis
    assert "Step run (step 2) at 2026-11-23 12:00:30Z (10s ago): Failed" in analysis
    assert lines_with(analysis, "p95-latency", "Failed", "0.31", "0.31 > max 0.2")
    assert lines_with(analysis, "vs-stable", "Failed", "0.31", "0.12", "+158%")
    assert lines_with(analysis, "errors", "Successful", "0.002")
    assert lines_with(analysis, "custom", "Inconclusive", "no data for version 7")
    for header in ("metric", "verdict", "value", "stable", "message"):
        assert header in analysis


def test_only_the_latest_runs_are_shown() -> None:
    sim = states.canary_at_timed_pause()
    md = resource(sim)
    assert md.status is not None
    runs = [AnalysisRun(at=T0 + timedelta(seconds=i), verdict="Successful", kind="Background") for i in range(6)]
    md.status.analysis.runs = runs
    out = text(render_status(md, now=sim.now, runs=2))
    assert "latest 2 of 6 runs, newest last" in out
    assert len(lines_with(out, "Background run at")) == 2
    assert "12:00:05Z" in out
    assert "12:00:03Z" not in out


# --- other strategies -------------------------------------------------------------------------------------------------


def test_blue_green_waiting_for_promote() -> None:
    out = view(states.blue_green_waiting_for_promote())
    assert "blueGreen: at step 2 (2 of 5 done)" in out
    assert lines_with(out, "✓", "preview at full size")
    assert lines_with(out, "✓", "analysis of all metrics")
    assert lines_with(out, "‖", "pause until promoted", "paused (PauseStep)")
    assert lines_with(out, "switch all traffic")
    assert lines_with(out, "post-promotion window 300s")
    assert "Step run (step 1)" in out


def test_shadow_shows_the_mirror() -> None:
    out = view(states.shadow_comparing())
    assert "shadow: at step 1 (1 of 2 done)" in out
    assert lines_with(out, "✓", "mirror 100%")
    assert lines_with(out, "▶", "shadow comparison for 600s", "10m left")
    (weights,) = lines_with(out, "Weights")
    assert "stable 100%" in weights
    assert "mirror 100%" in weights


def test_direct_has_no_steps() -> None:
    out = view(states.direct_healthy())
    assert lines_with(out, "Phase", "Healthy")
    assert "direct, 0 steps; no rollout in progress" in out
    assert "no steps: the candidate replaces stable as soon as it is available" in out


def test_a_running_ab_test_shows_rates_effect_statistic_and_samples() -> None:
    out = view(states.ab_test_running())
    assert lines_with(out, "Phase", "Progressing")
    assert lines_with(out, "A/B test", "running", "success stable 10.00% vs canary 20.00%", "effect +10.00 points [")
    assert lines_with(out, "samples 600/600 (min 5000 each)")
    assert lines_with(out, "A/B test (twoProportion, alpha 0.05) for at most 24h", "current")
    assert lines_with(out, "split users 50/50")


# --- around the status ------------------------------------------------------------------------------------------------


def test_conditions_table() -> None:
    out = view(states.canary_rolled_back(), later=65)
    conditions = out[out.index("Conditions") : out.index("History")]
    assert lines_with(conditions, "Degraded", "True", "RolledBack", "1m")
    assert lines_with(conditions, "Progressing", "False", "RolledBack")


def test_latest_events_oldest_first_with_counts() -> None:
    sim = states.canary_at_timed_pause()
    events = [EventInfo("Normal", f"Reason{i}", f"message {i}", sim.now - timedelta(seconds=100 - i)) for i in range(7)]
    events.append(EventInfo("Warning", "VerbIgnored", "resume: the rollout is not paused", sim.now, count=2))
    out = text(render_status(resource(sim), events, now=sim.now, recent_events=3))
    section = out[out.index("Events") :]
    assert "latest 3" in section
    assert "Reason4" not in section
    assert section.index("Reason5") < section.index("Reason6") < section.index("VerbIgnored")
    assert lines_with(section, "0s", "Warning", "VerbIgnored", "resume: the rollout is not paused (x2)")


def test_no_status_yet() -> None:
    sim = states.canary_at_timed_pause()
    md = ModelDeployment(metadata=ObjectMeta(name="fresh", namespace="prod"), spec=sim.spec)
    out = text(render_status(md, now=sim.now))
    assert lines_with(out, "Phase", "Pending")
    assert "no status yet: the operator has not seen this ModelDeployment" in out
    assert "canary, 5 steps; no rollout in progress" in out


def test_a_spec_ahead_of_the_operator_is_pointed_out() -> None:
    sim = states.canary_at_timed_pause()
    md = resource(sim).model_copy(update={"metadata": ObjectMeta(name="churn", namespace="prod", generation=5)})
    assert md.status is not None
    md.status.observed_generation = 4
    assert "5, operator has seen 4 (catching up)" in text(render_status(md, now=sim.now))


def test_narrow_terminals_wrap_rather_than_cut() -> None:
    sim = states.canary_rolled_back()
    out = text(render_status(resource(sim), now=sim.now), width=60)
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 60
    assert "bbbb2222" in out
    assert "keeps serving" in out.replace("\n", " ")


def test_a_terminal_gets_colour_a_pipe_does_not() -> None:
    md = resource(states.canary_rolled_back())
    piped = text(render_status(md, now=T0))
    assert "\x1b[" not in piped
    terminal = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=120)
    terminal.print(render_status(md, now=T0))
    output = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in output


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (-5, "0s"),
        (59, "59s"),
        (60, "1m"),
        (90, "1m30s"),
        (600, "10m"),
        (3599, "59m"),
        (3600, "1h"),
        (3660, "1h1m"),
        (86400, "1d"),
        (90000, "1d1h"),
    ],
)
def test_age_reads_like_kubectl(seconds: float, expected: str) -> None:
    assert age(seconds) == expected


@pytest.mark.parametrize(("canary", "cells"), [(0, 0), (1, 1), (10, 4), (50, 20), (100, 40)])
def test_bar_cells_follow_the_weight(canary: int, cells: int) -> None:
    bar = weights_bar(Weights(stable=100 - canary, canary=canary)).plain
    assert bar.count("░") == cells
    assert bar.count("█") == 40 - cells


# --- list ----------------------------------------------------------------------------------------------------------


def _wire(sim: Any, name: str, namespace: str = "prod") -> dict[str, Any]:
    body = resource(sim, name=name, namespace=namespace).to_wire()
    body["metadata"]["creationTimestamp"] = "2026-11-23T11:00:00Z"
    return body


def test_list_row_from_a_wire_object() -> None:
    row = list_row(_wire(states.canary_at_timed_pause(), "churn"))
    assert (row.name, row.namespace, row.strategy, row.stable, row.canary, row.weight, row.phase) == (
        "churn",
        "prod",
        "canary",
        "1",
        "2",
        "10",
        "Progressing",
    )
    assert row.modes == "online"


def test_list_table_with_namespaces_and_ages() -> None:
    rows = [
        list_row(_wire(states.shadow_comparing(), "credit", "risk")),
        list_row(_wire(states.canary_paused_by_user(), "churn")),
        list_row({"metadata": {"name": "broken", "namespace": "prod"}, "spec": {"rollout": {"strategy": "canary"}}}),
    ]
    out = text(render_list(rows, all_namespaces=True, now=T0 + timedelta(hours=2)))
    header, *body = [line for line in out.splitlines() if line.strip()]
    assert header.split() == ["NAMESPACE", "NAME", "MODES", "STRATEGY", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
    assert [line.split()[:2] for line in body] == [["prod", "broken"], ["prod", "churn"], ["risk", "credit"]]
    assert body[0].split()[-2:] == ["Invalid", "-"]
    assert body[1].split()[2:] == ["online", "canary", "1", "2", "10", "Paused", "3h"]
    assert "0 (mirror 100)" in body[2]


def test_list_without_namespaces() -> None:
    out = text(render_list([list_row(_wire(states.direct_healthy(), "iris"))], all_namespaces=False, now=T0))
    assert out.split()[:8] == ["NAME", "MODES", "STRATEGY", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
    assert "NAMESPACE" not in out
    assert "Healthy" in out


def test_empty_status_lists_as_pending() -> None:
    sim = states.direct_healthy()
    body = _wire(sim, "new")
    body.pop("status")
    row = list_row(body)
    assert (row.phase, row.stable, row.weight) == ("Pending", "", "0")
    assert ModelDeploymentStatus().phase == "Pending"


# --- batch -----------------------------------------------------------------------------------------------------------


def test_batch_runs_show_records_gates_and_why_a_run_failed() -> None:
    body = load_example("batch-shadow.yaml")
    body["metadata"] |= {"namespace": "ml", "uid": "u", "generation": 1}
    runs = [
        BatchRun(job="churn-nightly-batch-29410", role="stable", revision="a1", version="8", created_at=T0,
                 scheduled_time=T0, phase="Succeeded", counts=BatchCounts(read=1000, scored=990, rejected=10),
                 duration_seconds=42, manifest="s3://lake/churn/date=2026-12-03/_manifest.json"),
        BatchRun(job="churn-nightly-shadow-29410", role="shadow", revision="b2", version="9", created_at=T0,
                 scheduled_time=T0, phase="Succeeded", counts=BatchCounts(read=1000, scored=1000),
                 comparison=BatchComparison(agreement=0.8), gate="Failed",
                 gate_message="gates failed: agreement 0.8000 (min 0.98)"),
        BatchRun(job="churn-nightly-batch-29411", role="stable", revision="a1", version="8", created_at=T0,
                 phase="Failed", reason="SchemaMismatch", message="input lacks column f3"),
    ]  # fmt: skip
    status = ModelDeploymentStatus(phase="RolledBack", stable=RevisionRef(revision="a1", version="8"),
                                   batch=BatchStatus(runs=runs))  # fmt: skip
    md = ModelDeployment.model_validate(body | {"status": status.to_wire()})
    output = text(render_status(md, now=T0))
    [stable] = lines_with(output, "churn-nightly-batch-29410")
    assert "990/1000, 10 rej" in stable
    assert "s3://lake/churn/date=2026-12-03/_manifest.json" in "".join(output.split()), "wrapped, whole"
    [shadow] = lines_with(output, "churn-nightly-shadow-29410")
    assert "Failed: gates failed" in shadow
    whole = " ".join(output.split())  # the last column wraps
    assert "agreement 0.8000 (min 0.98)" in whole
    [failed] = lines_with(output, "churn-nightly-batch-29411")
    assert "SchemaMismatch" in failed
    assert "input lacks column f3" in whole
    assert output.index("29411") < output.index("29410"), "newest first"


def test_a_rollout_waiting_at_a_gate_says_which_since_when_the_last_answer_and_the_next_question() -> None:
    gate = {"url": "http://board.ci/approve", "interval": "30s"}
    sim = Sim.serving(make_spec({"strategy": "canary", "canary": {"steps": [{"setWeight": 20}]},
                                 "gates": {"confirmPromotion": gate}}))  # fmt: skip
    sim.run(until=lambda s: s.status.gate is not None, step_s=10)
    sim.wait(10)
    out = view(sim, later=5)
    (line,) = lines_with(out, "Gate")
    assert "waiting at confirmPromotion for" in line
    assert "asked 1 times" in line
    assert "last answer: 403: not yet" in line
    assert "next ask in 15s" in line
    sim.gate_says["confirmPromotion"] = True
    sim.wait(20)
    assert not lines_with(view(sim), "Gate ")
