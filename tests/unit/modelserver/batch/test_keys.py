"""A run's share of the records by key: the router's bucket of each key, complementary shares partitioning a
batch, and the key column checked with the schema."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from modelrollout_contract.batch import KeyRange
from modelrollout_contract.sticky import MISSING_KEY_BUCKET, bucket
from modelserver.batch.errors import BatchError
from modelserver.batch.keys import buckets, select
from modelserver.batch.validate import check_schema


@pytest.mark.parametrize(
    "column",
    [
        pa.array(range(-50, 2000), pa.int64()),
        pa.array(range(2000), pa.uint32()),
        pa.array([f"user-{i}" for i in range(2000)], pa.string()),
        pa.array([f"user-{i}" for i in range(2000)], pa.large_string()),
        pa.array([f"user-{i % 7}" for i in range(2000)]).dictionary_encode(),
    ],
    ids=["int64", "uint32", "string", "large_string", "dictionary"],
)
def test_each_records_bucket_is_the_routers_for_its_key(column: pa.Array) -> None:
    expected = [bucket(str(key)) for key in column.to_pylist()]
    assert buckets(column).tolist() == expected
    assert buckets(pa.chunked_array([column.slice(0, 10), column.slice(10)])).tolist() == expected


def test_a_record_without_a_key_goes_with_stable() -> None:
    assert buckets(pa.array([None, 42, None], pa.int64())).tolist() == [MISSING_KEY_BUCKET, bucket("42"),
                                                                       MISSING_KEY_BUCKET]  # fmt: skip


def test_complementary_shares_partition_a_batch_in_order() -> None:
    ids = np.arange(5_000)
    batch = pa.record_batch({"user": pa.array(ids), "x": pa.array(ids * 2.0)})
    canary = select(batch, KeyRange(column="user", start=0, end=3000))
    stable = select(batch, KeyRange(column="user", start=3000, end=10000))
    assert canary.num_rows + stable.num_rows == 5_000
    assert canary.column("user").to_pylist() == [int(i) for i in ids if bucket(str(i)) < 3000]
    assert stable.column("user").to_pylist() == [int(i) for i in ids if bucket(str(i)) >= 3000]
    assert canary.column("x").to_pylist() == [2.0 * i for i in canary.column("user").to_pylist()]
    assert 0.27 < canary.num_rows / 5_000 < 0.33, "about weight x 100 of 10000 buckets"
    assert select(batch, KeyRange(column="user", start=0, end=10000)) is batch


def test_the_key_column_is_checked_with_the_schema() -> None:
    found = pa.schema([("a", pa.float64()), ("user", pa.string()), ("score", pa.float64())])
    checked = check_schema(found, ["a"], [], key_column="user", extra_columns="ignore")
    assert checked.ignored == ("score",), "the key column is read, not ignored"
    check_schema(found, ["a"], [], key_column="user", also_read=["score"], extra_columns="fail")
    with pytest.raises(BatchError, match="missing key column 'customer'") as caught:
        check_schema(found, ["a"], [], key_column="customer")
    assert caught.value.reason == "SchemaMismatch"
    with pytest.raises(BatchError, match="key column 'score' is double, not text or an integer"):
        check_schema(found, ["a"], [], key_column="score")
