from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelrollout.api.rollout import CanarySettings, CanaryStep, RolloutSpec


def test_equal_weights_are_allowed_between_analysis_steps() -> None:
    steps = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 20}, {"setWeight": 100}]
    assert len(CanarySettings.model_validate({"steps": steps}).steps) == 4


def test_a_pause_step_without_duration_waits_for_promote() -> None:
    step = CanaryStep.model_validate({"pause": {}})
    assert step.pause is not None
    assert step.pause.duration is None


def test_strategy_settings_must_match_the_strategy() -> None:
    assert RolloutSpec.model_validate({}).strategy == "direct"
    with pytest.raises(ValidationError, match=r"rollout\.strategy is shadow: set rollout\.shadow"):
        RolloutSpec.model_validate({"strategy": "shadow"})
