"""Whole runs of the scorer on local files: every record scored exactly once, the manifest as the commit, bad
input refused before anything is written, invalid records by policy, a retry replacing only its own parts; the
run's time from its Job's name, a canary by key (two models, two shares of one run) and a shadow run's
comparison."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier

from modelrollout_contract.batch import TERMINATION_MESSAGE_LIMIT, KeyRange, RunResult
from modelrollout_contract.sticky import bucket
from modelserver.batch.commit import read_manifest
from modelserver.batch.errors import BatchError
from modelserver.batch.run import main, score_run
from modelserver.batch.settings import BatchSettings
from modelserver.batch.uris import Location, locate

FEATURES = 4
ROWS = 1_000


def table(rows: int = ROWS, seed: int = 0) -> pa.Table:
    x = np.random.default_rng(seed).normal(size=(rows, FEATURES))
    return pa.table({"id": np.arange(rows), **{f"f{i}": x[:, i] for i in range(FEATURES)}, "note": ["n"] * rows})


@pytest.fixture
def classifier(tmp_path: Path) -> Path:
    x = np.random.default_rng(1).normal(size=(200, FEATURES))
    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0), path)
    return path


def settings(tmp_path: Path, model: Path, **overrides: Any) -> BatchSettings:
    values: dict[str, Any] = {
        "model_uri": str(model),
        "model_name": "churn",
        "model_version": "2",
        "input_uri": str(tmp_path / "in"),
        "output_uri": str(tmp_path / "out" / "date={date}"),
        "id_columns": ["id"],
        "scheduled_time": "2026-12-03T02:00:00Z",
        "termination_log": tmp_path / "termination-log",
        "batch_rows": 128,  # many batches, as a big input has
        "part_rows": 300,
    }
    return BatchSettings(**{**values, **overrides})


def write_input(tmp_path: Path, data: pa.Table, *, files: int = 3) -> None:
    (tmp_path / "in").mkdir(exist_ok=True)
    step = -(-data.num_rows // files)
    for i in range(files):
        pq.write_table(data.slice(i * step, step), tmp_path / "in" / f"part-{i}.parquet")
    (tmp_path / "in" / "_SUCCESS").write_text("")  # metadata files are not input


def output_rows(tmp_path: Path) -> pa.Table:
    manifest = read_manifest(locate(str(tmp_path / "out" / "date=2026-12-03")))
    assert manifest is not None
    return pa.concat_tables(pq.read_table(part.path) for part in manifest.parts)


def test_a_run_scores_every_record_once_and_commits_its_manifest_last(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table())
    assert main(settings(tmp_path, classifier)) == 0

    out = output_rows(tmp_path)
    assert sorted(out.column("id").to_pylist()) == list(range(ROWS))
    assert out.column_names == ["id", "prediction", "probability_False", "probability_True", "model_name",
                                "model_version"]  # fmt: skip
    assert set(out.column("model_version").to_pylist()) == {"2"}
    manifest = read_manifest(locate(str(tmp_path / "out" / "date=2026-12-03")))
    assert manifest is not None
    assert manifest.counts.model_dump() == {"read": ROWS, "scored": ROWS, "rejected": 0}
    assert [part.rows for part in manifest.parts] == [300, 300, 300, 100]
    assert len(manifest.inputs) == 3
    assert manifest.ignored_columns == ["note"]
    assert manifest.model.sha256
    assert manifest.model.version == "2"
    assert manifest.summary.labels is not None
    assert sum(manifest.summary.labels.values()) == ROWS
    assert manifest.summary.score is not None
    assert manifest.summary.score.count == ROWS
    result = RunResult.model_validate_json((tmp_path / "termination-log").read_text())
    assert result.outcome == "Succeeded"
    assert result.manifest.endswith("date=2026-12-03/_manifest.json")
    assert result.counts.scored == ROWS


def test_a_schema_mismatch_fails_before_anything_is_written(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table().drop_columns(["f2"]))
    assert main(settings(tmp_path, classifier)) == 3
    result = RunResult.model_validate_json((tmp_path / "termination-log").read_text())
    assert result.reason == "SchemaMismatch"
    assert "missing feature columns ['f2']" in result.message
    assert not (tmp_path / "out").exists()


def with_holes(rows: int, holes: list[int]) -> pa.Table:
    data = table(rows)
    values = data.column("f1").to_numpy().copy()
    values[holes] = np.nan
    column = pa.array(values, mask=np.isin(np.arange(rows), holes[: len(holes) // 2]))
    return data.set_column(data.schema.get_field_index("f1"), "f1", column)


def test_invalid_records_fail_the_run_or_go_to_rejects_within_the_bound(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, with_holes(ROWS, [5, 17, 600, 999]))
    with pytest.raises(BatchError, match="invalid records") as failed:
        score_run(settings(tmp_path, classifier))
    assert failed.value.reason == "TooManyInvalidRecords"
    assert read_manifest(locate(str(tmp_path / "out" / "date=2026-12-03"))) is None

    with pytest.raises(BatchError, match=r"4 of 1000 records invalid \(0.40%\), more than max_invalid_percent 0.1"):
        score_run(settings(tmp_path, classifier, invalid_records="skip", max_invalid_percent=0.1))
    assert read_manifest(locate(str(tmp_path / "out" / "date=2026-12-03"))) is None, "over the bound: no commit"

    manifest, _ = score_run(settings(tmp_path, classifier, invalid_records="skip", max_invalid_percent=1))
    assert manifest.counts.model_dump() == {"read": ROWS, "scored": ROWS - 4, "rejected": 4}
    rejects = pa.concat_tables(pq.read_table(part.path) for part in manifest.rejects)
    assert sorted(zip(rejects.column("id").to_pylist(), rejects.column("reason").to_pylist(), strict=True)) == [
        (5, "missing f1"), (17, "missing f1"), (600, "non-finite f1"), (999, "non-finite f1"),
    ]  # fmt: skip
    assert len(output_rows(tmp_path)) == ROWS - 4


def test_a_retry_replaces_its_own_parts_and_nothing_else(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table())
    run_dir = tmp_path / "out" / "date=2026-12-03"
    run_dir.mkdir(parents=True)
    crashed = run_dir / "part-20261203T020000-dead0000-00000-00000.parquet"  # a killed attempt's part
    pq.write_table(table(10, seed=9).select(["id"]), crashed)
    (run_dir / "README").write_text("not ours")
    first, _ = score_run(settings(tmp_path, classifier))
    assert not crashed.exists(), "the commit removed a part no manifest lists"
    second, _ = score_run(settings(tmp_path, classifier))  # the same night, run again
    assert {p.path for p in first.parts}.isdisjoint({p.path for p in second.parts})
    assert sorted(p.name for p in run_dir.glob("part-*")) == sorted(Path(p.path).name for p in second.parts)
    assert (run_dir / "README").read_text() == "not ours"
    assert sorted(output_rows(tmp_path).column("id").to_pylist()) == list(range(ROWS))


def test_csv_in_jsonl_out_for_a_regressor(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(200, FEATURES))
    model = tmp_path / "ridge.joblib"
    joblib.dump(Ridge().fit(x, x @ np.arange(FEATURES)), model)
    (tmp_path / "in").mkdir()
    pacsv.write_csv(table(50), tmp_path / "in" / "day.csv")
    assert main(settings(tmp_path, model, output_format="jsonl")) == 0
    manifest = read_manifest(locate(str(tmp_path / "out" / "date=2026-12-03")))
    assert manifest is not None
    lines = [json.loads(line) for part in manifest.parts for line in Path(part.path).read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == list(range(50))
    assert set(lines[0]) == {"id", "prediction", "model_name", "model_version"}
    assert manifest.summary.labels is None
    assert manifest.summary.score is not None


def test_the_termination_message_fits_kubernetes_limit_whatever_the_labels(tmp_path: Path) -> None:
    from modelserver.batch.run import termination_message  # noqa: PLC0415

    result = RunResult(outcome="Succeeded", reason="Completed", labels={f"class-{i}": i for i in range(2000)})
    text = termination_message(result)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert RunResult.model_validate_json(text).outcome == "Succeeded"


@pytest.mark.parametrize("shards", [3, 5])
def test_a_sharded_run_commits_once_when_its_last_shard_ends(tmp_path: Path, classifier: Path, shards: int) -> None:
    write_input(tmp_path, table(), files=4)  # 5 shards: one of them reads no file at all
    run_dir = locate(str(tmp_path / "out" / "date=2026-12-03"))

    def shard(index: int) -> str:
        options = {"shard_index": index, "shard_count": shards, "run_token": "job-abc"}
        return score_run(settings(tmp_path, classifier, **options))[1]

    for index in range(shards - 1):
        assert shard(index) == ""
        assert read_manifest(run_dir) is None, "nothing is visible before the last shard"
    assert shard(shards - 1).endswith("_manifest.json")
    manifest = read_manifest(run_dir)
    assert manifest is not None
    assert manifest.shards == shards
    assert manifest.counts.read == ROWS
    assert sorted(output_rows(tmp_path).column("id").to_pylist()) == list(range(ROWS))
    assert manifest.summary.labels is not None
    assert sum(manifest.summary.labels.values()) == ROWS
    assert manifest.summary.score is not None
    assert manifest.summary.score.count == ROWS
    assert len(manifest.inputs) == 4

    # Shard 0 of the same execution runs again (a retried pod): the run is committed again with its new parts.
    before = {p.path for p in manifest.parts}
    assert shard(0).endswith("_manifest.json")
    again = read_manifest(run_dir)
    assert again is not None
    assert {p.path for p in again.parts} != before
    assert sorted(output_rows(tmp_path).column("id").to_pylist()) == list(range(ROWS))
    on_disk = {str(p) for p in (tmp_path / "out" / "date=2026-12-03").glob("part-*")}
    assert on_disk == {p.path for p in again.parts}, "the retried shard's old parts are gone"


def run_dir(tmp_path: Path) -> Location:
    return locate(str(tmp_path / "out" / "date=2026-12-03"))


def test_a_cronjobs_run_takes_its_time_from_the_job_name_and_its_dates_from_its_zone(
    tmp_path: Path, classifier: Path
) -> None:
    write_input(tmp_path, table(50))
    midnight_in_paris = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
    job = f"scores-{int(midnight_in_paris.timestamp()) // 60}"
    options = {"scheduled_time": None, "job_name": job, "time_zone": "Europe/Paris"}
    first, _ = score_run(settings(tmp_path, classifier, **options))
    assert first.run == "2026-12-02T23:00:00+00:00"
    assert read_manifest(run_dir(tmp_path)) is not None, "Paris's date of the run, not UTC's"
    again, _ = score_run(settings(tmp_path, classifier, **options))  # a retried pod of the same Job
    assert again.run == first.run


def second_model(tmp_path: Path, labels: Any = None) -> Path:
    x = np.random.default_rng(2).normal(size=(200, FEATURES))
    path = tmp_path / "candidate.joblib"
    target = x[:, 0] + x[:, 1] > 0 if labels is None else labels(x)
    joblib.dump(LogisticRegression().fit(x, target), path)
    return path


def test_a_canary_by_key_scores_each_record_once_each_model_its_keys(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table(), files=3)
    candidate = second_model(tmp_path)
    split = {"shard_count": 2, "run_token": "nightly-1", "key_column": "id"}
    stable_pod = settings(tmp_path, classifier, shard_index=0, key_from=3000, **split,
                          termination_log=tmp_path / "stable.json")  # fmt: skip
    canary_pod = settings(tmp_path, candidate, model_version="3", shard_index=1, key_to=3000, **split,
                          termination_log=tmp_path / "canary.json")  # fmt: skip
    assert main(stable_pod) == 0
    assert read_manifest(run_dir(tmp_path)) is None
    assert main(canary_pod) == 0

    manifest = read_manifest(run_dir(tmp_path))
    assert manifest is not None
    out = output_rows(tmp_path)
    assert sorted(out.column("id").to_pylist()) == list(range(ROWS)), "every record exactly once"
    by_version: dict[str, list[int]] = {"2": [], "3": []}
    for key, version in zip(out.column("id").to_pylist(), out.column("model_version").to_pylist(), strict=True):
        by_version[version].append(key)
    canary_keys = sorted(i for i in range(ROWS) if bucket(str(i)) < 3000)
    assert sorted(by_version["3"]) == canary_keys
    assert sorted(by_version["2"]) == sorted(set(range(ROWS)) - set(canary_keys))
    assert [m.version for m in manifest.models] == ["2", "3"]
    assert manifest.model.version == "2", "shard 0's, as before"
    assert [(s.shard, s.model.version, s.keys) for s in manifest.shares] == [
        (0, "2", KeyRange(column="id", start=3000, end=10000)),
        (1, "3", KeyRange(column="id", start=0, end=3000)),
    ]
    assert manifest.counts.read == ROWS
    assert len(manifest.inputs) == 3, "each model's shard read every file, listed once"
    # Each pod reports its own model's share: the operator compares the two.
    stable_result = RunResult.model_validate_json((tmp_path / "stable.json").read_text())
    canary_result = RunResult.model_validate_json((tmp_path / "canary.json").read_text())
    assert canary_result.manifest.endswith("_manifest.json")
    assert stable_result.manifest == ""
    assert canary_result.counts.read == len(canary_keys)
    assert stable_result.counts.read == ROWS - len(canary_keys)
    assert canary_result.keys == KeyRange(column="id", start=0, end=3000)
    assert canary_result.labels is not None
    assert sum(canary_result.labels.values()) == len(canary_keys)
    assert "with keys [0, 3000) of id" in canary_result.message


def test_at_full_weight_stables_share_is_empty_and_the_run_still_commits(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table(), files=2)
    candidate = second_model(tmp_path)
    split = {"shard_count": 2, "run_token": "nightly-3", "key_column": "id"}
    assert main(settings(tmp_path, classifier, shard_index=0, key_from=10_000, **split)) == 0
    assert main(settings(tmp_path, candidate, model_version="3", shard_index=1, key_to=10_000, **split)) == 0
    manifest = read_manifest(run_dir(tmp_path))
    assert manifest is not None
    out = output_rows(tmp_path)
    assert sorted(out.column("id").to_pylist()) == list(range(ROWS))
    assert set(out.column("model_version").to_pylist()) == {"3"}
    assert [share.counts.read for share in manifest.shares] == [0, ROWS]


def test_a_sample_run_stops_after_max_records(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table(), files=3)
    manifest, uri = score_run(settings(tmp_path, classifier, max_records=300))
    assert uri
    assert (manifest.counts.read, manifest.counts.scored) == (300, 300)
    assert output_rows(tmp_path).num_rows == 300


def test_shards_of_models_with_different_outputs_do_not_commit(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table(200))
    three_classes = second_model(tmp_path, labels=lambda x: np.digitize(x[:, 0], [-0.5, 0.5]))
    split = {"shard_count": 2, "run_token": "t", "key_column": "id"}
    score_run(settings(tmp_path, classifier, shard_index=0, key_from=5000, **split))
    with pytest.raises(BatchError, match="output schemas differ") as caught:
        score_run(settings(tmp_path, three_classes, model_version="3", shard_index=1, key_to=5000, **split))
    assert caught.value.reason == "SchemaMismatch"
    assert "probability_True (double)" in caught.value.message
    assert "probability_2 (double)" in caught.value.message
    assert read_manifest(run_dir(tmp_path)) is None


def test_two_shards_scoring_the_same_records_do_not_commit(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table(200), files=2)
    split = {"shard_count": 2, "run_token": "t", "input_shards": 1}  # both read every file, every key
    score_run(settings(tmp_path, classifier, shard_index=0, **split))
    with pytest.raises(BatchError, match=r"shards 0 and 1 both scored keys \[0, 10000\) of .*part-0.parquet"):
        score_run(settings(tmp_path, classifier, shard_index=1, **split))
    assert read_manifest(run_dir(tmp_path)) is None


def test_a_key_column_missing_from_the_input_fails_before_anything_is_written(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table(20))
    with pytest.raises(BatchError, match="missing key column 'user'") as caught:
        score_run(settings(tmp_path, classifier, key_column="user", key_to=3000))
    assert caught.value.reason == "SchemaMismatch"
    assert not (tmp_path / "out").exists()


def expected_comparison(candidate: Path, reference: Path, rows: pa.Table) -> dict[str, float]:
    """What the comparison must say, from scikit-learn directly on the same rows."""
    x = np.column_stack([rows.column(f"f{i}").to_numpy() for i in range(FEATURES)])
    ours, theirs = joblib.load(candidate), joblib.load(reference)
    c, r = ours.predict_proba(x)[:, 1], theirs.predict_proba(x)[:, 1]
    return {
        "agreement": float(np.mean(ours.predict(x) == theirs.predict(x))),
        "mean_abs_diff": float(np.mean(np.abs(c - r))),
        "max_abs_diff": float(np.max(np.abs(c - r))),
    }


def test_a_shadow_run_writes_its_model_and_compares_it_with_the_reference(tmp_path: Path, classifier: Path) -> None:
    data = table()
    write_input(tmp_path, data)
    candidate = second_model(tmp_path)
    shadow = settings(tmp_path, candidate, model_version="3", reference_model_uri=str(classifier),
                      reference_model_version="2")  # fmt: skip
    assert main(shadow) == 0
    manifest = read_manifest(run_dir(tmp_path))
    assert manifest is not None
    assert set(output_rows(tmp_path).column("model_version").to_pylist()) == {"3"}, "only the candidate is written"
    compared = manifest.comparison
    assert compared is not None
    assert compared.reference.version == "2"
    assert compared.reference.sha256
    assert (compared.records, compared.scored, compared.reference_scored) == (ROWS, ROWS, ROWS)
    expected = expected_comparison(candidate, classifier, data)
    assert 0.5 < expected["agreement"] < 0.95, "the two models differ, but not entirely"
    assert compared.agreement == pytest.approx(expected["agreement"], abs=1e-12)
    assert compared.mean_abs_diff == pytest.approx(expected["mean_abs_diff"], rel=1e-9)
    assert compared.max_abs_diff == pytest.approx(expected["max_abs_diff"], rel=1e-9)
    assert compared.psi is not None
    assert compared.psi > 0
    assert compared.seconds > 0
    assert compared.reference_seconds > 0
    result = RunResult.model_validate_json((tmp_path / "termination-log").read_text())
    assert result.comparison == compared


def test_a_sharded_shadow_run_compares_as_one_process_does(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, with_holes(ROWS, [3, 400, 401, 950]), files=4)
    candidate = second_model(tmp_path)
    reference = {"reference_model_uri": str(classifier), "invalid_records": "skip", "max_invalid_percent": 1}
    whole, _ = score_run(settings(tmp_path, candidate, **reference))
    for index in range(3):
        sharded, _ = score_run(settings(tmp_path, candidate, shard_index=index, shard_count=3, run_token="s",
                                        **reference))  # fmt: skip
    one, many = whole.comparison, sharded.comparison
    assert one is not None
    assert many is not None
    assert (many.records, many.rejected, many.reference_rejected) == (one.records, one.rejected, 4) == (ROWS - 4, 4, 4)
    assert many.agreement == one.agreement
    assert many.mean_abs_diff == pytest.approx(one.mean_abs_diff, rel=1e-12)
    assert many.max_abs_diff == one.max_abs_diff
    assert many.psi == pytest.approx(one.psi, rel=1e-12)


def test_a_reference_that_cannot_load_or_read_the_input_fails_the_run(tmp_path: Path, classifier: Path) -> None:
    write_input(tmp_path, table(50))
    with pytest.raises(BatchError, match="reference model") as caught:
        score_run(settings(tmp_path, classifier, reference_model_uri=str(tmp_path / "gone.joblib")))
    assert caught.value.reason == "ModelLoadFailed"

    wider = tmp_path / "wider.joblib"
    x = np.random.default_rng(1).normal(size=(100, FEATURES + 1))
    joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0), wider)  # takes f0..f4: f4 is not in the input
    with pytest.raises(BatchError, match=r"reference model .*missing feature columns \['f4'\]") as caught:
        score_run(settings(tmp_path, classifier, reference_model_uri=str(wider)))
    assert caught.value.reason == "SchemaMismatch"
    # The candidate's own mismatch is reported as the candidate's (the operator rolls it back).
    with pytest.raises(BatchError, match=r"^input schema does not match the model: missing feature columns \['f4'\]"):
        score_run(settings(tmp_path, wider, reference_model_uri=str(classifier)))
    assert not (tmp_path / "out").exists()


def test_the_termination_message_keeps_the_comparison_of_a_many_label_classifier(tmp_path: Path) -> None:
    rows = 600
    data = table(rows)
    write_input(tmp_path, data, files=1)
    x = np.column_stack([data.column(f"f{i}").to_numpy() for i in range(FEATURES)])
    labels = np.array([f"a-rather-long-class-name-for-segment-{i % 300:03d}" for i in range(rows)])
    model = tmp_path / "segments.joblib"
    joblib.dump(DecisionTreeClassifier(random_state=0).fit(x, labels), model)
    assert main(settings(tmp_path, model, reference_model_uri=str(model))) == 0
    text = (tmp_path / "termination-log").read_text()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    result = RunResult.model_validate_json(text)
    assert result.labels is None, "300 labels do not fit: they went first"
    assert result.comparison is not None
    assert result.comparison.agreement == 1.0
    assert result.comparison.records == rows
    manifest = read_manifest(run_dir(tmp_path))
    assert manifest is not None
    assert manifest.summary.labels is not None
    assert len(manifest.summary.labels) == 300, "the manifest keeps them all"
