"""The scorer's settings: the run's time (explicit, from a CronJob's Job name, or now) and the time zone of its
templates, the key range it scores, and the reference model of a shadow run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from modelrollout_contract.batch import KeyRange
from modelserver.batch.settings import BatchSettings
from modelserver.batch.uris import fill

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def settings(**overrides: Any) -> BatchSettings:
    return BatchSettings(**{"model_uri": "/m.joblib", "input_uri": "/in", "output_uri": "/out", **overrides})


def minutes(when: datetime) -> int:
    return int(when.timestamp()) // 60


def test_an_explicit_time_wins_and_is_kept_in_utc() -> None:
    explicit = settings(scheduled_time="2026-12-03T01:00:00+01:00", job_name="nightly-29412345")
    assert explicit.run_time(NOW) == datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
    assert explicit.run_time(NOW).tzinfo == UTC
    assert settings(scheduled_time="2026-12-03T02:00:00").run_time(NOW) == datetime(2026, 12, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("scheduled", "name"),
    [
        (datetime(2026, 12, 3, 2, 0, tzinfo=UTC), "scores-nightly"),  # 8 digits, today's
        (datetime(1990, 1, 1, tzinfo=UTC), "a-b"),  # 8 digits, as every time since 1989; a dash in the name
        (datetime(9999, 12, 31, 23, 59, tzinfo=UTC), "far-off"),  # the most digits a datetime holds (10)
    ],
)
def test_a_cronjobs_job_name_gives_its_scheduled_time(scheduled: datetime, name: str) -> None:
    job = f"{name}-{minutes(scheduled)}"
    assert settings(job_name=job).run_time(NOW) == scheduled
    # Independent of the code's arithmetic: the Kubernetes CronJob controller's own (Unix seconds / 60).
    assert minutes(settings(job_name=job).run_time(NOW)) == int(job.rsplit("-", 1)[1])


@pytest.mark.parametrize(
    "name",
    ["", "nightly", "nightly-1234567", "nightly-1234567890123", "29412345", "nightly-29412345x", "run-2941-2345"],
)
def test_other_job_names_leave_the_run_at_now(name: str) -> None:
    assert settings(job_name=name).run_time(NOW) == NOW


def test_without_a_clock_now_is_the_time() -> None:
    before = datetime.now(UTC)
    found = settings().run_time()
    assert before <= found <= datetime.now(UTC) + timedelta(seconds=1)


def test_digits_beyond_any_date_leave_the_run_at_now() -> None:
    assert settings(job_name="x-100000000000").run_time(NOW) == NOW  # 12 digits: after the year 9999


def test_templates_take_the_date_of_the_runs_time_zone() -> None:
    # 00:00 in Paris is 23:00Z the day before (winter), 22:00Z (summer): Paris's partition of that day is read.
    for utc, day in ((datetime(2026, 12, 2, 23, tzinfo=UTC), "2026-12-03"), (datetime(2026, 7, 1, 22, tzinfo=UTC),
                                                                               "2026-07-02")):  # fmt: skip
        paris = settings(scheduled_time=utc, time_zone="Europe/Paris")
        when = paris.run_time(NOW)
        assert when == utc, "the run's time stays the instant, in UTC"
        assert fill("/in/date={date}/hour={hour}", paris.template_time(when)) == f"/in/date={day}/hour=00"
        assert fill("/in/{datetime}", paris.template_time(when)) == f"/in/{utc.strftime('%Y%m%dT%H%M%SZ')}"
    plain = settings(scheduled_time=datetime(2026, 12, 2, 23, tzinfo=UTC))
    assert fill("{date}/{hour}", plain.template_time(plain.run_time(NOW))) == "2026-12-02/23"


@pytest.mark.parametrize("zone", ["Europe/Pariss", "", "../etc/passwd", "+01:00"])
def test_an_unknown_time_zone_is_refused_naming_the_field(zone: str) -> None:
    with pytest.raises(ValidationError, match="time_zone") as caught:
        settings(time_zone=zone)
    assert "IANA" in str(caught.value)


def test_a_key_range_and_what_a_shard_reads() -> None:
    canary = settings(key_column="user_id", key_to=3000, shard_index=1, shard_count=2)
    assert canary.key_range() == KeyRange(column="user_id", start=0, end=3000)
    assert canary.input_split() == 1, "each model's shard reads every file"
    assert settings(shard_count=4).input_split() == 4
    assert settings(shard_count=4, key_column="u", key_from=10).input_split() == 1
    assert settings(shard_count=4, input_shards=2, key_column="u", key_from=10).input_split() == 2
    whole = settings(key_column="user_id", shard_count=2, shard_index=1)
    assert whole.key_range() is None, "the whole range filters nothing (a canary at 100%)"
    assert whole.input_split() == 1, "shards split by key read every file, whatever their share"
    empty = settings(key_column="user_id", key_from=10_000, shard_count=2)
    assert empty.key_range() == KeyRange(column="user_id", start=10_000, end=10_000), "stable's share at 100%"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"key_from": 3001, "key_to": 3000, "key_column": "u"}, "key_from 3001 must not be above key_to 3000"),
        ({"key_to": 10001, "key_column": "u"}, "key_to"),
        ({"key_from": -1, "key_column": "u"}, "key_from"),
        ({"key_to": 3000}, "key_column is required"),
        ({"input_shards": 3, "shard_count": 2}, "input_shards 3 is above shard_count 2"),
        ({"reference_model_version": "1"}, "reference_model_uri is required"),
        ({"reference_model_format": "onnx"}, "reference_model_uri is required"),
        ({"reference_model_format": "custom"}, "needs reference_model_class"),
        ({"reference_model_uri": "/r", "reference_model_version": "bad version"}, "reference_model_version"),
    ],
)
def test_inconsistent_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**fields)


def test_the_reference_models_settings_are_its_own_with_the_runs_storage() -> None:
    assert settings().reference_settings() is None
    run = settings(
        model_sha256="a" * 64,
        s3_endpoint_url="http://minio:9000",
        reference_model_uri="s3://models/churn/1/model.onnx",
        reference_model_version="1",
        reference_model_format="onnx",
        reference_feature_names=["a", "b"],
    )
    reference = run.reference_settings()
    assert reference is not None
    assert (reference.model_uri, reference.model_version, reference.model_format) == (
        "s3://models/churn/1/model.onnx", "1", "onnx",
    )  # fmt: skip
    assert reference.feature_names == ["a", "b"]
    assert reference.model_sha256 is None, "the run's sha256 is its own model's"
    assert reference.s3_endpoint_url == "http://minio:9000"
    assert reference.model_name == run.model_name
    custom = settings(reference_model_format="custom", reference_model_class="pkg.mod:Model").reference_settings()
    assert custom is not None
    assert (custom.model_uri, custom.model_class) == ("", "pkg.mod:Model")


def test_the_new_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVER_JOB_NAME", "scores-29412345")
    monkeypatch.setenv("MODELSERVER_TIME_ZONE", "Europe/Paris")
    monkeypatch.setenv("MODELSERVER_KEY_COLUMN", "user_id")
    monkeypatch.setenv("MODELSERVER_KEY_TO", "3000")
    monkeypatch.setenv("MODELSERVER_REFERENCE_MODEL_URI", "/stable.joblib")
    monkeypatch.setenv("MODELSERVER_REFERENCE_FEATURE_NAMES", '["a"]')
    found = settings()
    assert found.run_time(NOW) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(minutes=29412345)
    assert found.key_range() == KeyRange(column="user_id", start=0, end=3000)
    reference = found.reference_settings()
    assert reference is not None
    assert reference.feature_names == ["a"]
    assert found.template_time(found.run_time(NOW)).utcoffset() == timedelta(hours=1)
