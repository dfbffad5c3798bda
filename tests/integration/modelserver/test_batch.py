"""`modelserver batch` as a process against a real S3-compatible server (SeaweedFS): a nightly-style run from S3 to
S3, a run killed with SIGKILL in the middle of writing, which must leave nothing visible, and whose retry
commits a complete run; a shadow run's comparison against scikit-learn's own numbers, and a canary by key: two
models' shares of one run."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from testkit.models import train_classifiers
from testkit.prometheus import Pushgateway
from testkit.s3 import CREDENTIALS, S3Server
from testkit.waiting import wait_until

from modelrollout_contract import metrics as names
from modelrollout_contract.batch import MANIFEST_NAME, Manifest, RunResult
from modelrollout_contract.sticky import bucket

pytestmark = pytest.mark.integration

BUCKET = "lake"
FEATURES = 8
RUN_DIR = "scores/date=2026-12-03"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server) -> S3Server:
    """The module's S3 server, emptied, with the bucket the test writes to."""
    s3_server.reset()
    s3_server.client().create_bucket(Bucket=BUCKET)
    return s3_server


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Slow enough per row that a big input takes seconds: time to kill the scorer while it writes."""
    x = np.random.default_rng(1).normal(size=(2000, FEATURES))
    path = tmp_path_factory.mktemp("model") / "forest.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=60, random_state=0).fit(x, x[:, 0] + x[:, 1] > 0), path)
    return path


def upload_input(s3: S3Server, rows: int, files: int) -> None:
    x = np.random.default_rng(0).normal(size=(rows, FEATURES))
    data = pa.table({"id": np.arange(rows), **{f"f{i}": x[:, i] for i in range(FEATURES)}})
    step = -(-rows // files)
    for i in range(files):
        buffer = io.BytesIO()
        pq.write_table(data.slice(i * step, step), buffer)
        s3.client().put_object(Bucket=BUCKET, Key=f"events/date=2026-12-03/part-{i}.parquet", Body=buffer.getvalue())


def scorer(
    s3: S3Server, model: Path, tmp_path: Path, *extra: str, version: str = "3", result: str = "result.json"
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "modelserver", "batch", "--model-uri", str(model), "--model-name", "churn",
        "--model-version", version, "--input", f"s3://{BUCKET}/events/date={{date}}/",
        "--output", f"s3://{BUCKET}/scores/date={{date}}", "--id", "id", "--run", "2026-12-03T02:00:00Z",
        "--s3-endpoint-url", s3.url, "--termination-log", str(tmp_path / result), "--log-text", *extra,
    ]  # fmt: skip
    log = (tmp_path / "scorer.log").open("ab")
    return subprocess.Popen(command, env={**os.environ, **CREDENTIALS}, stdout=log, stderr=subprocess.STDOUT)


def manifest(s3: S3Server) -> Manifest | None:
    if f"{RUN_DIR}/{MANIFEST_NAME}" not in s3.keys(BUCKET, RUN_DIR):
        return None
    body = s3.client().get_object(Bucket=BUCKET, Key=f"{RUN_DIR}/{MANIFEST_NAME}")["Body"].read()
    return Manifest.model_validate(json.loads(body))


def committed(s3: S3Server, found: Manifest) -> pa.Table:
    tables = []
    for part in found.parts:
        key = part.path.removeprefix(f"s3://{BUCKET}/")
        tables.append(pq.read_table(io.BytesIO(s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())))
    return pa.concat_tables(tables)


def committed_ids(s3: S3Server, found: Manifest) -> list[int]:
    return sorted(committed(s3, found).column("id").to_pylist())


def test_a_nightly_run_from_s3_to_s3(s3: S3Server, forest: Path, tmp_path: Path) -> None:
    upload_input(s3, rows=5_000, files=4)
    assert scorer(s3, forest, tmp_path).wait(120) == 0, (tmp_path / "scorer.log").read_text()
    found = manifest(s3)
    assert found is not None
    assert committed_ids(s3, found) == list(range(5_000))
    assert [ref.path for ref in found.inputs] == [
        f"s3://{BUCKET}/events/date=2026-12-03/part-{i}.parquet" for i in range(4)
    ]
    assert all(ref.bytes > 0 for ref in found.inputs)
    result = RunResult.model_validate_json((tmp_path / "result.json").read_text())
    assert result.manifest == f"s3://{BUCKET}/{RUN_DIR}/{MANIFEST_NAME}"
    assert result.counts.scored == 5_000


def test_a_scorer_killed_mid_run_leaves_nothing_visible_and_the_retry_commits(
    s3: S3Server, forest: Path, tmp_path: Path
) -> None:
    rows = 400_000
    upload_input(s3, rows=rows, files=8)
    small_parts = ("--batch-rows", "2000", "--part-rows", "10000")
    process = scorer(s3, forest, tmp_path, *small_parts)

    def first_part() -> bool:
        assert process.poll() is None, f"the scorer ended early:\n{(tmp_path / 'scorer.log').read_text()}"
        return any(k.rsplit("/", 1)[-1].startswith("part-") for k in s3.keys(BUCKET, RUN_DIR))

    wait_until(
        first_part,
        within=120,
        interval=0.05,
        what=lambda: f"a first part written:\n{(tmp_path / 'scorer.log').read_text()}",
    )
    process.send_signal(signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL
    crashed = [k for k in s3.keys(BUCKET, RUN_DIR) if k.rsplit("/", 1)[-1].startswith("part-")]
    assert crashed, "the kill came after parts were written"
    assert manifest(s3) is None, "a killed run committed nothing"

    assert scorer(s3, forest, tmp_path, *small_parts).wait(300) == 0, (tmp_path / "scorer.log").read_text()
    found = manifest(s3)
    assert found is not None
    assert committed_ids(s3, found) == list(range(rows)), "every record exactly once"
    # (pyarrow's S3 filesystem leaves an empty `dir/` marker object after deleting a file in it: not data.)
    left = {key for key in s3.keys(BUCKET, RUN_DIR) if not key.endswith("/")}
    assert not left & set(crashed), "the retry removed the killed attempt's parts"
    assert left == {f"{RUN_DIR}/{MANIFEST_NAME}"} | {p.path.removeprefix(f"s3://{BUCKET}/") for p in found.parts}


def test_a_run_pushes_its_numbers_to_a_real_pushgateway(s3: S3Server, forest: Path, tmp_path: Path) -> None:
    upload_input(s3, rows=1_000, files=1)
    with Pushgateway(tmp_path) as gateway:
        process = scorer(s3, forest, tmp_path, "--pushgateway-url", gateway.url)
        assert process.wait(120) == 0, (tmp_path / "scorer.log").read_text()
        records = {labels["result"]: value for labels, value in gateway.samples(names.BATCH_RECORDS)}
        assert records == {"scored": 1_000, "rejected": 0}
        (labels, duration), *_ = gateway.samples(names.BATCH_RUN_DURATION)
        assert labels["job"] == "modelserver-batch"
        assert (labels["model"], labels["version"]) == ("churn", "3")
        assert duration > 0
        (_, committed), *_ = gateway.samples(names.BATCH_LAST_SUCCESS)

        # A failing run (its input gone) replaces the counts but not the time of the last commit.
        s3.client().delete_object(Bucket=BUCKET, Key="events/date=2026-12-03/part-0.parquet")
        assert scorer(s3, forest, tmp_path, "--pushgateway-url", gateway.url).wait(60) == 5
        assert {labels["result"]: value for labels, value in gateway.samples(names.BATCH_RECORDS)} == {
            "scored": 0,
            "rejected": 0,
        }
        assert gateway.samples(names.BATCH_LAST_SUCCESS)[0][1] == committed


def upload_rows(s3: S3Server, rows: np.ndarray[Any, Any], files: int) -> None:
    data = pa.table({"id": np.arange(len(rows)), **{f"f{i}": rows[:, i] for i in range(rows.shape[1])}})
    step = -(-len(rows) // files)
    for i in range(files):
        buffer = io.BytesIO()
        pq.write_table(data.slice(i * step, step), buffer)
        s3.client().put_object(Bucket=BUCKET, Key=f"events/date=2026-12-03/part-{i}.parquet", Body=buffer.getvalue())


def sketch_psi(candidate: np.ndarray[Any, Any], reference: np.ndarray[Any, Any], accuracy: float = 0.01) -> float:
    """The scorer's documented PSI estimator, written again from its definition: values binned by their DDSketch
    bucket (ceil(log_gamma(v)); zeros below every bucket), edges at the buckets of the reference's deciles."""
    gamma = (1 + accuracy) / (1 - accuracy)

    def keys(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        assert (values >= 0).all(), "probabilities"
        found = np.full(len(values), -np.inf)
        positive = values >= 1e-12
        found[positive] = np.ceil(np.log(values[positive]) / np.log(gamma))
        return np.sort(found)

    ours, theirs = keys(candidate), keys(reference)
    edges = np.unique([theirs[int(np.floor(q / 10 * (len(theirs) - 1)))] for q in range(1, 10)])

    def shares(sorted_keys: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        below = np.searchsorted(sorted_keys, edges, side="right") / len(sorted_keys)
        return np.maximum(np.diff(np.concatenate([[0.0], below, [1.0]])), 1e-4)

    c, r = shares(ours), shares(theirs)
    return float(np.sum((c - r) * np.log(c / r)))


def test_a_shadow_run_compares_the_candidate_with_the_reference(s3: S3Server, tmp_path: Path) -> None:
    models = train_classifiers(tmp_path / "models")
    x = models.dataset.rows
    stable = joblib.load(models.stable.path)
    # The candidate learnt labels flipped on a fifth of the rows (a tree remembers every one of them).
    flipped = np.where(np.arange(len(x)) % 5 == 0, 1 - stable.predict(x), stable.predict(x))
    candidate = DecisionTreeClassifier(random_state=0).fit(x, flipped)
    candidate_path = tmp_path / "candidate.joblib"
    joblib.dump(candidate, candidate_path)
    upload_rows(s3, x, files=2)
    reference = ("--reference-model-uri", str(models.stable.path), "--reference-model-version", "2")
    assert scorer(s3, candidate_path, tmp_path, *reference).wait(120) == 0, (tmp_path / "scorer.log").read_text()

    found = manifest(s3)
    assert found is not None
    out = committed(s3, found)
    assert sorted(out.column("id").to_pylist()) == list(range(len(x)))
    assert set(out.column("model_version").to_pylist()) == {"3"}, "the reference's predictions are not written"
    compared = found.comparison
    assert compared is not None
    # scikit-learn's own numbers on the same rows.
    c, r = candidate.predict_proba(x)[:, 1], stable.predict_proba(x)[:, 1]
    agreement = float(np.mean(candidate.predict(x) == stable.predict(x)))
    assert agreement == pytest.approx(0.8, abs=0.01)
    assert (compared.records, compared.scored, compared.reference_scored) == (len(x), len(x), len(x))
    assert compared.agreement == pytest.approx(agreement, abs=1e-12)
    assert compared.mean_abs_diff == pytest.approx(float(np.mean(np.abs(c - r))), rel=1e-9)
    assert compared.max_abs_diff == pytest.approx(float(np.max(np.abs(c - r))), rel=1e-9)
    assert compared.psi is not None
    assert compared.psi == pytest.approx(sketch_psi(c, r), rel=1e-9)
    assert compared.psi > 0.25, "a candidate this far off has drifted"
    assert compared.reference.version == "2"
    assert compared.reference.sha256 == hashlib.sha256(models.stable.path.read_bytes()).hexdigest()
    assert compared.seconds > 0
    assert compared.reference_seconds > 0
    result = RunResult.model_validate_json((tmp_path / "result.json").read_text())
    assert result.comparison == compared


def test_a_canary_by_key_commits_both_models_shares_of_one_run(s3: S3Server, forest: Path, tmp_path: Path) -> None:
    upload_input(s3, rows=5_000, files=4)
    x = np.random.default_rng(3).normal(size=(500, FEATURES))
    candidate = tmp_path / "candidate.joblib"
    joblib.dump(LogisticRegression().fit(x, x[:, 0] + x[:, 1] > 0), candidate)
    split = ("--key-column", "id", "--shard-count", "2")
    stable_run = scorer(s3, forest, tmp_path, *split, "--shard-index", "0", "--key-from", "3000", version="3",
                        result="stable.json")  # fmt: skip
    assert stable_run.wait(120) == 0, (tmp_path / "scorer.log").read_text()
    assert manifest(s3) is None, "one share is not the run"
    canary_run = scorer(s3, candidate, tmp_path, *split, "--shard-index", "1", "--key-to", "3000", version="4",
                        result="canary.json")  # fmt: skip
    assert canary_run.wait(120) == 0, (tmp_path / "scorer.log").read_text()

    found = manifest(s3)
    assert found is not None
    out = committed(s3, found)
    ids = out.column("id").to_pylist()
    assert sorted(ids) == list(range(5_000)), "every input record exactly once"
    canary_keys = {i for i in range(5_000) if bucket(str(i)) < 3000}
    versions = dict(zip(ids, out.column("model_version").to_pylist(), strict=True))
    assert {i for i, v in versions.items() if v == "4"} == canary_keys
    assert {i for i, v in versions.items() if v == "3"} == set(range(5_000)) - canary_keys
    assert [(m.version, m.sha256) for m in found.models] == [
        ("3", hashlib.sha256(forest.read_bytes()).hexdigest()),
        ("4", hashlib.sha256(candidate.read_bytes()).hexdigest()),
    ]
    assert [(s.model.version, s.keys.start if s.keys else None, s.counts.read) for s in found.shares] == [
        ("3", 3000, 5_000 - len(canary_keys)),
        ("4", 0, len(canary_keys)),
    ]
    canary = RunResult.model_validate_json((tmp_path / "canary.json").read_text())
    assert canary.manifest == f"s3://{BUCKET}/{RUN_DIR}/{MANIFEST_NAME}"
    assert canary.counts.read == len(canary_keys), "the canary's pod reports its share"
