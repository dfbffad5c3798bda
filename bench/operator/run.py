"""`make bench-operator`: the operator at 100, 1,000 and 3,000 ModelDeployments, before and after the scale work.

For each size, and for each version at that size in turn (before, then after, so drift of the shared machine hits
both alike), on a fresh cluster of its own (hack/cluster-up.sh, CLUSTER_NAME mr-bench by default):
  1. the version's CRD, the namespaces and N ModelDeployments (bench/operator/mix.py) are created, no operator yet;
  2. the operator of that version starts cold; the bench watches every ModelDeployment until all are converged
     (phase Healthy at the current generation), or the cap; then it lists their children to check them;
  3. steady state: after a settle time, a window with nothing changing: the API server's request counters, the
     operator's and the API server's CPU (/proc), the operator's RSS;
  4. reaction: ModelDeployments patched to a new model version one at a time, to the new revision's Deployment;
  5. ticks: canaries rolled out one at a time while the rest is idle, each timed pause's end to the next step;
  6. the operator stops (SIGTERM) and, after the settle time, a window without it: the requests that are not its.
Everything is black-box (a process, the API server, /proc), so the bench keeps working while the operator's
internals change. Raw data lands in --workdir (one directory per version and size, and results.json, written
after every run); the page (--out) is rendered from results.json (`--from-raw` renders it again alone).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from bench.operator import kube, mix, processes, report, stats, ticks
from bench.operator.processes import ClusterSpec, OperatorProcess, Tree
from bench.operator.results import (
    BenchResults,
    Convergence,
    ReactionSample,
    RequestRow,
    RunResult,
    Settings,
    TickRow,
    Ticks,
    Window,
)
from kubernetes_asyncio import client
from rich.console import Console

console = Console(highlight=False)
RSS_EVERY_S = 5.0
PROGRESS_EVERY_S = 15.0


@dataclass(frozen=True)
class Options:
    sizes: list[int]
    namespaces: int
    watch: str  # "all" or "listed"
    cap_s: float
    settle_s: float
    steady_s: float
    baseline_s: float
    reaction_samples: int
    reaction_gap_s: float
    reaction_timeout_s: float
    reaction_budget_s: float
    tick_rollouts: int
    pause_s: float
    idle_timeout_s: float
    seed: int
    cluster: ClusterSpec
    keep_cluster: bool


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def say(text: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")


# --- one version at one size -----------------------------------------------------------------------------------------


def save(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


async def window(
    api: client.ApiClient, seconds: float, operator: OperatorProcess | None, apiserver: int | None, raw: Path
) -> Window:
    """Counters at both ends of `seconds` of waiting (nothing else is done meanwhile but reading /proc)."""
    first = await kube.scrape_metrics(api)
    own_first = await own_requests(operator)
    began = time.monotonic()
    operator_cpu = operator.cpu_seconds() if operator else None
    apiserver_cpu = processes.cpu_seconds(apiserver) if apiserver else None
    rss: list[int] = []
    while (left := began + seconds - time.monotonic()) > 0:
        await asyncio.sleep(min(RSS_EVERY_S, left))
        if operator is not None and (kib := operator.rss_kib()) is not None:
            rss.append(kib)
    last = await kube.scrape_metrics(api)
    own_last = await own_requests(operator)
    took = time.monotonic() - began
    operator_end = operator.cpu_seconds() if operator else None
    apiserver_end = processes.cpu_seconds(apiserver) if apiserver else None
    save(raw, {"requests-start.txt": stats.request_lines(first), "requests-end.txt": stats.request_lines(last)})
    counts = stats.delta(stats.parse_request_totals(first), stats.parse_request_totals(last))
    return Window(
        seconds=took,
        requests=RequestRow.rows(counts),
        operator_cpu_s=None if operator_cpu is None or operator_end is None else operator_end - operator_cpu,
        operator_rss_kib=max(rss) if rss else None,
        apiserver_cpu_s=None if apiserver_cpu is None or apiserver_end is None else apiserver_end - apiserver_cpu,
        operator_requests=None if own_first is None or own_last is None else stats.verb_delta(own_first, own_last),
    )


async def own_requests(operator: OperatorProcess | None) -> dict[str, float] | None:
    """The operator's own request counters (its /metrics), or None when it does not answer."""
    if operator is None:
        return None
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            return stats.operator_requests((await http.get(operator.metrics_url)).text)
    except httpx.HTTPError:
        return None


async def converge(
    mds: kube.ModelDeployments, operator: OperatorProcess, cap_s: float, items: list[mix.Item]
) -> Convergence:
    began = operator.started_at
    curve: list[tuple[float, int]] = [(0.0, len(mds.converged))]
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    while True:
        await mds.wait_changed(1.0)
        elapsed, done = time.time() - began, len(mds.converged)
        if done != curve[-1][1]:
            curve.append((round(elapsed, 3), done))
        if done >= mds.size or elapsed >= cap_s or not operator.alive():
            break
        if time.monotonic() >= next_progress:
            say(f"  {done:,}/{mds.size:,} converged after {elapsed:.0f}s")
            next_progress += PROGRESS_EVERY_S
    done = len(mds.converged)
    return Convergence(
        cap_s=cap_s,
        seconds=curve[-1][0] if done >= mds.size else None,
        converged=done,
        first_s=stats.time_to_fraction(curve, mds.size, 1 / max(mds.size, 1)),
        half_s=stats.time_to_fraction(curve, mds.size, 0.5),
        p90_s=stats.time_to_fraction(curve, mds.size, 0.9),
        operator_cpu_s=operator.cpu_seconds(),
        curve=curve,
        by_flavor=stats.by_group(mix.first_times(items, mds.first_converged, since=began)),
    )


async def all_converged(mds: kube.ModelDeployments, within: float) -> bool:
    deadline = time.monotonic() + within
    while len(mds.converged) < mds.size:
        if time.monotonic() >= deadline:
            return False
        await mds.wait_changed(1.0)
    return True


async def react(
    api: client.ApiClient, targets: list[mix.Item], versions: dict[tuple[str, str], str], options: Options
) -> tuple[list[ReactionSample], list[str]]:
    revisions = kube.Revisions()
    watch = await revisions.watch(api).start(within=300)
    samples: list[ReactionSample] = []
    notes: list[str] = []
    deadline = time.monotonic() + options.reaction_budget_s
    try:
        for item in targets:
            if time.monotonic() >= deadline:
                notes.append(
                    f"reaction: stopped after {len(samples)} samples, at the {options.reaction_budget_s:g}s budget"
                )
                break
            versions[item.key] = mix.next_version(versions[item.key])
            seen = revisions.expect(item)
            sent, acked = await kube.patch(api, item, mix.version_patch(item, versions[item.key]))
            latency: float | None
            try:
                latency = await asyncio.wait_for(seen, options.reaction_timeout_s) - acked
            except TimeoutError:
                latency = None
            samples.append(
                ReactionSample(
                    namespace=item.namespace,
                    name=item.name,
                    flavor=item.flavor,
                    patch_s=acked - sent,
                    latency_s=latency,
                )
            )
            await asyncio.sleep(options.reaction_gap_s)
    finally:
        await watch.stop()
    return samples, notes


async def rollout_ticks(
    api: client.ApiClient,
    mds: kube.ModelDeployments,
    subjects: list[mix.Item],
    versions: dict[tuple[str, str], str],
    options: Options,
) -> tuple[Ticks, list[str]]:
    pauses = mix.pause_indices(options.pause_s)
    result = Ticks(pause_s=options.pause_s, expected=len(pauses) * len(subjects))
    notes: list[str] = []
    idle_until = time.monotonic() + options.idle_timeout_s  # one budget for all the waits below
    for subject in subjects:
        if not await all_converged(mds, max(0.0, idle_until - time.monotonic())):
            notes.append(
                f"ticks: {mds.size - len(mds.converged)} ModelDeployments not converged (the waits for them are "
                f"over their {options.idle_timeout_s:g}s) when the rollout of {subject.name} began"
            )
        statuses = mds.follow(subject)
        routes = kube.Routes()
        watch = await routes.watch(api, subject).start()
        try:
            versions[subject.key] = mix.next_version(versions[subject.key])
            await kube.patch(api, subject, mix.version_patch(subject, versions[subject.key]))
            deadline = time.monotonic() + len(pauses) * options.pause_s + options.reaction_timeout_s
            while time.monotonic() < deadline:
                await mds.wait_changed(1.0)
                started = any(seen.step is not None for seen in statuses)
                if started and mds.is_converged(subject):
                    break
            else:
                notes.append(f"ticks: the rollout of {subject.name} did not finish in time")
        finally:
            await watch.stop()
            mds.timelines.pop(subject.key, None)
        for sample in ticks.ticks(statuses, routes.seen, pauses):
            result.samples.append(
                TickRow(subject=subject.name, step=sample.step, status_s=sample.status_s, routing_s=sample.routing_s)
            )
        await asyncio.sleep(options.reaction_gap_s)
    return result, notes


async def phases(
    result: RunResult,
    *,
    api: client.ApiClient,
    operator: OperatorProcess,
    mds: kube.ModelDeployments,
    apiserver: int | None,
    versions: dict[tuple[str, str], str],
    options: Options,
    raw: Path,
) -> None:
    """Steady state, reaction and ticks with the operator, then the baseline without it. Each phase needs the
    operator; one that exited by itself ends them (noted), and the baseline is still read."""
    items = mix.plan_mix(result.size, options.namespaces)
    subjects = mix.tick_subjects(items, options.tick_rollouts)
    targets = mix.reaction_targets(items, options.reaction_samples, exclude=subjects, seed=options.seed)
    if operator.alive():
        await asyncio.sleep(options.settle_s)
        say(f"  steady window: {options.steady_s:g}s")
        result.steady = await window(api, options.steady_s, operator, apiserver, raw / "steady")
    if operator.alive():
        say(f"  reaction: {len(targets)} patches")
        result.reaction, more = await react(api, targets, versions, options)
        result.notes += more
    if operator.alive():
        say(f"  ticks: {len(subjects)} canary rollouts")
        result.ticks, more = await rollout_ticks(api, mds, subjects, versions, options)
        result.notes += more
    if not operator.alive():
        result.notes.append(f"the operator exited by itself (code {operator.stop()}); see {operator.log}")
    result.exit_code = operator.stop()
    result.peak_rss_kib = operator.peak_rss_kib
    await asyncio.sleep(options.settle_s)
    say(f"  operator stopped ({result.exit_code}); baseline window: {options.baseline_s:g}s")
    result.baseline = await window(api, options.baseline_s, None, apiserver, raw / "baseline")


async def measure(tree: Tree, size: int, options: Options, kubeconfig: Path, raw: Path) -> RunResult:
    began = time.monotonic()
    started = now_text()
    items = mix.plan_mix(size, options.namespaces)
    versions = {item.key: mix.FIRST_VERSION for item in items}
    spaces = mix.namespaces(options.namespaces)
    notes: list[str] = []
    api = await kube.connect(kubeconfig)
    operator = OperatorProcess(
        tree, kubeconfig=kubeconfig, namespaces=None if options.watch == "all" else spaces, log=raw / "operator.log"
    )
    mds = kube.ModelDeployments(size)
    md_watch: kube.Watch | None = None
    try:
        await kube.install_crds(api, kube.read_crds(tree.root / "crds"))
        await kube.create_namespaces(api, spaces)
        applied_s = await kube.create_all(api, [mix.manifest(item, pause_s=options.pause_s) for item in items])
        say(f"  {size:,} ModelDeployments created in {applied_s:.1f}s; starting the operator ({tree.label})")
        md_watch = await mds.watch(api).start(within=300)
        apiserver = processes.component_pid(kubeconfig, "kube-apiserver")
        operator.start()
        convergence = await converge(mds, operator, options.cap_s, items)
        say(f"  converged: {convergence.converged:,}/{size:,} in {convergence.seconds or options.cap_s:.1f}s")
        if convergence.seconds is None and operator.alive():
            notes.append(
                f"not converged at the cap: the steady window saw {size - convergence.converged} still converging"
            )
        convergence.children_missing = mix.missing_children(mix.count_children(await kube.children(api)), items)
        save(raw, {"convergence.json": convergence.model_dump_json(indent=1)})
        result = RunResult(
            label=tree.label,
            tree=tree.describe,
            size=size,
            namespaces=options.namespaces,
            watch="all namespaces" if options.watch == "all" else f"the {options.namespaces} bench namespaces",
            mix=dict(mix.mix_counts(items)),
            started=started,
            took_s=0.0,
            applied_s=applied_s,
            convergence=convergence,
            notes=notes,
        )
        await phases(
            result,
            api=api,
            operator=operator,
            mds=mds,
            apiserver=apiserver,
            versions=versions,
            options=options,
            raw=raw,
        )
    finally:
        operator.stop()
        if md_watch is not None:
            await md_watch.stop()
        await api.close()
    result.took_s = time.monotonic() - began
    return result


def run_one(tree: Tree, size: int, options: Options, workdir: Path) -> RunResult:
    raw = workdir / f"{size}-{tree.label}"
    raw.mkdir(parents=True, exist_ok=True)
    cluster_log = raw / "cluster.log"
    say(f"[bold]{tree.label}[/bold], {size:,} ModelDeployments: cluster {options.cluster.name}")
    kubeconfig = processes.cluster_up(options.cluster, cluster_log)
    try:
        result = asyncio.run(measure(tree, size, options, kubeconfig, raw))
    finally:
        if not options.keep_cluster:
            processes.cluster_down(options.cluster, cluster_log)
    (raw / "result.json").write_text(result.model_dump_json(indent=1))
    return result


# --- command line ----------------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def write(results: BenchResults, out: Path, workdir: Path) -> None:
    (workdir / "results.json").write_text(results.model_dump_json(indent=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render(results))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(
    *,
    sizes: Annotated[str, typer.Option(help="ModelDeployments per run, comma-separated")] = "100,1000,3000",
    versions: Annotated[str, typer.Option(help="which versions, in order: before, after")] = "before,after",
    before: Annotated[str, typer.Option(help="commit (or directory) of the version before")] = "7bed7b4",
    after: Annotated[str, typer.Option(help="commit or directory of the version after; empty: this checkout")] = "",
    out: Annotated[Path, typer.Option(help="the results page")] = Path("bench/results/operator.md"),
    workdir: Annotated[Path, typer.Option(help="raw data")] = Path("bench/results/raw/operator"),
    namespaces: Annotated[int, typer.Option(help="namespaces the ModelDeployments are spread over")] = 10,
    watch: Annotated[str, typer.Option(help="all: every namespace; listed: --namespace per bench namespace")] = "all",
    cap: Annotated[float, typer.Option(help="seconds allowed to converge")] = 600,
    settle: Annotated[float, typer.Option(help="seconds before each window")] = 30,
    steady: Annotated[float, typer.Option(help="seconds of the steady window")] = 180,
    baseline: Annotated[float, typer.Option(help="seconds of the window without the operator")] = 90,
    reaction_samples: Annotated[int, typer.Option(help="version patches, one at a time")] = 40,
    reaction_gap: Annotated[float, typer.Option(help="seconds between two patches")] = 2,
    reaction_timeout: Annotated[float, typer.Option(help="seconds one patch may take to show")] = 120,
    reaction_budget: Annotated[float, typer.Option(help="seconds for all patches")] = 600,
    tick_rollouts: Annotated[int, typer.Option(help="canary rollouts, one at a time")] = 3,
    pause: Annotated[float, typer.Option(help="seconds of each canary pause")] = 5,
    idle_timeout: Annotated[
        float, typer.Option(help="seconds, in all, to wait for everything to converge before tick rollouts")
    ] = 300,
    seed: Annotated[int, typer.Option(help="which ModelDeployments the reaction patches")] = 17,
    cluster: Annotated[str, typer.Option(help="cluster name (hack/cluster-up.sh CLUSTER_NAME)")] = "mr-bench",
    nodes: Annotated[int, typer.Option(help="kwok fake nodes")] = 10,
    node_pods: Annotated[int, typer.Option(help="pods allocatable per fake node")] = 1000,
    service_cidr: Annotated[
        str, typer.Option(help="the cluster's Service range (3 Services per object)")
    ] = "10.96.0.0/16",
    keep_cluster: Annotated[bool, typer.Option(help="leave the last cluster running")] = False,
    from_raw: Annotated[Path | None, typer.Option(help="only render --out again from this results.json")] = None,
) -> None:
    """Measure the operator at scale (see the module docstring); write --out and raw data under --workdir."""
    # kill and a closed terminal clean up as Ctrl-C does: the operator stopped, the cluster deleted
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    if from_raw is not None:
        results = BenchResults.model_validate_json(from_raw.read_text())
        out.write_text(report.render(results))
        console.print(f"wrote {out}")
        return
    if watch not in ("all", "listed"):
        raise typer.BadParameter("--watch is all or listed")
    labels = [v.strip() for v in versions.split(",") if v.strip()]
    refs = {"before": before, "after": after or None}
    if unknown := [label for label in labels if label not in refs]:
        raise typer.BadParameter(f"unknown versions {unknown}: before, after")
    options = Options(
        sizes=parse_sizes(sizes),
        namespaces=namespaces,
        watch=watch,
        cap_s=cap,
        settle_s=settle,
        steady_s=steady,
        baseline_s=baseline,
        reaction_samples=reaction_samples,
        reaction_gap_s=reaction_gap,
        reaction_timeout_s=reaction_timeout,
        reaction_budget_s=reaction_budget,
        tick_rollouts=tick_rollouts,
        pause_s=pause,
        idle_timeout_s=idle_timeout,
        seed=seed,
        cluster=ClusterSpec(cluster, nodes, node_pods, service_cidr),
        keep_cluster=keep_cluster,
    )
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    trees = [processes.materialize(label, refs[label], workdir) for label in labels]
    settings = Settings(
        trees={tree.label: tree.describe for tree in trees},
        sizes=options.sizes,
        cluster=cluster,
        nodes=nodes,
        node_pods=node_pods,
        service_cidr=service_cidr,
        namespaces=namespaces,
        watch="all namespaces" if watch == "all" else f"the {namespaces} bench namespaces (--namespace each)",
        cap_s=cap,
        settle_s=settle,
        steady_s=steady,
        baseline_s=baseline,
        reaction_samples=reaction_samples,
        reaction_gap_s=reaction_gap,
        tick_rollouts=tick_rollouts,
        pause_s=pause,
        seed=seed,
    )
    results = BenchResults(
        command="python -m bench.operator.run " + shlex.join(sys.argv[1:]),
        started=now_text(),
        machine=machine(),
        load_before=load_average(),
        settings=settings,
    )
    for size in options.sizes:
        for tree in trees:
            try:
                results.runs.append(run_one(tree, size, options, workdir))
            except Exception as exc:  # noqa: BLE001 - one failed run is reported; the others still run
                console.print_exception(max_frames=5)
                results.errors.append(f"{tree.label} at {size:,}: {exc!r}")
            results.load_after = load_average()
            write(results, out, workdir)
    results.finished = now_text()
    results.load_after = load_average()
    write(results, out, workdir)
    console.print(f"wrote {out} (raw data: {workdir})")


if __name__ == "__main__":
    typer.run(main)
