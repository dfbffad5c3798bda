from __future__ import annotations

import pytest
from typer.testing import CliRunner

from modelserver.cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["route", "--port", "9000"], "exactly one of configmap"),
        (["route", "--port", "9000", "--config-file", "r.json", "--upstream", "2"], "is not VERSION=URL"),
        (["route", "--port", "9000", "--config-file", "r.json", "--upstream", "2=localhost:9"], "VERSION=http"),
        (["route", "--port", "9000", "--configmap", "just-a-name"], "configmap"),
    ],
)
def test_invalid_route_flags_exit_2_with_the_reason(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
