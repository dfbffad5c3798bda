"""The shipped Grafana dashboards' queries against a real Prometheus, after real rollouts.

Every panel target of charts/modelrollout/files/dashboards/*.json (the JSON the chart ships, not the Python that
wrote it) is run by the e2e test named for its panel in CHECKED_BY, at that test's end, with the dashboard's
variables set to the test's namespace and ModelDeployment: a range query over the test's window (an instant query
at its end for a target Grafana runs as instant), which must succeed and return at least one series with a number
in it. Panels in MUST_MOVE must also show a value above zero (a rollback counted, not only a series at 0).
`tests/unit/modelrollout/chart/test_dashboards.py` fails when a panel is in neither CHECKED_BY nor UNCHECKED (a panel
no test can give data, with the reason).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from testkit.operator import OperatorProcess
from testkit.prometheus import ScrapeTarget

if TYPE_CHECKING:  # the conftest imports this module
    from tests.e2e.conftest import Stack

DASHBOARDS = Path(__file__).resolve().parents[2] / "charts" / "modelrollout" / "files" / "dashboards"
FLEET = "modelrollout-fleet"
MODEL_DEPLOYMENT = "modelrollout-modeldeployment"
# $__rate_interval as Grafana computes it for a 1 s scrape interval: four scrapes (and one more for the edge).
RATE_INTERVAL = "5s"

# The tests, by function name (test_rollout.py, test_ab_test.py, test_stream_mode.py, test_batch_mode.py).
CANARY = "test_a_healthy_candidate_walks_every_step_and_is_promoted"
SHADOW = "test_a_disagreeing_shadow_is_not_promoted_and_clients_never_see_its_answers"
AB_TEST = "test_a_truly_better_candidate_wins_and_is_promoted"
STREAM_CANARY = "test_a_canary_by_message_share_is_promoted_with_every_record_scored_once"
STREAM_SHADOW = "test_a_stream_shadow_that_disagrees_is_rolled_back_and_the_output_keeps_only_stable"
BATCH = "test_shadow_promotes_a_close_version_and_rolls_back_one_that_flips_a_fifth_of_the_labels"

# (dashboard uid, panel title) -> the e2e test that checks it.
CHECKED_BY: dict[tuple[str, str], str] = {
    (FLEET, "ModelDeployments by phase"): CANARY,
    (FLEET, "Rollouts in progress"): CANARY,
    (FLEET, "Finished rollouts by outcome"): CANARY,
    (FLEET, "Canary weight by ModelDeployment"): CANARY,
    (FLEET, "Analysis runs by verdict"): CANARY,
    (FLEET, "Step durations (median, by strategy)"): CANARY,
    (FLEET, "Reconcile passes by result"): CANARY,
    (FLEET, "Reconcile pass duration"): CANARY,
    (FLEET, "API requests by verb"): CANARY,
    (FLEET, "Rollbacks in range"): SHADOW,
    (FLEET, "Rollbacks over time"): SHADOW,
    (MODEL_DEPLOYMENT, "Traffic weights"): CANARY,
    (MODEL_DEPLOYMENT, "Finished rollouts by outcome"): CANARY,
    (MODEL_DEPLOYMENT, "Requests by version"): CANARY,
    (MODEL_DEPLOYMENT, "Error share by version"): CANARY,
    (MODEL_DEPLOYMENT, "Latency quantiles by version"): CANARY,
    (MODEL_DEPLOYMENT, "Router requests by role and code"): CANARY,
    (MODEL_DEPLOYMENT, "Router upstream latency p99 by role"): CANARY,
    (MODEL_DEPLOYMENT, "Shadow agreement"): SHADOW,
    (MODEL_DEPLOYMENT, "Shadow comparisons by result"): SHADOW,
    (MODEL_DEPLOYMENT, "A/B success rate by variant"): AB_TEST,
    (MODEL_DEPLOYMENT, "A/B trials by variant"): AB_TEST,
    (MODEL_DEPLOYMENT, "Records by revision and result"): STREAM_CANARY,
    (MODEL_DEPLOYMENT, "Consumer lag by revision"): STREAM_CANARY,
    (MODEL_DEPLOYMENT, "End-to-end latency p99 by revision"): STREAM_CANARY,
    (MODEL_DEPLOYMENT, "Stream shadow agreement by revision"): STREAM_SHADOW,
    (MODEL_DEPLOYMENT, "Batch runs ended in range by role and phase"): BATCH,
    (MODEL_DEPLOYMENT, "Batch records in range by role and result"): BATCH,
}
# Panels whose data must show what the test did, not only exist: a count above zero.
MUST_MOVE: dict[tuple[str, str], str] = {
    (FLEET, "Rollbacks in range"): "the shadow was rolled back",
    (FLEET, "Rollbacks over time"): "the shadow was rolled back",
    (FLEET, "Finished rollouts by outcome"): "the canary was promoted",
    (FLEET, "Canary weight by ModelDeployment"): "the canary walked 20, 50, 80",
    (MODEL_DEPLOYMENT, "Finished rollouts by outcome"): "the canary was promoted",
    (MODEL_DEPLOYMENT, "Traffic weights"): "stable serves",
    (MODEL_DEPLOYMENT, "Batch runs ended in range by role and phase"): "shadow and stable runs ended",
    (MODEL_DEPLOYMENT, "Batch records in range by role and result"): "the runs scored records",
}
# Panels no e2e test gives data, each with why. Empty: every panel is checked.
UNCHECKED: dict[tuple[str, str], str] = {}


OPERATOR_JOB = "modelrollout-operator"


def operator_targets(operator: OperatorProcess, namespace: str) -> list[ScrapeTarget]:
    """The operator's /metrics as the chart's monitors scrape it (honor_labels), not waited for: its series that
    tests read change only once a rollout runs, long after the first scrape."""
    port = operator.metrics_port
    if port is None:
        return []
    return [ScrapeTarget(f"127.0.0.1:{port}", namespace, OPERATOR_JOB, honor_labels=True, wait=False)]


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str
    instant: bool


def load(uid: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARDS / f"{uid}.json").read_text())
    return loaded


def shipped_panels() -> set[tuple[str, str]]:
    return {(uid, p["title"]) for uid in (FLEET, MODEL_DEPLOYMENT) for p in load(uid)["panels"] if p["type"] != "row"}


def queries(panels: Iterable[tuple[str, str]]) -> list[Query]:
    """Every target of these panels, as the shipped JSON has it."""
    wanted = set(panels)
    found = [
        Query(uid, panel["title"], target["expr"], bool(target.get("instant")))
        for uid in (FLEET, MODEL_DEPLOYMENT)
        for panel in load(uid)["panels"]
        if (uid, panel.get("title")) in wanted
        for target in panel.get("targets", [])
    ]
    missing = wanted - {(q.dashboard, q.panel) for q in found}
    assert not missing, f"no such panel in the shipped dashboards: {missing}"
    return found


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Grafana's part: the dashboard's variables and the built-in intervals, longest name first."""
    names = sorted(variables, key=len, reverse=True)
    done = re.sub(r"\$(" + "|".join(map(re.escape, names)) + r")\b", lambda m: variables[m.group(1)], expr)
    assert "$" not in done, f"a variable left in {done!r}"
    return done


def _values(result: list[dict[str, Any]]) -> list[float]:
    points = [v for series in result for v in (series.get("values") or [series["value"]])]
    return [float(value) for _, value in points]


def check_panels(
    prometheus_url: str,
    test: str,
    *,
    namespace: str,
    name: str,
    model: str,
    start: float,
    within: float = 10,
) -> dict[tuple[str, str], list[float]]:
    """Runs every target of the panels CHECKED_BY names for `test` over [start, now]; fails on an error or an empty
    answer. Asked again for up to `within` seconds: the test's last change reaches Prometheus at its next scrape.
    Returns each panel's values."""
    panels = [key for key, by in CHECKED_BY.items() if by == test]
    assert panels, f"no panel is checked by {test}"
    deadline = time.monotonic() + within
    while True:
        problems, seen = _run(prometheus_url, panels, namespace=namespace, name=name, model=model, start=start)
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not problems, "dashboard panels without data:\n" + "\n".join(problems)
    return seen


def check_stack(stack: Stack, test: str, *, start: float) -> dict[tuple[str, str], list[float]]:
    """check_panels for a stack of the `world` fixture: its Prometheus, namespace, ModelDeployment and model."""
    return check_panels(
        stack.prometheus.url, test, namespace=stack.namespace, name=stack.name, model=stack.model, start=start
    )


def _run(
    prometheus_url: str, panels: list[tuple[str, str]], *, namespace: str, name: str, model: str, start: float
) -> tuple[list[str], dict[tuple[str, str], list[float]]]:
    end = time.time()
    variables = {
        "namespace": namespace,
        "modeldeployment": name,
        "model": model,
        "__rate_interval": RATE_INTERVAL,
        "__range": f"{math.ceil(end - start)}s",
    }
    problems: list[str] = []
    seen: dict[tuple[str, str], list[float]] = {}
    with httpx.Client(base_url=prometheus_url, timeout=10) as http:
        for query in queries(panels):
            promql = substitute(query.expr, variables)
            if query.instant:
                answer = http.post("/api/v1/query", data={"query": promql, "time": end}).json()
            else:
                answer = http.post(
                    "/api/v1/query_range", data={"query": promql, "start": start, "end": end, "step": 1}
                ).json()
            where = f"{query.dashboard} / {query.panel}: {promql}"
            if answer.get("status") != "success":
                problems.append(f"{where}: refused: {answer.get('error')}")
                continue
            values = [v for v in _values(answer["data"]["result"]) if not math.isnan(v)]
            seen.setdefault((query.dashboard, query.panel), []).extend(values)
            if not values:
                problems.append(f"{where}: no data")
    for key in panels:
        if key in MUST_MOVE and not any(v > 0 for v in seen.get(key, [])):
            problems.append(f"{key[0]} / {key[1]}: never above 0, though {MUST_MOVE[key]}")
    return problems, seen
