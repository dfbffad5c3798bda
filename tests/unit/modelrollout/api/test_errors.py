from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelrollout.api.analysis import AnalysisSettings
from modelrollout.api.errors import describe_validation_error, field_path


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), ""),
        (("spec",), "spec"),
        (("spec", "rollout", "canary", "steps", 0, "setWeight"), "spec.rollout.canary.steps[0].setWeight"),
        (("items", 2, 1), "items[2][1]"),
    ],
)
def test_field_path_matches_the_api_server_notation(loc: tuple[int | str, ...], path: str) -> None:
    assert field_path(loc) == path


def test_one_line_per_problem_without_pydantic_prefixes() -> None:
    with pytest.raises(ValidationError) as rejected:
        AnalysisSettings.model_validate({"interval": "soon", "noData": "ignore"})
    lines = describe_validation_error(rejected.value).splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        "interval: must be a duration: a number and a unit (ms, s, m, h), e.g. 30s, 2m or 1h30m (got 'soon')"
    )
    assert lines[1] == "noData: Input should be 'inconclusive', 'fail' or 'pass'"


def test_model_rule_messages_lose_the_value_error_prefix() -> None:
    metric = {"name": "a", "builtin": "errorRate", "max": 1}
    with pytest.raises(ValidationError) as rejected:
        AnalysisSettings.model_validate({"metrics": [metric, metric]})
    assert describe_validation_error(rejected.value) == "analysis.metrics names must be unique"
