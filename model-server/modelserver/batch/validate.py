"""Before anything is written: the input's columns against the model's features, the id columns and the key
column (a run scoring a share of the records by key). And per record: a missing (null) or non-finite feature
makes the record invalid, with the first such column as reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from modelserver.batch.errors import BatchError


@dataclass(frozen=True)
class CheckedSchema:
    features: tuple[str, ...]
    ids: tuple[str, ...]
    ignored: tuple[str, ...]  # input columns that are neither (extra_columns: ignore)


def _numeric(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)  # a column with no value at all: its records are invalid, not the schema
    )


def _key_type(kind: pa.DataType) -> bool:
    """What a user key can be: text or an integer (modelrollout_contract.sticky.buckets_of)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind))


def check_schema(
    schema: pa.Schema,
    features: Sequence[str],
    ids: Sequence[str],
    *,
    extra_columns: str = "ignore",
    key_column: str | None = None,
    also_read: Sequence[str] = (),
) -> CheckedSchema:
    """Every feature present and numeric, every id column present, the key column (if any) present and text or
    integer; extra columns per policy (`also_read`, e.g. a reference model's features, are not extra). One error
    names every problem at once, so a user fixes the input in one go."""
    names = set(schema.names)
    problems = []
    missing = [f for f in features if f not in names]
    if missing:
        problems.append(f"missing feature columns {missing}")
    mistyped = [f"{f} ({schema.field(f).type})" for f in features if f in names and not _numeric(schema.field(f).type)]
    if mistyped:
        problems.append(f"feature columns that are not numeric: {mistyped}")
    missing_ids = [c for c in ids if c not in names]
    if missing_ids:
        problems.append(f"missing id columns {missing_ids}")
    if key_column is not None and key_column not in names:
        problems.append(f"missing key column {key_column!r}")
    elif key_column is not None and not _key_type(schema.field(key_column).type):
        problems.append(f"key column {key_column!r} is {schema.field(key_column).type}, not text or an integer")
    wanted = set(features) | set(ids) | set(also_read) | ({key_column} if key_column else set())
    extra = tuple(n for n in schema.names if n not in wanted)
    if extra and extra_columns == "fail":
        problems.append(f"extra columns {list(extra)} (extra_columns is 'fail')")
    if problems:
        expected = ", ".join(features)
        raise BatchError("SchemaMismatch", f"input schema does not match the model: {'; '.join(problems)}; "
                         f"the model takes [{expected}]")  # fmt: skip
    return CheckedSchema(tuple(features), tuple(ids), extra)


@dataclass(frozen=True)
class Features:
    """One batch's feature matrix and which rows are invalid, with why."""

    matrix: np.ndarray[Any, np.dtype[Any]]
    invalid: np.ndarray[Any, np.dtype[np.bool_]]
    reasons: list[str]  # one per invalid row, in row order


def features(batch: pa.RecordBatch, names: Sequence[str], dtype: np.dtype[Any]) -> Features:
    """The feature matrix, and per row the first feature that is missing or not finite. Vectorised: the reasons
    are only spelled out for the (rare) invalid rows."""
    rows = batch.num_rows
    matrix = np.empty((rows, len(names)), dtype=np.float64)
    first = np.full(rows, -1, dtype=np.int64)  # index of the first bad feature, -1 when none
    missing = np.zeros(rows, dtype=np.bool_)  # whether that first bad feature was missing (else non-finite)
    for j, name in enumerate(names):
        column = batch.column(name)
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        matrix[:, j] = values
        bad = ~np.isfinite(values)  # a null becomes NaN
        if not bad.any():
            continue
        newly = bad & (first < 0)
        first[newly] = j
        if column.null_count:
            missing[newly] = column.is_null().to_numpy(zero_copy_only=False)[newly]
    invalid = first >= 0
    reasons = [
        f"{'missing' if was_missing else 'non-finite'} {names[j]}"
        for j, was_missing in zip(first[invalid].tolist(), missing[invalid].tolist(), strict=True)
    ]
    return Features(matrix.astype(dtype, copy=False), invalid, reasons)
