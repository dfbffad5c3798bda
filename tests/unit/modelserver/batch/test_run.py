"""Whole runs of the scorer on local files: every record scored exactly once, the manifest as the commit, bad
input refused before anything is written, invalid records by policy, and a retry replacing only its own parts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from modelrollout_contract.batch import TERMINATION_MESSAGE_LIMIT, RunResult
from modelserver.batch.commit import read_manifest
from modelserver.batch.errors import BatchError
from modelserver.batch.run import main, score_run
from modelserver.batch.settings import BatchSettings
from modelserver.batch.uris import locate

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
