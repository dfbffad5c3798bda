"""The shipped dashboards: what `make chart` writes, every panel's query checked by an e2e test (or said why not),
and only variables the dashboards define or Grafana provides."""

from __future__ import annotations

import re

import pytest

from modelrollout.chart import dashboards
from tests.e2e import dashboards as checked

BUILT_IN = {"__rate_interval", "__range"}


def test_every_shipped_panel_is_checked_against_prometheus_by_an_e2e_test_or_says_why_not() -> None:
    shipped = checked.shipped_panels()
    covered = set(checked.CHECKED_BY) | set(checked.UNCHECKED)
    assert shipped - covered == set(), "panels no e2e test runs: add them to tests/e2e/dashboards.py CHECKED_BY"
    assert covered - shipped == set(), "checks of panels the dashboards no longer have"
    assert not set(checked.CHECKED_BY) & set(checked.UNCHECKED)
    assert set(checked.MUST_MOVE) <= set(checked.CHECKED_BY)
    assert all(reason.strip() for reason in checked.UNCHECKED.values())


@pytest.mark.parametrize("dashboard", dashboards.DASHBOARDS, ids=lambda d: d.uid)
def test_queries_use_only_the_dashboards_variables_and_grafanas_intervals(dashboard: dashboards.Dashboard) -> None:
    defined = {v["name"] for v in dashboard.variables} | BUILT_IN
    for panel in dashboard.panels:
        for target in panel.targets:
            used = set(re.findall(r"\$(\w+)", target.expr))
            assert used <= defined, (panel.title, used - defined)
    titles = [panel.title for panel in dashboard.panels]
    assert len(titles) == len(set(titles)), "panel titles name the panels in tests: one each"


def test_substitution_fills_every_variable() -> None:
    expr = 'rate(x{namespace="$namespace",route="$modeldeployment",model="$model"}[$__rate_interval])'
    variables = {"namespace": "ns", "modeldeployment": "md", "model": "m", "__rate_interval": "5s"}
    assert checked.substitute(expr, variables) == 'rate(x{namespace="ns",route="md",model="m"}[5s])'


def test_each_dashboard_has_a_datasource_variable_and_every_target_uses_it() -> None:
    for dashboard in dashboards.DASHBOARDS:
        rendered = dashboards.dashboard_json(dashboard)
        assert rendered["templating"]["list"][0]["type"] == "datasource"
        for panel in rendered["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
