"""Batch scoring benchmark: `modelserver batch` against the floor, the raw model call and the pandas script a user
writes today, on the same files, model and machine, in one run (`make bench-batch`).

Contenders, each a fresh process (its wall time and its own peak RSS, from wait4):
- ours: `python -m modelserver batch` (validation, rejects, manifest, summary, commit);
- floor: a tight loop of pyarrow read (record batches) -> predict_proba -> pyarrow parquet write, nothing else:
  the cost of I/O plus predict, which no scorer can beat;
- pandas: per file, pandas read_csv / read_parquet -> predict_proba -> DataFrame.to_parquet;
- predict: predict_proba alone on the rows already in memory (timed inside the process, load excluded).
And 2 shards: two `modelserver batch` processes at once (shard 0 and 1 of 2) against one process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

N_FEATURES = 20
FILES = 4
MODELS = {"logreg": "LogisticRegression", "forest": "RandomForestClassifier, 100 trees, depth 12"}

FLOOR = """
import sys, joblib, numpy as np, pyarrow as pa, pyarrow.dataset as ds, pyarrow.parquet as pq
model_path, data_dir, fmt, out = sys.argv[1:5]
model = joblib.load(model_path)
names = [f"f{i}" for i in range(20)]
writer = None
for batch in ds.dataset(data_dir, format=fmt).to_batches(columns=names, batch_size=65536):
    x = np.column_stack([batch.column(n).to_numpy(zero_copy_only=False) for n in names])
    proba = model.predict_proba(x)
    table = pa.table({"probability_0": proba[:, 0], "probability_1": proba[:, 1]})
    writer = writer or pq.ParquetWriter(out, table.schema)
    writer.write_table(table)
writer.close()
"""

PANDAS = """
import sys, glob, joblib, pandas as pd
model_path, data_dir, fmt, out = sys.argv[1:5]
model = joblib.load(model_path)
names = [f"f{i}" for i in range(20)]
for i, path in enumerate(sorted(glob.glob(f"{data_dir}/*.{fmt}"))):
    frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    proba = model.predict_proba(frame[names].to_numpy())
    result = pd.DataFrame({"id": frame["id"], "probability_0": proba[:, 0], "probability_1": proba[:, 1]})
    result.to_parquet(f"{out}-{i}.parquet")
"""

PREDICT = """
import sys, time, joblib, numpy as np, pyarrow.dataset as ds
model_path, data_dir, fmt = sys.argv[1:4]
model = joblib.load(model_path)
names = [f"f{i}" for i in range(20)]
table = ds.dataset(data_dir, format=fmt).to_table(columns=names)
x = np.column_stack([table.column(n).to_numpy() for n in names])
began = time.perf_counter()
model.predict_proba(x)
print(time.perf_counter() - began)
"""


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mb: float


# Children write bytecode as a built image would have it (this machine sets PYTHONDONTWRITEBYTECODE, which would
# make every process compile its imports from source, every time).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the peak resident set of the process's own memory since its exec (ru_maxrss from wait4 would
    include the parent's pages the child shared between fork and exec)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(command: list[str], *, log: Path) -> tuple[Measured, str]:
    """Run a process to its end; its wall time, its peak RSS (sampled every 20 ms) and its stdout."""
    began = time.perf_counter()
    peak = 0.0
    with log.open("ab") as err, (log.parent / "stdout.tmp").open("w+b") as out:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=CHILD_ENV)
        while process.poll() is None:
            peak = max(peak, _peak_rss_mb(process.pid) or 0.0)
            time.sleep(0.02)
        seconds = time.perf_counter() - began
        out.seek(0)
        text = out.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed ({process.returncode}); see {log}")
    return Measured(seconds, peak), text


def make_data(workdir: Path, rows: int) -> dict[str, Path]:
    """The same rows as parquet and csv files (FILES of each), and both models."""
    x, _ = make_classification(n_samples=rows, n_features=N_FEATURES, n_informative=8, random_state=0)
    table = pa.table({"id": np.arange(rows), **{f"f{i}": x[:, i] for i in range(N_FEATURES)}})
    dirs = {}
    for fmt in ("parquet", "csv"):
        directory = workdir / f"data-{rows}-{fmt}"
        directory.mkdir(parents=True, exist_ok=True)
        step = -(-rows // FILES)
        for i in range(FILES):
            piece = table.slice(i * step, step)
            path = directory / f"part-{i}.{fmt}"
            if not path.exists():
                pq.write_table(piece, path) if fmt == "parquet" else pacsv.write_csv(piece, path)
        dirs[fmt] = directory
    return dirs


def train(workdir: Path) -> dict[str, Path]:
    x, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=8, random_state=0)
    estimators = {
        "logreg": LogisticRegression(max_iter=1000),
        "forest": RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0),
    }
    paths = {}
    for name, estimator in estimators.items():
        paths[name] = workdir / f"{name}.joblib"
        joblib.dump(estimator.fit(x, y), paths[name])
    return paths


def ours(model: Path, data: Path, out: Path, fmt: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "modelserver", "batch", "--model-uri", str(model), "--input", str(data),
        "--input-format", fmt, "--output", str(out), "--id", "id", "--termination-log", str(out) + ".result",
        "--log-level", "warning", *extra,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    log = args.workdir / "bench.log"
    models = train(args.workdir)
    warm = make_data(args.workdir, 10_000)  # one untimed run of each, so every timed one finds its bytecode
    for script in (FLOOR, PANDAS):
        run([sys.executable, "-c", script, str(models["logreg"]), str(warm["parquet"]), "parquet",
             str(args.workdir / "warm")], log=log)  # fmt: skip
    run(ours(models["logreg"], warm["parquet"], args.workdir / "warm-ours", "parquet"), log=log)
    started = dt.datetime.now(dt.UTC)
    lines: list[str] = []
    rss: dict[tuple[str, str, str], dict[int, float]] = {}
    for rows in args.rows:
        data = make_data(args.workdir, rows)
        for name in args.models:
            for fmt in ("parquet", "csv"):
                out = args.workdir / f"out-{rows}-{name}-{fmt}"
                subprocess.run(["rm", "-rf", str(out)], check=True)
                script = [str(models[name]), str(data[fmt]), fmt]
                measured = {
                    "ours": run(ours(models[name], data[fmt], out / "ours", fmt), log=log)[0],
                    "floor": run([sys.executable, "-c", FLOOR, *script, f"{out}-floor.parquet"], log=log)[0],
                    "pandas": run([sys.executable, "-c", PANDAS, *script, f"{out}-pandas"], log=log)[0],
                }
                predict_s = float(run([sys.executable, "-c", PREDICT, *script], log=log)[1].strip())
                shard = ("--shard-count", "2", "--run-token", "bench")
                shard_runs = [
                    subprocess.Popen(
                        ours(models[name], data[fmt], out / "sharded", fmt, "--shard-index", str(i), *shard),
                        stderr=log.open("ab"),
                        env=CHILD_ENV,
                    )
                    for i in range(2)
                ]
                began = time.perf_counter()
                if any(p.wait() != 0 for p in shard_runs):
                    raise RuntimeError(f"a sharded run failed; see {log}")
                sharded_s = time.perf_counter() - began
                rate = {k: rows / m.seconds for k, m in measured.items()}
                for k, m in measured.items():
                    rss.setdefault((k, name, fmt), {})[rows] = m.peak_rss_mb
                lines.append(
                    f"| {rows:,} | {name} | {fmt} | {rate['ours']:,.0f} | {rate['floor']:,.0f} | {rate['pandas']:,.0f}"
                    f" | {rows / predict_s:,.0f} | **{rate['ours'] / rate['floor']:.2f}** | "
                    f"**{rate['ours'] / rate['pandas']:.2f}** | {rows / sharded_s:,.0f} "
                    f"({measured['ours'].seconds / sharded_s:.2f}x) | {measured['ours'].peak_rss_mb:,.0f} / "
                    f"{measured['floor'].peak_rss_mb:,.0f} / {measured['pandas'].peak_rss_mb:,.0f} |"
                )
                print(lines[-1], flush=True)
    finished = dt.datetime.now(dt.UTC)
    memory = []
    if len(args.rows) > 1:
        small, big = min(args.rows), max(args.rows)
        for (k, name, fmt), by_rows in sorted(rss.items()):
            if small in by_rows and big in by_rows:
                memory.append(f"| {k} | {name} | {fmt} | {by_rows[small]:,.0f} | {by_rows[big]:,.0f} | "
                              f"{by_rows[big] / by_rows[small]:.2f} |")  # fmt: skip
    report = [
        "# Batch scoring: `modelserver batch` vs the floor, the raw model call and a pandas script",
        "",
        f"- machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}",
        f"- date: {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC",
        f"- command: `make bench-batch` (`python -m bench.batch.run --rows {' '.join(map(str, args.rows))}`)",
        f"- data: make_classification, {N_FEATURES} float64 features + an int64 id, {FILES} files per input, "
        "local disk; models: " + "; ".join(f"{k}: {v}" for k, v in MODELS.items() if k in args.models),
        "- rows/s = rows / wall time of a fresh process (start-up, model load, read, predict, write; bytecode"
        " cached, as in an image); `predict` is predict_proba alone on rows in memory; peak RSS = each process's"
        " VmHWM, sampled every 20 ms",
        "",
        "| rows | model | input | ours rows/s | floor rows/s | pandas rows/s | predict rows/s | ours / floor | "
        "ours / pandas | 2 shards rows/s (speed-up) | peak RSS MB ours / floor / pandas |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *lines,
    ]
    if memory:
        title = f"Peak RSS, {min(args.rows):,} vs {max(args.rows):,} rows (flat memory: the ratio stays near 1):"
        header = ["| contender | model | input | MB small | MB big | big / small |", "|---|---|---|---:|---:|---:|"]
        report += ["", title, "", *header, *memory]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
