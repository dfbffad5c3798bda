from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from modelrollout.api.base import CronSchedule, Duration, duration_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("500ms", 0.5), ("30s", 30), ("2m", 120), ("1h", 3600), ("1h30m", 5400), ("1.5s", 1.5)],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "-1s", "1d", "2 m", "m5", "1h 30m"])
def test_duration_seconds_rejects_what_the_crd_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds(text)


def test_checked_strings_explain_the_expected_form() -> None:
    with pytest.raises(ValidationError, match=r"must be a duration: .* \(got '2 minutes'\)"):
        TypeAdapter(Duration).validate_python("2 minutes")
    with pytest.raises(ValidationError, match="5 fields"):
        TypeAdapter(CronSchedule).validate_python("every night")
    assert TypeAdapter(CronSchedule).validate_python("*/5 * * * *") == "*/5 * * * *"
