"""Property: whatever bytes arrive, the data plane answers with a prediction or a 4xx error, never a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserver.dataplane import DataPlane
from modelserver.errors import ServingError
from tests.unit.modelserver import builders
from tests.unit.modelserver.conftest import make_plane

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4)
)
numbers = st.floats(width=64) | st.integers(min_value=-(2**70), max_value=2**70)
datatypes = st.sampled_from(["FP32", "FP64", "INT64", "INT8", "UINT8", "FP16", "BOOL", "BYTES", "fp32"])

near_valid_input = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input-0", "f0", "f1", "x"]),
        "shape": st.lists(st.integers(min_value=-2, max_value=25), min_size=0, max_size=3),
        "datatype": datatypes,
    },
    optional={
        "data": st.lists(numbers | st.lists(numbers, max_size=22), max_size=30) | json_values,
        "parameters": st.dictionaries(st.sampled_from(["binary_data_size", "x"]), json_values, max_size=1),
    },
)
near_valid_request = st.fixed_dictionaries(
    {"inputs": st.lists(near_valid_input, min_size=0, max_size=3)},
    optional={
        "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["predict", "predict_proba", "z"])})),
        "parameters": st.dictionaries(st.sampled_from(["threshold", "binary_data_output"]), json_values, max_size=2),
        "id": json_values,
    },
)
records = st.lists(
    st.dictionaries(st.sampled_from([f"f{i}" for i in range(21)]), numbers | scalars, min_size=18, max_size=21),
    max_size=3,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> DataPlane:
    return make_plane(builders.sklearn_logistic(tmp_path_factory.mktemp("fuzz")).path, max_rows=50)


def encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def assert_client_error(error: ServingError | None) -> None:
    if error is not None:
        assert 400 <= error.status < 500, error.message
        assert error.message


async def _v2(plane: DataPlane, body: bytes, binary: bytes = b"") -> None:
    error = None
    try:
        with plane.observe("v2") as call:
            request, x = plane.parse_v2(body, binary)
            await plane.infer_v2(request, x, call)
    except ServingError as exc:
        error = exc
    assert_client_error(error)


@FUZZ
@given(body=near_valid_request | json_values, binary=st.binary(max_size=16))
async def test_v2_never_fails_with_a_server_error(plane: DataPlane, body: Any, binary: bytes) -> None:
    await _v2(plane, encode(body), binary)


@FUZZ
@given(raw=st.binary(max_size=64))
async def test_v2_raw_bytes(plane: DataPlane, raw: bytes) -> None:
    await _v2(plane, raw)


@FUZZ
@given(body=records | json_values, threshold=st.none() | st.text(max_size=4) | st.floats())
async def test_records_never_fail_with_a_server_error(plane: DataPlane, body: Any, threshold: Any) -> None:
    error = None
    try:
        with plane.observe("predict") as call:
            t = plane.check_threshold(threshold)
            await plane.predict_records(plane.parse_records(encode(body)), call, t)
    except ServingError as exc:
        error = exc
    assert_client_error(error)
