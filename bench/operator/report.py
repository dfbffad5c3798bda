"""The results page (pure): bench/results/operator.md from `BenchResults`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench.operator.results import BenchResults, RunResult, Window
from bench.operator.stats import RequestKey, Summary, by_key, by_verb, difference, failed, per_minute, top

TOP_REQUESTS = 14
MIB = 1024.0

Measure = Callable[[RunResult], float | None]


def number(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.{digits}f}"
    if text.startswith("-") and not text.strip("-0.,"):
        text = text[1:]  # -0.3 is 0 at this precision
    return text + unit


def ratio(after: float | None, before: float | None) -> str:
    if after is None or before is None:
        return "-"
    if before == 0:
        return "-" if after == 0 else "inf"
    return f"{after / before:.2f}x"


def rates(window: Window | None) -> dict[RequestKey, float] | None:
    if window is None:
        return None
    return per_minute(by_key(window.counts()), window.seconds)


def total_rate(window: Window | None) -> float | None:
    counts = rates(window)
    return None if counts is None else sum(counts.values())


def operator_rates(run: RunResult) -> dict[RequestKey, float] | None:
    steady, baseline = rates(run.steady), rates(run.baseline)
    if steady is None or baseline is None:
        return None
    return difference(steady, baseline)


def operator_total(run: RunResult) -> float | None:
    share = operator_rates(run)
    return None if share is None else sum(share.values())


def own_total(window: Window | None) -> float | None:
    if window is None or window.operator_requests is None or window.seconds <= 0:
        return None
    return sum(window.operator_requests.values()) * 60.0 / window.seconds


def own_line(run: RunResult) -> str:
    window = run.steady
    if window is None or window.operator_requests is None or window.seconds <= 0:
        return f"- {run.label}: -"
    verbs = sorted(window.operator_requests.items(), key=lambda item: -item[1])
    return f"- {run.label}: " + ", ".join(f"{verb} {value * 60.0 / window.seconds:,.1f}" for verb, value in verbs)


def cpu_percent(window: Window | None, field: str) -> float | None:
    if window is None:
        return None
    seconds = getattr(window, field)
    return None if seconds is None else 100.0 * seconds / window.seconds


def ms(summary: Summary | None, field: str) -> float | None:
    return None if summary is None else 1000.0 * getattr(summary, field)


def convergence_text(run: RunResult) -> str:
    c = run.convergence
    if c.seconds is not None:
        return f"{c.seconds:,.1f} s"
    return f"not in {c.cap_s:g} s: {c.converged:,}/{run.size:,}"


# (label, measure, digits); ratios are after / before of the measure
MEASURES: list[tuple[str, Measure, int]] = [
    ("time to 50% converged (s)", lambda r: r.convergence.half_s, 1),
    ("time to 90% converged (s)", lambda r: r.convergence.p90_s, 1),
    ("operator CPU until converged (s)", lambda r: r.convergence.operator_cpu_s, 1),
    ("steady: API requests/min, all clients", lambda r: total_rate(r.steady), 0),
    ("steady: API requests/min, without the operator", lambda r: total_rate(r.baseline), 0),
    ("steady: API requests/min, the operator's (difference)", operator_total, 0),
    ("steady: API requests/min, the operator's own count (its /metrics)", lambda r: own_total(r.steady), 0),
    ("steady: operator CPU (% of a core)", lambda r: cpu_percent(r.steady, "operator_cpu_s"), 1),
    ("steady: operator RSS (MiB)", lambda r: None if r.steady is None or r.steady.operator_rss_kib is None
     else r.steady.operator_rss_kib / MIB, 0),
    ("operator peak RSS (MiB)", lambda r: None if r.peak_rss_kib is None else r.peak_rss_kib / MIB, 0),
    ("steady: API server CPU (% of a core)", lambda r: cpu_percent(r.steady, "apiserver_cpu_s"), 1),
    ("steady: API server CPU without the operator (%)", lambda r: cpu_percent(r.baseline, "apiserver_cpu_s"), 1),
    ("reaction p50 (ms)", lambda r: ms(r.reaction_summary(), "p50"), 0),
    ("reaction p99 (ms)", lambda r: ms(r.reaction_summary(), "p99"), 0),
    ("tick p50, status (ms)", lambda r: ms(r.tick_summary("status_s"), "p50"), 0),
    ("tick p99, status (ms)", lambda r: ms(r.tick_summary("status_s"), "p99"), 0),
    ("tick p50, routing (ms)", lambda r: ms(r.tick_summary("routing_s"), "p50"), 0),
    ("tick p99, routing (ms)", lambda r: ms(r.tick_summary("routing_s"), "p99"), 0),
]  # fmt: skip


def find(runs: Sequence[RunResult], label: str, size: int) -> RunResult | None:
    return next((r for r in runs if r.label == label and r.size == size), None)


def summary_table(results: BenchResults) -> list[str]:
    labels = list(dict.fromkeys(r.label for r in results.runs))
    sizes = sorted({r.size for r in results.runs})
    pair = len(labels) == 2
    head = ["size", "measure", *labels] + (
        ["after / before" if labels == ["before", "after"] else "ratio"] if pair else []
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---:", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for size in sizes:
        runs = [find(results.runs, label, size) for label in labels]
        cells = [convergence_text(r) if r else "-" for r in runs]
        conv = [r.convergence.seconds if r else None for r in runs]
        lines.append(_row(size, "time until all converged", cells, conv, pair))
        for label, measure, digits in MEASURES:
            values = [measure(r) if r else None for r in runs]
            lines.append(_row(size, label, [number(v, digits) for v in values], values, pair))
        samples = [f"{len([s for s in r.reaction if s.latency_s is not None])}/{len(r.reaction)}" if r else "-"
                   for r in runs]  # fmt: skip
        lines.append(_row(size, "reaction samples (answered/sent)", samples, [None] * len(runs), pair))
        ticks = [f"{len(r.ticks.samples)}/{r.ticks.expected}" if r and r.ticks else "-" for r in runs]
        lines.append(_row(size, "tick samples (seen/pauses)", ticks, [None] * len(runs), pair))
    return lines


def _row(size: int, label: str, cells: list[str], values: list[float | None], pair: bool) -> str:
    extra = [ratio(values[1], values[0])] if pair else []
    return "| " + " | ".join([f"{size:,}", label, *cells, *extra]) + " |"


def requests_table(runs: Sequence[RunResult]) -> list[str]:
    """Requests/min by verb and resource for each version: all clients, without the operator, the difference."""
    head = ["request"]
    for run in runs:
        head += [f"{run.label}: all", f"{run.label}: without", f"{run.label}: operator"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    columns: list[dict[RequestKey, float]] = []
    for run in runs:
        steady, baseline = rates(run.steady) or {}, rates(run.baseline) or {}
        columns += [steady, baseline, difference(steady, baseline)]
    operator_shares = [columns[i] for i in range(2, len(columns), 3)]
    weight: dict[RequestKey, float] = {}
    for share in operator_shares:
        for key, value in share.items():
            weight[key] = max(weight.get(key, 0.0), abs(value))
    shown = [key for key, _ in top(weight, TOP_REQUESTS)]
    for key in shown:
        lines.append("| " + " | ".join([key.text(), *(number(column.get(key, 0.0)) for column in columns)]) + " |")
    rest = [sum(v for k, v in column.items() if k not in shown) for column in columns]
    lines.append("| " + " | ".join(["everything else", *(number(v) for v in rest)]) + " |")
    lines.append("| " + " | ".join(["**total**", *(f"**{number(sum(c.values()))}**" for c in columns)]) + " |")
    return lines


def flavors_text(run: RunResult) -> str:
    """Seconds to convergence by flavour: median and the last one."""
    parts = [f"{flavor} p50 {t.p50:.1f} s, last {t.max:.1f} s" for flavor, t in run.convergence.by_flavor.items()]
    return "; ".join(parts) or "none converged"


def verbs_line(run: RunResult) -> str:
    share = operator_rates(run)
    if share is None:
        return f"- {run.label}: -"
    verbs = sorted(by_verb(share).items(), key=lambda item: -item[1])
    return f"- {run.label}: " + ", ".join(f"{verb} {value:,.0f}" for verb, value in verbs)


def failures_line(run: RunResult) -> str:
    parts = []
    for name, window in (("steady", run.steady), ("without the operator", run.baseline)):
        if window is not None:
            codes = failed(window.counts())
            text = ", ".join(f"{code}: {count:,.0f}" for code, count in sorted(codes.items())) or "none"
            parts.append(f"{name} {text}")
    return f"- {run.label}: " + "; ".join(parts)


def render(results: BenchResults) -> str:
    s = results.settings
    sizes = sorted({r.size for r in results.runs})
    labels = list(dict.fromkeys(r.label for r in results.runs))
    machine = results.machine
    out = [
        "# Operator at scale: cold start, steady state, reaction and rollout ticks, before vs after",
        "",
        f"- date: {results.started} to {results.finished or '(unfinished)'}",
        f"- machine: {machine.get('nproc', '?')} CPUs ({machine.get('cpu', '?')}), {machine.get('memory', '?')} "
        f"memory, kernel {machine.get('kernel', '?')}, Python {machine.get('python', '?')}; load average (1/5/15 min) "
        f"{results.load_before} before the run, {results.load_after or '?'} after it (other processes share the cores)",
        f"- command: `{results.command}`",
        "- versions: " + "; ".join(f"**{label}** = {tree}" for label, tree in s.trees.items()),
        f"- cluster: a fresh `hack/cluster-up.sh` cluster (`{s.cluster}`: kube-apiserver, etcd, "
        f"controller-manager, scheduler built from source, QPS limits off) per version and size; Services "
        f"`{s.service_cidr}`; {s.nodes} kwok fake nodes with {s.node_pods} pods allocatable "
        "(kwok marks the pods Ready; no container runs)",
        f"- operator: `python -m modelrollout.main run` of that version's tree (`PYTHONPATH=<tree>/operator:"
        f"<tree>/contract`, this checkout's .venv), watching {s.watch}, leader election on (Lease in "
        "`default`), every other setting at its default; that version's CRD from `<tree>/crds`",
        f"- ModelDeployments: spread over {s.namespaces} namespaces in blocks of ten (8 `direct`, 1 direct "
        "with an HPA, 1 canary through `trafficRouting.provider: router` with steps setWeight 10/20/30/40/50 and a "
        f"{s.pause_s:g} s pause between two; no analysis); created before the operator starts (not measured)",
        "",
        "How each number is measured:",
        "",
        f"- **converged**: `status.phase` Healthy and `status.observedGeneration` = `metadata.generation`, from a "
        "watch of every ModelDeployment; times from the operator's process start (its imports and the leader "
        f"election included); capped at {s.cap_s:g} s. After convergence the bench LISTs the children and "
        "counts ModelDeployments without a revision Deployment, 3 Services, and the router Deployment + ConfigMap "
        '(canary) or HPA (hpa) they should own ("children missing" below).',
        f"- **steady**: after convergence and {s.settle_s:g} s more, a {s.steady_s:g} s window with "
        "nothing changing. Requests: the deltas of kube-apiserver's `apiserver_request_total` (its /metrics, read "
        "at both ends) summed by verb, resource and scope over codes, non-resource requests left out. That counter "
        f"has no user label, so the bench stops the operator at the end, waits {s.settle_s:g} s and counts "
        f"a {s.baseline_s:g} s window without it on the same cluster; *the operator's* = all - without. "
        "The bench's own watch of the ModelDeployments is open in both windows. CPU: utime+stime deltas of "
        "/proc/<pid>/stat (operator; kube-apiserver); RSS: the largest VmRSS sampled every 5 s in the window; "
        "peak RSS: VmHWM when the operator is stopped.",
        f"- **reaction**: {s.reaction_samples} ModelDeployments (drawn with seed {s.seed}, the same for "
        "both versions, mostly `direct`), one at a time, each patched to a new `spec.model.version` (a new revision), "
        f"{s.reaction_gap_s:g} s apart, all N present. Latency = arrival at the bench's watch of the first "
        "Deployment event carrying the new revision label - the moment the PATCH returned.",
        f"- **tick**: {s.tick_rollouts} canaries, one at a time, while every other ModelDeployment is idle "
        "(converged); each is patched to a new version and runs its rollout to promotion, 4 timed pauses each. For "
        "each pause at step i: end = `status.stepStartedAt` + pause. *status* = arrival of the first ModelDeployment "
        "event showing the rollout past step i (`currentStep` > i, or promoted) - end; *routing* = arrival of the "
        "first event of the `<name>-router` ConfigMap that changes the canary weight - end. Everything runs on one "
        "machine, so the operator's clock and the bench's are the same.",
        "- percentiles: linear between the nearest ranks (a p99 of 40 samples is near their maximum).",
        "",
        "## Summary",
        "",
        *summary_table(results),
        "",
    ]
    if results.errors:
        out += ["Runs that failed (no numbers above):", "", *(f"- {error}" for error in results.errors), ""]
    for size in sizes:
        runs = [r for r in (find(results.runs, label, size) for label in labels) if r is not None]
        out += [f"## {size:,} ModelDeployments", ""]
        for run in runs:
            c = run.convergence
            missing = ", ".join(f"{kind} {count}" for kind, count in sorted(c.children_missing.items()) if count)
            out.append(
                f"- {run.label}: mix {', '.join(f'{k} {v}' for k, v in run.mix.items())}; created in "
                f"{run.applied_s:.1f} s; first converged at {number(c.first_s, 1)} s; {convergence_text(run)} "
                f"({flavors_text(run)}); "
                f"children missing: {missing or 'none'}; operator exit code {run.exit_code}; run took "
                f"{run.took_s / 60:.1f} min"
            )
            out += [f"  - note: {note}" for note in run.notes]
        out += ["", "Steady-state requests per minute by verb and resource (top by the operator's share):", ""]
        out += requests_table(runs)
        out += ["", "The operator's requests per minute by verb:", ""]
        out += [verbs_line(run) for run in runs]
        out += [
            "",
            "The operator's own count of its requests per minute in the steady window, by verb (its "
            "modelrollout_api_requests_total; a watch counts when it is opened):",
            "",
        ]
        out += [own_line(run) for run in runs]
        out += ["", "Requests answered 4xx/5xx in the windows:", ""]
        out += [failures_line(run) for run in runs]
        out.append("")
    return "\n".join(out)
