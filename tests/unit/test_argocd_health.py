"""docs/argocd-health.lua, the Argo CD health check users paste into argocd-cm, run on Lua 5.1 (the dialect of
gopher-lua, which Argo CD embeds) against statuses shaped by our own status model."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lupa import lua51  # type: ignore[import-untyped]

from modelrollout.api.status import Condition, ModelDeploymentStatus

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCRIPT = (DOCS / "argocd-health.lua").read_text()
NOW = datetime(2026, 12, 4, tzinfo=UTC)


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    check = lua.eval(f"function(obj)\n{SCRIPT}\nend")
    result = check(lua.table_from(obj, recursive=True))
    return str(result["status"]), str(result["message"])


def _ready(status: str, message: str = "") -> Condition:
    return Condition(type="Ready", status=status, reason="Test", message=message, last_transition_time=NOW)


def _md(generation: int | None, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "churn", "namespace": "ml"}}
    if generation is not None:
        obj["metadata"]["generation"] = generation
    if status:
        obj["status"] = ModelDeploymentStatus(**status).model_dump(by_alias=True, mode="json", exclude_none=True)
    return obj


@pytest.mark.parametrize(
    ("obj", "expected", "said"),
    [
        (_md(1), "Progressing", "report a status"),
        (_md(3, phase="Healthy", observed_generation=2, conditions=[_ready("True")]), "Progressing", "generation 3"),
        (_md(2, phase="Healthy", observed_generation=2, conditions=[_ready("True", "serving 7")]), "Healthy", "7"),
        (_md(2, phase="Healthy", observed_generation=2, message="up"), "Healthy", "Healthy: up"),
        (
            _md(2, phase="Healthy", observed_generation=2, conditions=[_ready("False", "batch not served")]),
            "Progressing",
            "batch not served",
        ),
        (_md(2, phase="Pending", observed_generation=2), "Progressing", "Pending"),
        (_md(2, phase="Progressing", observed_generation=2, message="step 1 of 4"), "Progressing", "step 1 of 4"),
        (_md(2, phase="Promoting", observed_generation=2), "Progressing", "Promoting"),
        (_md(2, phase="Paused", observed_generation=2, paused=True, pause_reason="User"), "Suspended", "Paused"),
        (_md(2, phase="Degraded", observed_generation=2, message="router down"), "Degraded", "router down"),
        (_md(2, phase="RolledBack", observed_generation=2, message="errorRate 0.3"), "Degraded", "errorRate 0.3"),
        (_md(2, phase="Failed", observed_generation=2, message="image pull"), "Degraded", "Failed: image pull"),
        (_md(None, phase="Healthy", conditions=[_ready("True")]), "Healthy", "Healthy"),
    ],
)
def test_each_status_maps_to_the_argo_cd_health_a_user_expects(obj: dict[str, Any], expected: str, said: str) -> None:
    status, message = health(obj)
    assert status == expected, message
    assert said in message


def test_every_phase_has_a_health_argo_cd_knows() -> None:
    phases = ModelDeploymentStatus.model_fields["phase"].annotation.__args__  # type: ignore[union-attr]
    for phase in phases:
        status, _ = health(_md(1, phase=phase, observed_generation=1))
        assert status in {"Healthy", "Progressing", "Suspended", "Degraded"}, phase


def test_the_documented_snippet_is_the_tested_script() -> None:
    page = (DOCS / "argocd.md").read_text()
    indented = "".join(f"    {line}" if line.strip() else line for line in SCRIPT.splitlines(keepends=True))
    assert indented in page
