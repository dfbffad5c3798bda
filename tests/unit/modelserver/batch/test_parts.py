"""The scorer's pure parts: URI templates, the schema check, per-record validity and the score sketch."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from modelserver.batch.errors import BatchError
from modelserver.batch.sketch import DDSketch
from modelserver.batch.uris import fill, locate
from modelserver.batch.validate import check_schema, features

WHEN = datetime(2026, 12, 3, 2, 30, tzinfo=UTC)


def test_templates_take_the_runs_time_and_name_an_unknown_placeholder() -> None:
    assert fill("s3://lake/scores/date={date}/hour={hour}", WHEN) == "s3://lake/scores/date=2026-12-03/hour=02"
    assert fill("/out/{year}/{month}/{day}/{datetime}", WHEN) == "/out/2026/12/03/20261203T023000Z"
    with pytest.raises(BatchError, match=r"unknown placeholder \{dte\}") as caught:
        fill("/out/{dte}", WHEN)
    assert caught.value.reason == "InvalidSettings"


def test_locations_of_paths_and_s3_uris() -> None:
    assert locate("s3://lake/scores/x/", s3_endpoint_url="http://127.0.0.1:9000").path == "lake/scores/x"
    assert locate("file:///data/in").path == "/data/in"
    with pytest.raises(BatchError, match="unsupported URI scheme 'gs'"):
        locate("gs://bucket/x")


def schema(**columns: pa.DataType) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in columns.items()])


def test_schema_mismatch_names_every_problem_at_once() -> None:
    found = schema(a=pa.float64(), b=pa.string(), note=pa.string())
    with pytest.raises(BatchError) as caught:
        check_schema(found, ["a", "b", "c"], ["id"])
    message = caught.value.message
    assert caught.value.reason == "SchemaMismatch"
    assert "missing feature columns ['c']" in message
    assert "not numeric: ['b (string)']" in message
    assert "missing id columns ['id']" in message
    assert "the model takes [a, b, c]" in message


def test_extra_columns_are_ignored_or_refused_by_policy() -> None:
    found = schema(a=pa.int32(), ok=pa.bool_(), id=pa.string(), note=pa.string())
    assert check_schema(found, ["a", "ok"], ["id"]).ignored == ("note",)
    with pytest.raises(BatchError, match=r"extra columns \['note'\]"):
        check_schema(found, ["a", "ok"], ["id"], extra_columns="fail")


def test_a_record_is_invalid_at_its_first_missing_or_non_finite_feature() -> None:
    batch = pa.record_batch({"a": pa.array([1.0, None, np.inf, 2.0]), "b": pa.array([1, 2, None, None])})
    found = features(batch, ["a", "b"], np.dtype(np.float64))
    assert found.invalid.tolist() == [False, True, True, True]
    assert found.reasons == ["missing a", "non-finite a", "missing b"]
    assert found.matrix[0].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("seed", [1, 2])
def test_sketch_quantiles_are_within_the_relative_accuracy(seed: int) -> None:
    values = np.random.default_rng(seed).lognormal(0, 2, 20_000) * np.where(np.arange(20_000) % 5 == 0, -1, 1)
    values[:100] = 0.0
    sketch = DDSketch(0.01)
    for chunk in np.array_split(values, 7):  # merged batch by batch, as a run adds them
        sketch.add(chunk)
    assert sketch.count == 20_000
    assert sketch.zeros == 100
    ordered = np.sort(values)
    for q in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
        true = ordered[int(q * (len(ordered) - 1))]
        estimate = sketch.quantile(q)
        assert estimate is not None
        assert abs(estimate - true) <= 0.01 * abs(true) + 1e-12, (q, estimate, true)
    wire = sketch.to_wire()
    assert set(wire.quantiles) == {"p01", "p05", "p25", "p50", "p75", "p95", "p99"}
    assert sum(wire.positive.values()) + sum(wire.negative.values()) + wire.zeros == 20_000
