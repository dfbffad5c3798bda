"""Router benchmark: the same model server called directly and through `modelserver route`, same client, same load.

Run by `make bench-router`. Everything listens on 127.0.0.1; every wrk run is bounded by --duration. The load
generator and its Lua script are bench/serving's (wrk, one thread, optional pacing for a fixed offered load).

Set-ups, measured in interleaved rounds so that drift on a shared machine hits all of them alike:
- direct:       wrk -> model server (version 1)
- router 100/0: wrk -> router -> model server (version 1)
- router 90/10: wrk -> router -> 90% version 1, 10% version 2 (a second server with the same model file)
- router 100/0 + fallback: as router 100/0 with a routing document of version 2 giving version 1 a fallback chain
  to version 2 with a latency budget; nothing fails, so this is the cost of having a chain configured
- ensemble phase (its own model servers and router): three members whose model waits 2, 3 and 4 ms a call
  (bench/router/delayed_model.py) called as `slowest member direct`, `router -> slowest member` and `router
  ensemble of 3` (all three asked at once, their probabilities averaged): the ensemble's cost over the slowest
  member it waits for. Loads `serial` and `fixed` at a rate the members sustain.
Loads: `serial` (one connection, closed loop: the latency of one request with nothing else going on),
`fixed` (16 connections paced to a fixed offered rate, the same for every set-up) and `saturation`
(32 connections as fast as they go: throughput).

Pinning (2 cores): both model servers on CPU 0; wrk on CPU 1, and the router on CPU 1 beside it. The model
server thus has the same core to itself in every set-up; the router shares wrk's core (wrk is light at the
fixed loads, but at saturation the two compete, so router throughput there is a lower bound).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from testkit.ports import free_port
from testkit.processes import wait_until_answers
from testkit.waiting import wait_until

HERE = Path(__file__).resolve().parent
N_FEATURES = 20
MODEL = "logreg"


def _serving() -> ModuleType:
    """bench/serving/run.py, for its wrk runner, result type and machine description."""
    spec = importlib.util.spec_from_file_location("bench_serving_run", HERE.parent / "serving" / "run.py")
    if spec is None or spec.loader is None:
        raise ImportError("bench/serving/run.py not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


serving = _serving()
PRIORITY: list[str] = serving.PRIORITY


@dataclass(frozen=True)
class Setup:
    name: str
    weights: tuple[int, int] | None  # None: direct
    fallback: bool = False  # stable -> canary, with a latency budget (a version 2 document)


SETUPS = [
    Setup("direct", None),
    Setup("router 100/0", (100, 0)),
    Setup("router 90/10", (90, 10)),
    Setup("router 100/0 + fallback", (100, 0), fallback=True),
]
FALLBACK_BUDGET_S = 0.5


def train(workdir: Path) -> tuple[Path, Path]:
    x, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=8, random_state=0)
    path = workdir / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), path)
    body = {
        "inputs": [{"name": "input-0", "shape": [1, N_FEATURES], "datatype": "FP64", "data": x[:1].tolist()}],
        "outputs": [{"name": "predict"}],
    }
    body_path = workdir / "body.json"
    body_path.write_text(json.dumps(body))
    return path, body_path


class Process:
    def __init__(
        self, command: list[str], *, cpus: str, log: Path, ready: str, cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        self.log = log.open("ab")
        self.command = command
        self.process = subprocess.Popen(
            [*PRIORITY, "taskset", "-c", cpus, *command],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self._wait(ready)

    def _wait(self, url: str, timeout: float = 120) -> None:
        wait_until_answers(url, self.process, Path(self.log.name), within=timeout)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def model_server(path: Path, version: str, workdir: Path) -> tuple[Process, int]:
    port = free_port()
    command = [
        sys.executable, "-m", "modelserver", "serve", "--model-uri", str(path), "--model-name", MODEL,
        "--model-version", version, "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(free_port()),
        "--log-level", "warning",
    ]  # fmt: skip
    ready = f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready"
    return Process(command, cpus="0", log=workdir / f"server-{version}.log", ready=ready, cwd=workdir), port


MEMBER_DELAYS_MS = {"a": 2, "b": 3, "c": 4}
SLOWEST = "c"
ENSEMBLE_SETUPS = ["slowest member direct", "router -> slowest member", "router ensemble of 3"]


def delayed_member(path: Path, name: str, delay_ms: int, workdir: Path) -> tuple[Process, int]:
    port = free_port()
    command = [
        sys.executable, "-m", "modelserver", "serve", "--format", "custom", "--model-class", "delayed_model:Delayed",
        "--model-uri", str(path), "--model-name", MODEL, "--model-version", name, "--host", "127.0.0.1",
        "--port", str(port), "--grpc-port", str(free_port()), "--log-level", "warning",
    ]  # fmt: skip
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), "DELAY_MS": str(delay_ms)}
    ready = f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready"
    log = workdir / f"member-{name}.log"
    return Process(command, cpus="0", log=log, ready=ready, cwd=workdir, env=env), port


def ensemble_routing(*, ensemble: bool) -> dict[str, Any]:
    backends = {n: {"url": f"http://{MODEL}-{n}.bench.svc:80", "version": n} for n in MEMBER_DELAYS_MS}
    target = "trio" if ensemble else SLOWEST
    return {
        "schemaVersion": 2,
        "route": MODEL,
        "control": target,
        "backends": backends,
        "split": [{"backend": target, "weight": 100}],
        "ensembles": {"trio": {"members": list(MEMBER_DELAYS_MS), "combine": "mean", "memberTimeoutSeconds": 1}},
        "timeoutSeconds": 10,
    }


def routing(weights: tuple[int, int], *, fallback: bool = False) -> dict[str, Any]:
    if fallback:
        return {
            "schemaVersion": 2,
            "route": MODEL,
            "control": "stable",
            "backends": {
                "stable": {"url": f"http://{MODEL}-stable.bench.svc:80", "version": "1"},
                "canary": {"url": f"http://{MODEL}-canary.bench.svc:80", "version": "2"},
            },
            "split": [{"backend": "canary", "weight": weights[1]}, {"backend": "stable", "weight": weights[0]}],
            "fallbacks": {"stable": {"to": ["canary"], "latencyBudgetSeconds": FALLBACK_BUDGET_S}},
            "timeoutSeconds": 10,
        }
    return {
        "schemaVersion": 1,
        "route": MODEL,
        "backends": {"stable": f"http://{MODEL}-stable.bench.svc:80", "canary": f"http://{MODEL}-canary.bench.svc:80"},
        "versions": {"stable": "1", "canary": "2"},
        "weights": {"stable": weights[0], "canary": weights[1]},
        "timeoutSeconds": 10,
    }


def configure(config: Path, router_port: int, setup: Setup) -> None:
    assert setup.weights is not None
    document = routing(setup.weights, fallback=setup.fallback)
    temp = config.with_suffix(".tmp")
    temp.write_text(json.dumps(document))
    os.replace(temp, config)
    want = {"stable": setup.weights[0], "canary": setup.weights[1]}

    def loaded() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{router_port}/readyz", timeout=2) as response:
            ready = json.loads(response.read())
        # The two 100/0 set-ups have the same weights: tell them apart by their fallback chains.
        return bool(ready["weights"] == want and (ready.get("fallbacks") or {}) == fallbacks_of(document))

    wait_until(loaded, within=30, what=f"the router to load {setup.name}")


def fallbacks_of(document: dict[str, Any]) -> dict[str, list[str]]:
    return {name: chain["to"] for name, chain in document.get("fallbacks", {}).items()}


@dataclass
class Measured:
    runs: list[Any]  # serving.Run, one per round
    router_cpu_ms: list[float]  # router CPU time per request, per round (router set-ups only)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs)


def paired(measured: Measured, direct: Measured, attribute: str) -> float:
    """Median over the rounds of (this set-up's value - the direct run's value in the same round)."""
    return statistics.median(
        getattr(ours, attribute) - getattr(theirs, attribute)
        for ours, theirs in zip(measured.runs, direct.runs, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1000, help="offered req/s of the fixed load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--paced-connections", type=int, default=16)
    parser.add_argument("--ensemble-rate", type=float, default=100, help="offered req/s of the ensemble's fixed load")
    parser.add_argument("--phases", default="router,ensemble", help="router, ensemble, or both (comma-separated)")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    model, body = train(args.workdir)
    loads = {
        "serial": {"connections": 1, "rate": 0.0},
        "fixed": {"connections": args.paced_connections, "rate": args.rate},
        "saturation": {"connections": args.connections, "rate": 0.0},
    }
    results: dict[tuple[str, str], Measured] = {(s.name, load): Measured([], []) for s in SETUPS for load in loads}
    ensemble_loads = {
        "serial": {"connections": 1, "rate": 0.0},
        "fixed": {"connections": 4, "rate": args.ensemble_rate},
    }
    ensemble_results = {(name, load): Measured([], []) for name in ENSEMBLE_SETUPS for load in ensemble_loads}
    if "router" in phases:
        run_router_phase(args, model, body, loads, results)
    if "ensemble" in phases:
        run_ensemble_phase(args, model, ensemble_loads, ensemble_results)
    finished = dt.datetime.now(dt.UTC)
    info = serving.machine() | {"load_before": load_before}
    report = render(results, loads=loads, info=info, args=args, span=(started, finished))
    report += render_ensemble(ensemble_results, loads=ensemble_loads, args=args)
    args.out.write_text(report)
    print(report)


def run_router_phase(
    args: argparse.Namespace,
    model: Path,
    body: Path,
    loads: dict[str, dict[str, float]],
    results: dict[tuple[str, str], Measured],
) -> None:
    processes: list[Process] = []
    try:
        stable, stable_port = model_server(model, "1", args.workdir)
        canary, canary_port = model_server(model, "2", args.workdir)
        processes += [stable, canary]
        config = args.workdir / "router.json"
        config.write_text(json.dumps(routing((100, 0))))
        router_port = free_port()
        command = [
            sys.executable, "-m", "modelserver", "route", "--port", str(router_port), "--config-file", str(config),
            "--upstream", f"1=http://127.0.0.1:{stable_port}", "--upstream", f"2=http://127.0.0.1:{canary_port}",
            "--log-level", "warning",
        ]  # fmt: skip
        router = Process(
            command, cpus="1", log=args.workdir / "router.log", ready=f"http://127.0.0.1:{router_port}/readyz",
            cwd=args.workdir,
        )  # fmt: skip
        processes.append(router)
        path = f"/v2/models/{MODEL}/infer"
        for round_ in range(args.rounds):
            for setup in SETUPS:
                if setup.weights is None:
                    url = f"http://127.0.0.1:{stable_port}{path}"
                else:
                    configure(config, router_port, setup)
                    url = f"http://127.0.0.1:{router_port}{path}"
                for load, shape in loads.items():
                    measured = results[(setup.name, load)]
                    measure(url, body, shape, args, into=measured, router=router if setup.weights else None)
                    run = measured.runs[-1]
                    print(
                        f"round {round_ + 1} {setup.name:<13} {load:<10} {run.rps:8.0f} req/s "
                        f"p50 {run.p50_ms:6.3f} ms p99 {run.p99_ms:7.3f} ms err {run.errors}",
                        flush=True,
                    )
    finally:
        for process in processes:
            process.stop()


def run_ensemble_phase(
    args: argparse.Namespace,
    model: Path,
    loads: dict[str, dict[str, float]],
    results: dict[tuple[str, str], Measured],
) -> None:
    body = args.workdir / "body-all-outputs.json"  # predict and predict_proba: the probabilities are averaged
    request = json.loads((args.workdir / "body.json").read_text())
    request.pop("outputs")
    body.write_text(json.dumps(request))
    processes: list[Process] = []
    try:
        ports: dict[str, int] = {}
        for name, delay in MEMBER_DELAYS_MS.items():
            member, ports[name] = delayed_member(model, name, delay, args.workdir)
            processes.append(member)
        config = args.workdir / "router-ensemble.json"
        config.write_text(json.dumps(ensemble_routing(ensemble=False)))
        router_port = free_port()
        upstreams = [arg for name, port in ports.items() for arg in ("--upstream", f"{name}=http://127.0.0.1:{port}")]
        command = [sys.executable, "-m", "modelserver", "route", "--port", str(router_port), "--config-file",
                   str(config), *upstreams, "--log-level", "warning"]  # fmt: skip
        router = Process(command, cpus="1", log=args.workdir / "router-ensemble.log",
                         ready=f"http://127.0.0.1:{router_port}/readyz", cwd=args.workdir)  # fmt: skip
        processes.append(router)
        path = f"/v2/models/{MODEL}/infer"
        for round_ in range(args.rounds):
            for name in ENSEMBLE_SETUPS:
                if name == "slowest member direct":
                    url = f"http://127.0.0.1:{ports[SLOWEST]}{path}"
                else:
                    ensemble = name == "router ensemble of 3"
                    use_routing(config, router_port, ensemble_routing(ensemble=ensemble))
                    url = f"http://127.0.0.1:{router_port}{path}"
                for load, shape in loads.items():
                    routed = router if name != ENSEMBLE_SETUPS[0] else None
                    measure(url, body, shape, args, into=results[(name, load)], router=routed)
                    run = results[(name, load)].runs[-1]
                    print(f"round {round_ + 1} {name:<24} {load:<8} {run.rps:8.0f} req/s p50 {run.p50_ms:6.3f} ms "
                          f"p99 {run.p99_ms:7.3f} ms err {run.errors}", flush=True)  # fmt: skip
    finally:
        for process in processes:
            process.stop()


def use_routing(config: Path, router_port: int, document: dict[str, Any]) -> None:
    temp = config.with_suffix(".tmp")
    temp.write_text(json.dumps(document))
    os.replace(temp, config)

    def loaded() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{router_port}/readyz", timeout=2) as response:
            ready = json.loads(response.read())
        return bool(ready["weights"].get(document["control"]) == 100)

    wait_until(loaded, within=30, what=f"the router to route to {document['control']}")


def measure(
    url: str, body: Path, shape: dict[str, float], args: argparse.Namespace, *, into: Measured, router: Process | None
) -> None:
    """One warm-up and one measured wrk run of `shape`; the router's CPU per request when it is in the path."""
    connections, rate = int(shape["connections"]), shape["rate"]
    serving.wrk(url, body, seconds=2, connections=connections, rate=rate, workdir=args.workdir)
    cpu_before = router.cpu_seconds() if router is not None else 0.0
    run = serving.wrk(url, body, seconds=args.duration, connections=connections, rate=rate, workdir=args.workdir)
    into.runs.append(run)
    if router is not None:
        into.router_cpu_ms.append((router.cpu_seconds() - cpu_before) * 1000 / max(run.raw["requests"], 1))


def render(
    results: dict[tuple[str, str], Measured],
    *,
    loads: dict[str, dict[str, float]],
    info: dict[str, str],
    args: argparse.Namespace,
    span: tuple[dt.datetime, dt.datetime],
) -> str:
    started, finished = span
    lines = [
        "# Router benchmark: model server called directly vs through `modelserver route`",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC (took {(finished - started).total_seconds() / 60:.0f} min)",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} memory, kernel {info['kernel']}, "
        f"Python {info['python']}; load average (1/5/15 min) {info['load_before']} before the run, "
        f"{info['load']} after it (other processes on the machine share the 2 cores)",
        f"- command: `make bench-router` (runs `bench/router/run.py --duration {args.duration} --rounds "
        f"{args.rounds} --rate {args.rate:g} --connections {args.connections} --paced-connections "
        f"{args.paced_connections}`)",
        "- model: scikit-learn LogisticRegression, 20 features, one row per request, Open Inference Protocol v2 "
        f"JSON on `POST /v2/models/{MODEL}/infer` asking for the `predict` output; one modelserver worker each "
        "for version 1 (stable) and version 2 (canary, same file).",
        "- router: one `modelserver route` process, routing document from `--config-file`, backends given by "
        "`--upstream`; 90/10 splits per request at random.",
        f"- load generator: {info['wrk']} with `bench/serving/request.lua`, 1 thread, under "
        f"`{' '.join(PRIORITY) or 'the default priority'}` like the servers and the router. `serial`: 1 "
        f"connection, closed loop. `fixed`: {args.paced_connections} connections with exponential think times "
        f"offering {args.rate:g} req/s in total. `saturation`: {args.connections} connections as fast as they "
        f"go. Each run lasts {args.duration} s after a 2 s warm-up.",
        "- pinning (`taskset`): both model servers on CPU 0; wrk and the router on CPU 1.",
        f"- rounds: {args.rounds}, each measuring every set-up and load in turn (about a minute apart); the "
        "tables show the median over the rounds, and `added` is the median of each round's difference to the "
        "direct run of the same round and load (paired, so slow drift of the machine cancels out).",
        "",
    ]
    for load in loads:
        direct = results[("direct", load)]
        lines += [
            f"## {load}",
            "",
            "| set-up | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | p50 ratio | p99 ratio "
            "| req/s ratio | router CPU per request |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for setup in SETUPS:
            m = results[(setup.name, load)]
            if not m.runs:
                continue
            rps, p50, p90, p99 = (m.median(a) for a in ("rps", "p50_ms", "p90_ms", "p99_ms"))
            d50, d99, drps = direct.median("p50_ms"), direct.median("p99_ms"), direct.median("rps")
            cpu = f"{statistics.median(m.router_cpu_ms):.3f} ms" if m.router_cpu_ms else "-"
            added = "-" if setup.weights is None else f"**{paired(m, direct, 'p50_ms'):+.3f}**"
            added99 = "-" if setup.weights is None else f"**{paired(m, direct, 'p99_ms'):+.3f}**"
            lines.append(
                f"| {setup.name} | {rps:,.0f} | {p50:.3f} | {p90:.3f} | {p99:.3f} | {added} | {added99} "
                f"| {p50 / d50:.2f}x | {p99 / d99:.2f}x | {rps / drps:.2f}x | {cpu} |"
            )
        lines.append("")
    errors = sum(run.errors for m in results.values() for run in m.runs)
    lines += [f"Errors (connect/read/write/timeouts/non-2xx) over all runs: {errors}.", ""]
    lines += ["Every run (round, set-up, load: req/s, p50 / p99 ms):", ""]
    for (name, load), m in results.items():
        cells = ", ".join(f"{r.rps:,.0f} req/s {r.p50_ms:.3f} / {r.p99_ms:.3f}" for r in m.runs)
        lines.append(f"- {name}, {load}: {cells}")
    return "\n".join(lines) + "\n"


def render_ensemble(
    results: dict[tuple[str, str], Measured], *, loads: dict[str, dict[str, float]], args: argparse.Namespace
) -> str:
    if not any(m.runs for m in results.values()):
        return ""
    delays = ", ".join(f"{name} {ms} ms" for name, ms in MEMBER_DELAYS_MS.items())
    lines = [
        "",
        "# Ensemble: three members asked at once vs the slowest member alone",
        "",
        f"- members: the same LogisticRegression behind `bench/router/delayed_model.py`, waiting {delays} per call "
        "(time spent waiting, not computing, so the three overlap on the one core they share); one modelserver "
        "worker each, pinned to CPU 0; the router and wrk on CPU 1.",
        "- request: one row, all outputs (`predict`, `predict_proba`); the ensemble averages the probabilities "
        "(`combine: mean`) and labels by the highest.",
        f"- loads: `serial` (1 connection, closed loop) and `fixed` ({int(loads['fixed']['connections'])} "
        f"connections offering {loads['fixed']['rate']:g} req/s); {args.duration} s runs after a 2 s warm-up, "
        f"{args.rounds} interleaved rounds; `added` is the paired median difference to `slowest member direct`.",
        "",
    ]
    for load in loads:
        base = results[(ENSEMBLE_SETUPS[0], load)]
        lines += [
            f"## ensemble, {load}",
            "",
            "| set-up | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | router CPU per request |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in ENSEMBLE_SETUPS:
            m = results[(name, load)]
            rps, p50, p90, p99 = (m.median(a) for a in ("rps", "p50_ms", "p90_ms", "p99_ms"))
            base_row = name == ENSEMBLE_SETUPS[0]
            added = "-" if base_row else f"**{paired(m, base, 'p50_ms'):+.3f}**"
            added99 = "-" if base_row else f"**{paired(m, base, 'p99_ms'):+.3f}**"
            cpu = f"{statistics.median(m.router_cpu_ms):.3f} ms" if m.router_cpu_ms else "-"
            lines.append(f"| {name} | {rps:,.0f} | {p50:.3f} | {p90:.3f} | {p99:.3f} | {added} | {added99} | {cpu} |")
        lines.append("")
    errors = sum(run.errors for m in results.values() for run in m.runs)
    lines += [f"Errors over all ensemble runs: {errors}.", "", "Every ensemble run (req/s, p50 / p99 ms):", ""]
    for (name, load), m in results.items():
        cells = ", ".join(f"{r.rps:,.0f} req/s {r.p50_ms:.3f} / {r.p99_ms:.3f}" for r in m.runs)
        lines.append(f"- {name}, {load}: {cells}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
