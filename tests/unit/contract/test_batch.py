"""The batch contract: the key buckets a batch run selects are the router's, and the new wire shapes (key ranges,
several models, comparisons) read what they write, by their aliases, and read manifests written before them."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from modelrollout_contract.batch import Comparison, KeyRange, Manifest, RunResult
from modelrollout_contract.sticky import BUCKETS, MISSING_KEY_BUCKET, bucket, buckets_of, to_candidate


def test_a_columns_buckets_are_the_routers_for_the_same_keys() -> None:
    integers = [0, 1, 42, -7, 10**12, 2**63 - 1, *range(1000, 1300)]
    texts = ["", "user-1", "Ünïcode", "42", "a b"]
    assert buckets_of(integers) == [bucket(str(k)) for k in integers]
    assert buckets_of(texts) == [bucket(k) for k in texts]
    assert buckets_of([b"raw"]) == [bucket(b"raw")]
    # Independent of bucket(): the CRC-32 of the decimal text.
    assert buckets_of([42]) == [zlib.crc32(b"42") % BUCKETS]
    # A key in a canary's range at weight w is what the router sends to the candidate at w.
    for key, found in zip(integers, buckets_of(integers), strict=True):
        assert (found < 30 * 100) == to_candidate(str(key), 30)


def test_a_missing_key_falls_in_stables_last_bucket_and_other_types_are_refused() -> None:
    assert buckets_of([None, "x"]) == [MISSING_KEY_BUCKET, bucket("x")]
    assert MISSING_KEY_BUCKET == BUCKETS - 1
    with pytest.raises(TypeError, match="not bool"):
        buckets_of([True])
    with pytest.raises(TypeError, match="not float"):
        buckets_of([1.5])  # type: ignore[list-item]


def test_a_key_range_is_from_and_to_on_the_wire() -> None:
    keys = KeyRange(column="user_id", start=0, end=3000)
    assert keys.model_dump(by_alias=True) == {"column": "user_id", "from": 0, "to": 3000}
    assert KeyRange.model_validate({"column": "user_id", "from": 3000, "to": 10000}).start == 3000
    assert KeyRange(column="user_id", start=BUCKETS, end=BUCKETS).start == BUCKETS, "an empty share is one"
    with pytest.raises(ValidationError, match="reversed key range"):
        KeyRange(column="user_id", start=3001, end=3000)
    with pytest.raises(ValidationError):
        KeyRange(column="user_id", start=0, end=BUCKETS + 1)


def comparison() -> Comparison:
    return Comparison.model_validate(
        {
            "reference": {"name": "churn", "version": "1"},
            "records": 10,
            "scored": 10,
            "referenceScored": 9,
            "rejected": 0,
            "referenceRejected": 1,
            "agreement": 0.9,
            "meanAbsDiff": 0.1,
            "maxAbsDiff": 0.5,
            "psi": 0.02,
            "psiBins": 7,
            "seconds": 1.5,
            "referenceSeconds": 1.0,
        }
    )


def test_a_comparison_by_its_aliases() -> None:
    found = comparison()
    assert (found.reference_scored, found.reference_rejected, found.psi_bins) == (9, 1, 7)
    assert (found.mean_abs_diff, found.max_abs_diff, found.reference_seconds) == (0.1, 0.5, 1.0)
    again = Comparison.model_validate_json(found.model_dump_json(by_alias=True))
    assert again == found
    result = RunResult(outcome="Succeeded", reason="Completed", comparison=found)
    wire = result.model_dump(by_alias=True, exclude_defaults=True)
    assert wire["comparison"]["meanAbsDiff"] == 0.1
    assert RunResult.model_validate(wire).comparison == found


def test_a_manifest_written_before_models_and_comparisons_still_reads() -> None:
    old = {
        "run": "2026-12-03T02:00:00+00:00",
        "attempt": "a",
        "model": {"name": "churn", "version": "2"},
        "inputs": [],
        "parts": [],
        "counts": {"read": 1, "scored": 1, "rejected": 0},
        "outputSchema": [{"name": "prediction", "type": "double"}],
        "summary": {},
        "started": datetime(2026, 12, 3, tzinfo=UTC).isoformat(),
        "finished": datetime(2026, 12, 3, tzinfo=UTC).isoformat(),
        "scorer": "0.1.0",
    }
    manifest = Manifest.model_validate(old)
    assert (manifest.models, manifest.shares, manifest.comparison) == ([], [], None)
