"""The Grafana dashboards the chart ships (`make chart` writes them to files/dashboards/*.json; the chart wraps each
in a ConfigMap the Grafana sidecar loads): the single source of their panels and PromQL.

- `modelrollout-fleet`: every ModelDeployment the operator reconciles: by phase, rollouts in progress, finished
  rollouts and rollbacks, analysis verdicts, and the operator's own health.
- `modelrollout-modeldeployment`: one ModelDeployment (`$namespace`, `$modeldeployment`): weights over time,
  per-version requests, error share and latency quantiles, the router, shadow agreement, A/B rates, and stream
  (records, lag, end-to-end latency) and batch (run results, records).

Series sources: the operator's own (`modelrollout.telemetry`, scraped with honor_labels so that its `namespace`
label is the ModelDeployment's); the model server's, router's and stream consumer's (`modelrollout_contract.metrics`),
whose `namespace` comes from Kubernetes discovery and whose `model` is spec.model.name, found from the ModelDeployment
through `modelrollout_modeldeployment_info` (variable `$model`). `tests/e2e/dashboards.py` runs every target's expr
against a real Prometheus after real rollouts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from modelrollout_contract import metrics as names

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
RANGE = "$__range"
# Operator series of one ModelDeployment; the router's (`route` is the ModelDeployment's name); the servers' and
# consumers' (`model` is spec.model.name).
MD = 'namespace="$namespace",modeldeployment="$modeldeployment"'
ROUTE = 'namespace="$namespace",route="$modeldeployment"'
SERVER = 'namespace="$namespace",model="$model"'
FLEET_NS = 'namespace=~"$namespace"'
PanelKind = Literal["timeseries", "stat", "bargauge"]


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    # A stat over the dashboard's range is evaluated once, at its end (Grafana's instant query), not as a series.
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    description: str
    unit: str = "short"
    kind: PanelKind = "timeseries"
    width: int = 12
    stacked: bool = False
    bars: bool = False
    max: float | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def panels(self) -> list[Panel]:
        return [panel for row in self.rows for panel in row.panels]


def _rate(metric: str, selector: str) -> str:
    return f"rate({metric}{{{selector}}}[{RATE}])" if selector else f"rate({metric}[{RATE}])"


def _share(by: str, metric: str, selector: str, part: str) -> str:
    # `or 0 * whole`: a version with requests but none failed has a share of 0, not a gap in the graph.
    whole = f"sum by ({by}) ({_rate(metric, selector)})"
    return f"(sum by ({by}) ({_rate(metric, selector + ',' + part)}) or 0 * {whole}) / {whole}"


def _quantile(q: float, by: str, histogram: str, selector: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) ({_rate(histogram + '_bucket', selector)}))"


def _quantiles(by: str, histogram: str, selector: str, legend: str) -> tuple[Target, ...]:
    return tuple(
        Target(_quantile(q, by, histogram, selector), f"p{round(q * 100)} {legend}") for q in (0.5, 0.95, 0.99)
    )


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
    }


def _query_variable(name: str, label: str, query: str, *, multi: bool = False, hide: int = 0) -> dict[str, Any]:
    variable: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,  # on time range change: ModelDeployments come and go
        "sort": 1,
        "hide": hide,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
    }
    if multi:
        variable["allValue"] = ".*"
    return variable


INFO = "modelrollout_modeldeployment_info"

FLEET = Dashboard(
    uid="modelrollout-fleet",
    title="ModelRollout / Fleet",
    description="Every ModelDeployment the operator reconciles: phases, rollouts, rollbacks, analysis, the operator.",
    variables=(
        _datasource_variable(),
        _query_variable("namespace", "Namespace", f"label_values({INFO}, namespace)", multi=True),
    ),
    rows=(
        Row(
            "Rollouts",
            (
                Panel(
                    "ModelDeployments by phase",
                    (Target("sum by (phase) (modelrollout_modeldeployments)", "{{phase}}"),),
                    "ModelDeployments the active operator reconciles, by the phase it last wrote (all namespaces).",
                    stacked=True,
                ),
                Panel(
                    "Rollouts in progress",
                    (
                        Target(
                            'sum(modelrollout_modeldeployments{phase=~"Progressing|Paused|Promoting"})', "in progress"
                        ),
                    ),
                    "ModelDeployments in phase Progressing, Paused or Promoting.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Rollbacks in range",
                    (
                        Target(
                            f'sum(increase(modelrollout_rollouts_total{{{FLEET_NS},outcome="RolledBack"}}[{RANGE}]))',
                            "rolled back",
                            instant=True,
                        ),
                    ),
                    "Rollouts that ended RolledBack in the dashboard's time range.",
                    kind="stat",
                    width=6,
                ),
                Panel(
                    "Rollbacks over time",
                    (
                        Target(
                            f"sum by (namespace, modeldeployment) (increase(modelrollout_rollouts_total"
                            f'{{{FLEET_NS},outcome="RolledBack"}}[{RATE}]))',
                            "{{namespace}}/{{modeldeployment}}",
                        ),
                    ),
                    "Rollouts that ended RolledBack, by ModelDeployment.",
                    bars=True,
                ),
                Panel(
                    "Finished rollouts by outcome",
                    (
                        Target(
                            f"sum by (outcome) (increase(modelrollout_rollouts_total{{{FLEET_NS}}}[{RANGE}]))",
                            "{{outcome}}",
                            instant=True,
                        ),
                    ),
                    "Rollouts that ended in the dashboard's time range: Promoted, RolledBack, Aborted, ...",
                    kind="bargauge",
                ),
                Panel(
                    "Canary weight by ModelDeployment",
                    (
                        Target(
                            f"max by (namespace, modeldeployment) (modelrollout_traffic_weight_percent{{{FLEET_NS},"
                            'role="canary"})',
                            "{{namespace}}/{{modeldeployment}}",
                        ),
                    ),
                    "The candidate's share of requests, as status says it is applied.",
                    unit="percent",
                    max=100,
                ),
            ),
        ),
        Row(
            "Analysis",
            (
                Panel(
                    "Analysis runs by verdict",
                    (Target(f"sum by (verdict) (increase(modelrollout_analysis_runs_total[{RATE}]))", "{{verdict}}"),),
                    "Analysis runs the operator performed: Successful, Failed, Inconclusive, Error.",
                    stacked=True,
                    bars=True,
                ),
                Panel(
                    "Step durations (median, by strategy)",
                    (
                        Target(
                            "histogram_quantile(0.5, sum by (strategy, le) "
                            f"(increase(modelrollout_rollout_step_duration_seconds_bucket[{RANGE}])))",
                            "{{strategy}}",
                            instant=True,
                        ),
                    ),
                    "How long finished rollout steps took in the dashboard's time range.",
                    unit="s",
                    kind="bargauge",
                ),
            ),
        ),
        Row(
            "Operator",
            (
                Panel(
                    "Reconcile passes by result",
                    (Target(f"sum by (result) ({_rate('modelrollout_reconcile_passes_total', '')})", "{{result}}"),),
                    "Passes a second: ok, refused, invalid, unserved, error.",
                    unit="ops",
                    width=8,
                ),
                Panel(
                    "Reconcile pass duration",
                    (
                        Target(_quantile(0.99, "job", "modelrollout_reconcile_duration_seconds", ""), "p99"),
                        Target(_quantile(0.5, "job", "modelrollout_reconcile_duration_seconds", ""), "p50"),
                    ),
                    "One pass, from the lock taken to its last write.",
                    unit="s",
                    width=8,
                ),
                Panel(
                    "API requests by verb",
                    (Target(f"sum by (verb) ({_rate('modelrollout_api_requests_total', '')})", "{{verb}}"),),
                    "Calls to the Kubernetes API server a second.",
                    unit="reqps",
                    width=8,
                ),
            ),
        ),
    ),
)

MODEL_DEPLOYMENT = Dashboard(
    uid="modelrollout-modeldeployment",
    title="ModelRollout / ModelDeployment",
    description="One ModelDeployment: its rollout, its versions' traffic and quality, shadow, A/B, stream and batch.",
    variables=(
        _datasource_variable(),
        _query_variable("namespace", "Namespace", f"label_values({INFO}, namespace)"),
        _query_variable(
            "modeldeployment", "ModelDeployment", f'label_values({INFO}{{namespace="$namespace"}}, modeldeployment)'
        ),
        _query_variable("model", "Model", f"label_values({INFO}{{{MD}}}, model)", hide=2),
    ),
    rows=(
        Row(
            "Rollout",
            (
                Panel(
                    "Traffic weights",
                    (Target(f"max by (role) (modelrollout_traffic_weight_percent{{{MD}}})", "{{role}}"),),
                    "The split status says is applied: stable, canary, and the share mirrored to a shadow.",
                    unit="percent",
                    max=100,
                ),
                Panel(
                    "Finished rollouts by outcome",
                    (
                        Target(
                            f"sum by (outcome) (increase(modelrollout_rollouts_total{{{MD}}}[{RATE}]))", "{{outcome}}"
                        ),
                    ),
                    "Rollouts of this ModelDeployment that ended: Promoted, RolledBack, ...",
                    bars=True,
                ),
            ),
        ),
        Row(
            "Online serving (model servers)",
            (
                Panel(
                    "Requests by version",
                    (Target(f"sum by (version) ({_rate(names.REQUESTS, SERVER)})", "v{{version}}"),),
                    "Inference requests a second answered by each version's model servers.",
                    unit="reqps",
                    width=8,
                ),
                Panel(
                    "Error share by version",
                    (Target(_share("version", names.REQUESTS, SERVER, 'code!~"2.."'), "v{{version}}"),),
                    "Share of requests answered with a non-2xx code, by version.",
                    unit="percentunit",
                    width=8,
                ),
                Panel(
                    "Latency quantiles by version",
                    _quantiles("version", names.REQUEST_DURATION, SERVER, "v{{version}}"),
                    "p50, p95 and p99 of the model servers' request duration, by version.",
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Router requests by role and code",
                    (Target(f"sum by (role, code) ({_rate(names.ROUTER_REQUESTS, ROUTE)})", "{{role}} {{code}}"),),
                    "Requests through our router (trafficRouting provider router), by the role that answered.",
                    unit="reqps",
                ),
                Panel(
                    "Router upstream latency p99 by role",
                    (Target(_quantile(0.99, "role", names.ROUTER_UPSTREAM_DURATION, ROUTE), "{{role}}"),),
                    "The router's hop to each role's model servers.",
                    unit="s",
                ),
            ),
        ),
        Row(
            "Shadow and A/B tests",
            (
                Panel(
                    "Shadow agreement",
                    (Target(_share("route", names.SHADOW_COMPARISONS, ROUTE, f'result="{names.AGREE}"'), "agreement"),),
                    "Share of mirrored requests whose shadow answer agreed with stable's (errors count against).",
                    unit="percentunit",
                    max=1,
                ),
                Panel(
                    "Shadow comparisons by result",
                    (Target(f"sum by (result) ({_rate(names.SHADOW_COMPARISONS, ROUTE)})", "{{result}}"),),
                    "Comparisons a second: agree, disagree, error.",
                    unit="ops",
                ),
                Panel(
                    "A/B success rate by variant",
                    (Target(f"max by (variant) (modelrollout_abtest_success_rate{{{MD}}})", "{{variant}}"),),
                    "The success metric's rate of each variant, as the operator's A/B test last computed it.",
                    unit="percentunit",
                ),
                Panel(
                    "A/B trials by variant",
                    (Target(f"max by (variant) (modelrollout_abtest_trials{{{MD}}})", "{{variant}}"),),
                    "Trials (the success metric's denominator) each variant has had.",
                ),
            ),
        ),
        Row(
            "Stream (Kafka consumers)",
            (
                Panel(
                    "Records by revision and result",
                    (
                        Target(
                            f"sum by (revision, result) ({_rate(names.STREAM_RECORDS, SERVER)})",
                            "{{revision}} {{result}}",
                        ),
                    ),
                    "Records a second: scored, dead_lettered, skipped (the other revision's share), dropped.",
                    unit="ops",
                    width=8,
                ),
                Panel(
                    "Consumer lag by revision",
                    (Target(f"sum by (revision) ({names.STREAM_CONSUMER_LAG}{{{SERVER}}})", "{{revision}}"),),
                    "Records behind the end of the input topic, summed over partitions.",
                    width=8,
                ),
                Panel(
                    "End-to-end latency p99 by revision",
                    (Target(_quantile(0.99, "revision", names.STREAM_END_TO_END, SERVER), "{{revision}}"),),
                    "From a record's timestamp to its micro-batch committed.",
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Stream shadow agreement by revision",
                    (
                        Target(
                            _share("revision", names.STREAM_SHADOW_COMPARISONS, SERVER, f'result="{names.AGREE}"'),
                            "{{revision}}",
                        ),
                    ),
                    "A shadowing candidate's answers that agreed with the stable output of the same records.",
                    unit="percentunit",
                    max=1,
                ),
            ),
        ),
        Row(
            "Batch (scheduled runs)",
            (
                Panel(
                    "Batch runs ended in range by role and phase",
                    (
                        Target(
                            f"sum by (role, phase) (increase(modelrollout_batch_runs_total{{{MD}}}[{RANGE}]))",
                            "{{role}} {{phase}}",
                            instant=True,
                        ),
                    ),
                    "Runs that ended in the dashboard's time range: stable, shadow, canary, preflight; Succeeded or "
                    "Failed.",
                    kind="bargauge",
                ),
                Panel(
                    "Batch records in range by role and result",
                    (
                        Target(
                            f"sum by (role, result) (increase(modelrollout_batch_records_total{{{MD}}}[{RANGE}]))",
                            "{{role}} {{result}}",
                            instant=True,
                        ),
                    ),
                    "Records the ended runs scored and rejected.",
                    kind="bargauge",
                ),
            ),
        ),
    ),
)

DASHBOARDS = (FLEET, MODEL_DEPLOYMENT)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.max is not None:
        defaults |= {"min": 0, "max": panel.max}
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if panel.bars else "line",
            "fillOpacity": 60 if panel.bars else 10,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "spanNulls": False,
        }
    options: dict[str, Any] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    if panel.kind != "timeseries":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": target.expr,
                "legendFormat": target.legend or "__auto",
                "instant": target.instant,
                "range": not target.instant,
            }
            for i, target in enumerate(panel.targets)
        ],
    }


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (what the sidecar loads and the e2e test reads)."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(_panel_json(panel, len(panels) + 1, x, y))
            x += panel.width
        y += 8
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["modelrollout"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": {"list": list(dashboard.variables)},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def files() -> dict[str, str]:
    """Path under the chart -> the dashboard's JSON."""
    return {f"files/dashboards/{d.uid}.json": json.dumps(dashboard_json(d), indent=2) + "\n" for d in DASHBOARDS}
