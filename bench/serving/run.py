"""Serving benchmark: modelserver vs MLServer on the same scikit-learn models, machine and load generator.

Run by `make bench-serving`, which builds MLServer's own venv (its pins conflict with ours) and passes its
python here. Every server listens on 127.0.0.1 only; every wrk run is bounded by --duration.

Pinning (2 cores): with one worker, the server (all of its processes) gets CPU 0 and wrk CPU 1; with two
workers the server gets CPUs 0-1 and wrk shares CPU 1, the same for both servers.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from testkit.ports import free_port
from testkit.processes import wait_until_answers

HERE = Path(__file__).resolve().parent
GRPC_PROTO = HERE.parents[1] / "model-server" / "modelserver" / "grpc_api" / "grpc_predict_v2.proto"
# Servers and wrk alike run at a raised priority (when allowed: root), so that unrelated processes on a
# shared machine disturb the measurement less; both servers get the same treatment.
PRIORITY = ["nice", "-n", "-10"] if os.geteuid() == 0 else []
N_FEATURES = 20
MODELS = {
    "logreg": "LogisticRegression, 20 features",
    "forest": "RandomForestClassifier, 100 trees, 20 features",
}


@dataclass(frozen=True)
class Config:
    """One server set-up: which server, how many worker processes, batching, which CPUs."""

    server: str  # "ours" | "mlserver"
    workers: int
    batching: bool = False
    label: str = ""
    parallel_workers: int | None = None  # MLServer only; default: = workers

    @property
    def cpus(self) -> str:
        return "0" if self.workers == 1 else "0,1"

    @property
    def title(self) -> str:
        return self.label or f"{self.server} x{self.workers}"


@dataclass
class Run:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    raw: dict[str, float] = field(default_factory=dict)


def train(workdir: Path) -> dict[str, Path]:
    x, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=8, random_state=0)
    estimators = {
        "logreg": LogisticRegression(max_iter=1000),
        "forest": RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0),
    }
    paths = {}
    for name, estimator in estimators.items():
        directory = workdir / "models" / name
        directory.mkdir(parents=True, exist_ok=True)
        paths[name] = directory / "model.joblib"
        joblib.dump(estimator.fit(x, y), paths[name])
    np.save(workdir / "rows.npy", x[:32])
    return paths


def write_grpc_bodies(workdir: Path) -> dict[int, Path]:
    """The same rows as a gRPC ModelInferRequest (protobuf JSON, which ghz sends as protobuf), the values in
    raw_input_contents as tritonclient.grpc sends them, asking for the `predict` output."""
    rows = np.load(workdir / "rows.npy")
    bodies = {}
    for n in (1, 32):
        raw = base64.b64encode(np.ascontiguousarray(rows[:n], dtype="<f8").tobytes()).decode()
        body = {
            "model_name": "logreg",
            "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [n, N_FEATURES]}],
            "outputs": [{"name": "predict"}],
            "raw_input_contents": [raw],
        }
        bodies[n] = workdir / f"grpc-body-{n}.json"
        bodies[n].write_text(json.dumps(body))
    return bodies


def write_bodies(workdir: Path) -> dict[int, Path]:
    """The same Open Inference Protocol v2 body for both servers, asking both for the `predict` output."""
    rows = np.load(workdir / "rows.npy")
    bodies = {}
    for n in (1, 32):
        body = {
            "inputs": [{"name": "input-0", "shape": [n, N_FEATURES], "datatype": "FP64", "data": rows[:n].tolist()}],
            "outputs": [{"name": "predict"}],
        }
        bodies[n] = workdir / f"body-{n}.json"
        bodies[n].write_text(json.dumps(body))
    return bodies


class Server:
    def __init__(self, config: Config, model: str, model_path: Path, workdir: Path, mlserver_python: Path):
        self.config = config
        self.model = model
        self.port = free_port()
        self.grpc_port = free_port()
        self.log = (workdir / "logs" / f"{config.title.replace(' ', '_')}-{model}.log").open("ab")
        command = self._command(model_path, workdir, mlserver_python)
        self.process = subprocess.Popen(
            [*PRIORITY, "taskset", "-c", config.cpus, *command],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
        self._wait_ready()

    def _command(self, model_path: Path, workdir: Path, mlserver_python: Path) -> list[str]:
        if self.config.server == "ours":
            command = [
                sys.executable, "-m", "modelserver", "serve", "--model-uri", str(model_path),
                "--model-name", self.model, "--host", "127.0.0.1", "--port", str(self.port),
                "--grpc-port", str(self.grpc_port),
                "--workers", str(self.config.workers), "--log-level", "warning",
            ]  # fmt: skip
            return [*command, "--batching"] if self.config.batching else command
        repo = workdir / "mlserver" / f"{self.model}-{self.config.workers}"
        repo.mkdir(parents=True, exist_ok=True)
        shutil.copy(model_path, repo / "model.joblib")
        (repo / "model-settings.json").write_text(json.dumps({
            "name": self.model,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }))  # fmt: skip
        # debug=false turns off per-request access logs, as ours has them off by default.
        (repo / "settings.json").write_text(json.dumps({
            "debug": False,
            "host": "127.0.0.1",
            "http_port": self.port,
            "grpc_port": self.grpc_port,
            "metrics_port": free_port(),
            "parallel_workers": self.config.workers if self.config.parallel_workers is None
            else self.config.parallel_workers,
        }))  # fmt: skip
        return [str(mlserver_python.parent / "mlserver"), "start", str(repo)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/models/{self.model}/infer"

    def _wait_ready(self, timeout: float = 120) -> None:
        ready = f"http://127.0.0.1:{self.port}/v2/models/{self.model}/ready"
        wait_until_answers(ready, self.process, Path(self.log.name), within=timeout)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def wrk(url: str, body: Path, *, seconds: int, connections: int, rate: float, workdir: Path) -> Run:
    result = workdir / "wrk-result.jsonl"
    result.unlink(missing_ok=True)
    env = {
        **os.environ,
        "BODY_FILE": str(body),
        "RATE": str(rate),
        "CONNECTIONS": str(connections),
        "RESULT_FILE": str(result),
    }
    command = [
        *PRIORITY, "taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(HERE / "request.lua"), url,
    ]  # fmt: skip
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=seconds + 60)
    raw = json.loads(result.read_text().strip().splitlines()[-1])
    errors = sum(int(raw[k]) for k in ("connect_errors", "read_errors", "write_errors", "non_2xx", "timeouts"))
    return Run(
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=errors,
        raw=raw,
    )


def ghz(ghz_bin: Path, port: int, body: Path, *, seconds: int, concurrency: int, rate: float) -> Run:
    """ghz on CPU 1 as wrk is: `concurrency` requests in flight over one connection (a gRPC client's channel,
    HTTP/2 streams), as fast as they go, or `rate` requests a second on a constant schedule."""
    command = [
        *PRIORITY, "taskset", "-c", "1", str(ghz_bin), "--insecure", "--proto", str(GRPC_PROTO),
        "--call", "inference.GRPCInferenceService.ModelInfer", "--data-file", str(body), "-c", str(concurrency),
        "-z", f"{seconds}s", "--cpus", "1", "--timeout", "10s", "-O", "json",
        *(["--rps", str(round(rate))] if rate else []), f"127.0.0.1:{port}",
    ]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=seconds + 60)
    report = json.loads(done.stdout)
    latency = {int(p["percentage"]): p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
    # When -z runs out, ghz closes its connection with requests still in flight (at most `concurrency`), which it
    # reports as failed ("transport is closing", "the client connection is closing"): the client's doing, not the
    # server's, so they are counted apart.
    errors = cut = 0
    for message, count in (report.get("errorDistribution") or {}).items():
        if "transport is closing" in message or "client connection is closing" in message:
            cut += int(count)
        else:
            errors += int(count)
    return Run(
        rps=float(report["rps"]),
        p50_ms=latency.get(50, float("nan")),
        p90_ms=latency.get(90, float("nan")),
        p99_ms=latency.get(99, float("nan")),
        errors=errors,
        raw={"count": float(report.get("count", 0)), "cut_at_end": float(cut)},
    )


def grpc_runs(path: Path, bodies: dict[int, Path], args: argparse.Namespace) -> dict[tuple[int, str], Run]:
    """Every row of the gRPC section: our gRPC and REST, MLServer's, and grpcio's floor."""
    grpc_bodies = write_grpc_bodies(args.workdir)
    return grpc_vs_rest(path, bodies, grpc_bodies, args) | grpc_floor(grpc_bodies, args)


def grpc_vs_rest(
    path: Path, bodies: dict[int, Path], grpc_bodies: dict[int, Path], args: argparse.Namespace
) -> dict[tuple[int, str], Run]:
    """modelserver x1 and MLServer x1 (one process each, in turn) serving logreg, each loaded over REST (wrk) and over
    gRPC (ghz) in turn: per body size each protocol's saturation, then each at half our REST's saturation rate."""
    results: dict[tuple[int, str], Run] = {}
    for config, prefix in ((Config("ours", 1), ""), (Config("mlserver", 1), "mlserver ")):
        server = Server(config, "logreg", path, args.workdir, args.mlserver_python)
        try:
            for n, body in bodies.items():
                wrk(server.url, body, seconds=2, connections=args.connections, rate=0, workdir=args.workdir)  # warm-up
                ghz(args.ghz, server.grpc_port, grpc_bodies[n], seconds=2, concurrency=args.connections, rate=0)
                results[(n, f"{prefix}rest sat")] = wrk(
                    server.url, body, seconds=args.duration, connections=args.connections, rate=0, workdir=args.workdir
                )
                results[(n, f"{prefix}grpc sat")] = ghz(
                    args.ghz, server.grpc_port, grpc_bodies[n], seconds=args.duration, concurrency=args.connections,
                    rate=0,
                )  # fmt: skip
                rate = results[(n, "rest sat")].rps / 2  # our REST's: every server gets the same offered load
                results[(n, f"{prefix}rest fixed")] = wrk(
                    server.url, body, seconds=args.duration, connections=args.paced_connections, rate=rate,
                    workdir=args.workdir,
                )  # fmt: skip
                results[(n, f"{prefix}grpc fixed")] = ghz(
                    args.ghz, server.grpc_port, grpc_bodies[n], seconds=args.duration,
                    concurrency=args.paced_connections, rate=rate,
                )  # fmt: skip
                print(f"  {prefix or 'modelserver '}grpc vs rest logreg {n:>2} rows: " + ", ".join(
                    f"{kind} {r.rps:8.0f} req/s p50 {r.p50_ms:6.2f} ms p99 {r.p99_ms:7.2f} ms err {r.errors}"
                    for (size, kind), r in results.items() if size == n and kind.startswith(prefix)
                ), flush=True)  # fmt: skip
        finally:
            server.stop()
    return results


FLOOR_SERVERS = {
    "aio": "grpcio aio on uvloop, empty servicer (as ours runs gRPC)",
    "sync": "grpcio thread-pool server, 4 threads, empty servicer",
}


def grpc_floor(grpc_bodies: dict[int, Path], args: argparse.Namespace) -> dict[tuple[int, str], Run]:
    """Each grpcio server of bench/serving/grpc_floor.py (ModelInfer answers a prebuilt response) on CPU 0, loaded
    by ghz at saturation with the 1-row body: the most any servicer on that server can answer here."""
    results: dict[tuple[int, str], Run] = {}
    for kind in FLOOR_SERVERS:
        port = free_port()
        log = (args.workdir / "logs" / f"grpc-floor-{kind}.log").open("ab")
        command = [sys.executable, "-m", "bench.serving.grpc_floor", kind, str(port)]
        process = subprocess.Popen(
            [*PRIORITY, "taskset", "-c", "0", *command], stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parents[1],
            start_new_session=True,
        )  # fmt: skip
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=60)
            ghz(args.ghz, port, grpc_bodies[1], seconds=2, concurrency=args.connections, rate=0)  # warm-up
            results[(1, f"floor {kind}")] = ghz(
                args.ghz, port, grpc_bodies[1], seconds=args.duration, concurrency=args.connections, rate=0
            )
            print(f"  grpcio floor ({kind}): {results[(1, f'floor {kind}')].rps:8.0f} req/s", flush=True)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            log.close()
    return results


def render_grpc(results: dict[tuple[int, str], Run], *, args: argparse.Namespace, info: dict[str, str]) -> list[str]:
    lines = [
        "## gRPC vs REST: modelserver x1 and MLServer x1, logreg, each protocol against the same server process",
        "",
        f"- load generators: REST {info['wrk']} (as above); gRPC ghz {args.ghz_version} (`hack/build-ghz.sh`, built "
        "from its Go module), 1 CPU, on CPU 1 like wrk; each server on CPU 0, one at a time. Same rows and "
        "`predict` output; gRPC sends them in raw_input_contents (as tritonclient.grpc does), REST as JSON.",
        f"- saturation: {args.connections} requests in flight ({args.connections} wrk connections; ghz "
        f"-c {args.connections} over one HTTP/2 connection), {args.duration} s after a 2 s warm-up each. Fixed "
        f"load: half REST's saturation rate, {args.paced_connections} connections/workers (wrk: exponential think "
        "times; ghz: a constant schedule).",
        "",
        "| rows/request | server and protocol | saturation req/s | p50 / p99 ms at saturation | fixed load req/s "
        "| p50 / p99 ms at fixed load | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"rest": "REST (OIP v2 JSON)", "grpc": "gRPC (OIP v2, raw contents)"}
    for n in (1, 32):
        for prefix, server in (("", "modelserver"), ("mlserver ", "MLServer")):
            for protocol in ("rest", "grpc"):
                sat, fixed = results.get((n, f"{prefix}{protocol} sat")), results.get((n, f"{prefix}{protocol} fixed"))
                if not (sat and fixed):
                    continue
                lines.append(
                    f"| {n} | {server} {names[protocol]} | {sat.rps:,.0f} | {sat.p50_ms:.2f} / {sat.p99_ms:.2f} "
                    f"| {fixed.rps:,.0f} | {fixed.p50_ms:.2f} / {fixed.p99_ms:.2f} | {sat.errors + fixed.errors} |"
                )
        rest, grpc_ = results.get((n, "rest sat")), results.get((n, "grpc sat"))
        if rest and grpc_:
            lines.append(f"| {n} | modelserver gRPC / REST | **{grpc_.rps / rest.rps:.2f}x** | | | | |")
        theirs = results.get((n, "mlserver grpc sat"))
        if grpc_ and theirs:
            lines.append(f"| {n} | modelserver gRPC / MLServer gRPC | **{grpc_.rps / theirs.rps:.2f}x** | | | | |")
        for kind, title in FLOOR_SERVERS.items():
            floor = results.get((n, f"floor {kind}"))
            if floor is None:
                continue
            lines.append(
                f"| {n} | {title} | {floor.rps:,.0f} | {floor.p50_ms:.2f} / {floor.p99_ms:.2f} | | | {floor.errors} |"
            )
            if grpc_:
                lines.append(f"| {n} | modelserver gRPC / this floor | **{grpc_.rps / floor.rps:.2f}x** | | | | |")
    return [*lines, ""]


def measure(
    *,
    config: Config,
    model: str,
    path: Path,
    bodies: dict[int, Path],
    args: argparse.Namespace,
    rates: dict[int, float] | None,
) -> dict[tuple[int, str], Run]:
    """Per body size: saturation, then a fixed offered load of `rates[n]` (None: half this server's own
    saturation; an empty dict: no fixed-load run)."""
    server = Server(config, model, path, args.workdir, args.mlserver_python)
    results: dict[tuple[int, str], Run] = {}
    try:
        for n, body in bodies.items():
            wrk(server.url, body, seconds=2, connections=args.connections, rate=0, workdir=args.workdir)  # warm-up
            results[(n, "sat")] = wrk(
                server.url, body, seconds=args.duration, connections=args.connections, rate=0, workdir=args.workdir
            )
            rate = results[(n, "sat")].rps / 2 if rates is None else rates.get(n)
            if rate:
                results[(n, "fixed")] = wrk(
                    server.url, body, seconds=args.duration, connections=args.paced_connections,
                    rate=rate, workdir=args.workdir,
                )  # fmt: skip
            print(f"  {config.title:<22} {model:<7} {n:>2} rows: " + ", ".join(
                f"{kind} {r.rps:8.0f} req/s p50 {r.p50_ms:6.2f} ms p99 {r.p99_ms:7.2f} ms err {r.errors}"
                for (size, kind), r in results.items() if size == n
            ), flush=True)  # fmt: skip
    finally:
        server.stop()
    return results


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
    banner = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    wrk_version = " ".join(banner.split()[:2])
    return {
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": wrk_version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mlserver-python", type=Path, required=True)
    parser.add_argument("--mlserver-version", default="")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--paced-connections", type=int, default=16)
    parser.add_argument("--ghz", type=Path, required=True, help="the ghz binary (hack/build-ghz.sh)")
    parser.add_argument("--ghz-version", default="")
    parser.add_argument("--grpc-only", action="store_true", help="only the gRPC vs REST comparison, appended to --out")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()  # servers run with the workdir as cwd
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "logs").mkdir(exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    paths = train(args.workdir)
    bodies = write_bodies(args.workdir)
    if args.grpc_only:
        print("gRPC vs REST, logreg, 1 worker", flush=True)
        grpc_results = grpc_runs(paths["logreg"], bodies, args)
        finished = dt.datetime.now(dt.UTC)
        info = machine() | {"load_before": load_before}
        section = [
            f"# gRPC vs REST, {started:%Y-%m-%d %H:%M} UTC (run alone, after the comparison above)",
            "",
            f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} memory, kernel {info['kernel']}, "
            f"Python {info['python']}; load average {info['load_before']} before, {info['load']} after "
            f"(took {(finished - started).total_seconds() / 60:.0f} min)",
            f"- command: `make bench-serving BENCH_ARGS=--grpc-only` (`bench/serving/run.py --grpc-only --duration "
            f"{args.duration} --connections {args.connections} --paced-connections {args.paced_connections}`)",
            "",
            *render_grpc(grpc_results, args=args, info=info),
        ]
        with args.out.open("a") as out:
            out.write("\n" + "\n".join(section))
        print("\n".join(section))
        return
    single_process = Config("mlserver", 1, parallel_workers=0, label="mlserver x1 pw0")
    configs = [Config("ours", 1), Config("mlserver", 1), Config("ours", 2), Config("mlserver", 2), single_process]
    batching = Config("ours", 1, batching=True, label="ours x1 +batching")
    results: dict[tuple[str, str], dict[tuple[int, str], Run]] = {}
    for model, path in paths.items():
        for workers in (1, 2):
            ours = Config("ours", workers)
            print(f"{model}, {workers} worker(s)", flush=True)
            # Ours first: the fixed offered load is half of our saturation, applied to both servers.
            results[(ours.title, model)] = measure(
                config=ours, model=model, path=path, bodies=bodies, args=args, rates=None
            )
            rates = {n: results[(ours.title, model)][(n, "sat")].rps / 2 for n in bodies}
            theirs = [Config("mlserver", workers)] + ([single_process] if workers == 1 else [])
            for config in theirs:
                results[(config.title, model)] = measure(
                    config=config, model=model, path=path, bodies=bodies, args=args, rates=rates
                )
        results[(batching.title, model)] = measure(
            config=batching, model=model, path=path, bodies={1: bodies[1]}, args=args, rates={}
        )
    print("gRPC vs REST, logreg, 1 worker", flush=True)
    grpc_results = grpc_runs(paths["logreg"], bodies, args)
    finished = dt.datetime.now(dt.UTC)
    info = machine() | {"load_before": load_before}
    report = render(results, configs=configs, batching=batching, info=info, args=args, span=(started, finished))
    report += "\n" + "\n".join(render_grpc(grpc_results, args=args, info=info))
    args.out.write_text(report)
    print(report)


def render(
    results: dict[tuple[str, str], dict[tuple[int, str], Run]],
    *,
    configs: list[Config],
    batching: Config,
    info: dict[str, str],
    args: argparse.Namespace,
    span: tuple[dt.datetime, dt.datetime],
) -> str:
    started, finished = span

    def r(config: Config, model: str, n: int, kind: str) -> Run | None:
        return results.get((config.title, model), {}).get((n, kind))

    lines = [
        "# Serving benchmark: modelserver vs MLServer",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC (took {(finished - started).total_seconds() / 60:.0f} min)",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} memory, kernel {info['kernel']}, "
        f"Python {info['python']}; load average (1/5/15 min) {info['load_before']} before the run, "
        f"{info['load']} after it (other processes on the machine share the 2 cores)",
        f"- command: `make bench-serving` (runs `bench/serving/run.py --duration {args.duration} "
        f"--connections {args.connections} --paced-connections {args.paced_connections}`)",
        f"- servers: modelserver (this repo) vs MLServer {args.mlserver_version} + mlserver-sklearn, same "
        "scikit-learn version and the same joblib files; both asked for the `predict` output with the same "
        "Open Inference Protocol v2 JSON body on `POST /v2/models/<name>/infer`.",
        "- workers: `x1` = one worker process: modelserver `--workers 1`; MLServer both with its default "
        "`parallel_workers: 1` (HTTP process + one inference process) and with `parallel_workers: 0` "
        "(inference in the HTTP process). `x2` = the count each recommends for 2 cores (modelserver: one "
        "per core, `--workers 2`; MLServer: `parallel_workers` = cores = 2). MLServer runs with "
        "`debug: false` so it writes no access log, like modelserver.",
        f"- load generator: {info['wrk']} with `bench/serving/request.lua`, 1 thread. A C program on its own core "
        "saturates neither server first, which a Python generator on 2 cores would.",
        f"- priority: servers and wrk run under `{' '.join(PRIORITY) or 'the default priority'}`, so other "
        "processes on the machine disturb them less.",
        "- pinning (`taskset`): x1 servers on CPU 0 (every process of theirs) and wrk on CPU 1; x2 servers on "
        "CPUs 0-1 with wrk sharing CPU 1 (same for both servers, so x2 numbers are lower bounds for both).",
        f"- saturation: {args.connections} connections as fast as they go, {args.duration} s after a 2 s warm-up. "
        f"Fixed load: {args.paced_connections} connections with exponential think times offering half of "
        "modelserver's saturation rate for that row, to both servers (achieved rate shown; a server "
        "that saturates below it shows its saturation latency).",
        "",
    ]
    for model, description in MODELS.items():
        lines += [f"## {model}: {description}", ""]
        lines += [
            "| rows/request | configuration | modelserver req/s | MLServer req/s | ratio | fixed load req/s "
            "| modelserver p50 / p99 ms | MLServer p50 / p99 ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        pairs = [
            ("x1 vs MLServer x1 (parallel_workers 1, its default)", configs[0], configs[1]),
            ("x1 vs MLServer x1 (parallel_workers 0: one process)", configs[0], configs[4]),
            ("x2 vs MLServer x2 (parallel_workers 2)", configs[2], configs[3]),
        ]
        for n in (1, 32):
            for pair, ours, theirs in pairs:
                sat_o, sat_t = r(ours, model, n, "sat"), r(theirs, model, n, "sat")
                fix_o, fix_t = r(ours, model, n, "fixed"), r(theirs, model, n, "fixed")
                if not (sat_o and sat_t and fix_o and fix_t):
                    continue
                lines.append(
                    f"| {n} | {pair} | {sat_o.rps:,.0f} | {sat_t.rps:,.0f} | **{sat_o.rps / sat_t.rps:.1f}x** "
                    f"| {fix_o.rps:,.0f} / {fix_t.rps:,.0f} | {fix_o.p50_ms:.2f} / {fix_o.p99_ms:.2f} "
                    f"| {fix_t.p50_ms:.2f} / {fix_t.p99_ms:.2f} |"
                )
        plain, batched = r(configs[0], model, 1, "sat"), r(batching, model, 1, "sat")
        if plain and batched:
            lines += [
                "",
                f"Adaptive batching, 1 row/request, x1, {args.connections} connections: "
                f"{plain.rps:,.0f} req/s off -> {batched.rps:,.0f} req/s on (**{batched.rps / plain.rps:.2f}x**), "
                f"p99 {plain.p99_ms:.2f} -> {batched.p99_ms:.2f} ms.",
            ]
        errors = sum(run.errors for (title, m), runs in results.items() if m == model for run in runs.values())
        lines += ["", f"Errors (connect/read/write/timeouts/non-2xx) over all runs of this model: {errors}.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
