"""Valid and invalid ModelDeployment manifests shared by unit tests (pydantic) and integration tests (the real
API server), so the CEL rules in the CRD and the pydantic validators cannot drift apart."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))


def load_example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES_DIR / name).read_text())
    return loaded


@dataclass(frozen=True)
class Invalid:
    """A manifest made invalid by `mutate`; every string of `expect` must appear in the rejection message."""

    id: str
    mutate: Callable[[dict[str, Any]], None]
    expect: tuple[str, ...]
    base: str = "online-canary-router.yaml"

    def manifest(self) -> dict[str, Any]:
        body = copy.deepcopy(load_example(self.base))
        self.mutate(body)
        return body


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        node: Any = body
        *parents, last = path.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is _DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


_DELETE = object()


def _all(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        for m in mutations:
            m(body)

    return mutate


INVALID: list[Invalid] = [
    Invalid(
        "pod-label-of-the-operator",
        _set("spec.pod", {"labels": {"modelrollout.dev/revision": "x"}}),
        ("pod.labels keys", "not the operator's own", "modelrollout.dev/*"),
    ),
    Invalid(
        "pod-label-managed-by",
        _set("spec.pod", {"labels": {"app.kubernetes.io/managed-by": "me"}}),
        ("pod.labels keys", "app.kubernetes.io/managed-by"),
    ),
    Invalid(
        "pod-annotation-not-a-name",
        _set("spec.pod", {"annotations": {"has space": "x"}}),
        ("pod.annotations keys", "qualified names"),
    ),
    Invalid(
        "pod-toleration-operator",
        _set("spec.pod", {"tolerations": [{"key": "gpu", "operator": "Maybe"}]}),
        ("tolerations[0].operator", "Exists", "Equal"),
    ),
    Invalid(
        "pod-service-account-name",
        _set("spec.pod", {"serviceAccountName": "Not_A_Name"}),
        ("pod.serviceAccountName",),
    ),
    Invalid(
        "blue-green-without-online",
        _set("spec.rollout", {"strategy": "blueGreen", "blueGreen": {}}),
        ("rollout.strategy", "blueGreen and abTest need spec.online", "direct, canary, shadow"),
        base="batch.yaml",
    ),
    Invalid(
        "ab-test-without-online",
        _set(
            "spec.rollout",
            {
                "strategy": "abTest",
                "abTest": {"routeBy": {"header": "x-user"}, "successMetric": {"successes": "a", "trials": "b"}},
            },
        ),
        ("rollout.strategy", "blueGreen and abTest need spec.online"),
        base="stream.yaml",
    ),
    Invalid(
        "traffic-routing-without-online",
        _set("spec.rollout", {"strategy": "direct", "trafficRouting": {"provider": "router"}}),
        ("rollout.trafficRouting", "needs spec.online"),
        base="stream.yaml",
    ),
    Invalid(
        "unknown-strategy",
        _set("spec.rollout.strategy", "rolling"),
        ("rollout.strategy", "canary", "blueGreen", "shadow", "abTest", "direct"),
    ),
    Invalid("no-mode", _set("spec.online", _DELETE), ("spec.online", "spec.batch", "spec.stream")),
    Invalid("canary-without-steps", _set("spec.rollout.canary", _DELETE), ("rollout.canary", "steps")),
    Invalid(
        "step-with-two-actions",
        _set("spec.rollout.canary.steps.0", {"setWeight": 10, "pause": {}}),
        ("steps[0]", "exactly one of setWeight, pause or analysis"),
    ),
    Invalid("step-with-typo", _set("spec.rollout.canary.steps.0", {"setweight": 10}), ("steps[0].setweight",)),
    Invalid(
        "weights-decrease",
        _set("spec.rollout.canary.steps.3", {"setWeight": 5}),
        ("canary.steps", "must not decrease", "abort"),
    ),
    Invalid("weight-above-100", _set("spec.rollout.canary.steps.0.setWeight", 150), ("steps[0].setWeight", "100")),
    Invalid(
        "negative-pause",
        _set("spec.rollout.canary.steps.1.pause.duration", "-2m"),
        ("steps[1].pause.duration", "must be a duration", "1h30m"),
    ),
    Invalid(
        "duration-in-words",
        _set("spec.rollout.analysis.interval", "30 seconds"),
        ("analysis.interval", "must be a duration", "30s"),
    ),
    Invalid(
        "unknown-format",
        _set("spec.model.format", "tensorflow"),
        ("model.format", "sklearn", "onnx", "xgboost", "lightgbm", "custom"),
    ),
    Invalid("custom-without-class", _set("spec.model.format", "custom"), ("model.className", "import path")),
    Invalid(
        "class-without-custom",
        _set("spec.model.className", "pkg.mod:Model"),
        ("model.className", "format: custom"),
    ),
    Invalid("ftp-uri", _set("spec.model.uri", "ftp://models/churn.joblib"), ("model.uri", "s3:// URI")),
    Invalid("version-with-space", _set("spec.model.version", "7 beta"), ("model.version", "should match")),
    Invalid("stream-without-kafka", _set("spec.stream", {"replicas": 1}), ("stream.kafka", "required")),
    Invalid(
        "bad-schedule",
        _all(
            _set(
                "spec.batch",
                {"schedule": "every night", "input": {"uri": "s3://a/"}, "output": {"uri": "s3://b/"}},
            )
        ),
        ("batch.schedule", "5 fields", "0 2 * * *"),
    ),
    Invalid(
        "gateway-without-route",
        _set("spec.rollout.trafficRouting", {"provider": "gatewayAPI"}),
        ("trafficRouting.gatewayAPI", "httpRoute"),
    ),
    Invalid(
        "istio-without-virtualservice",
        _set("spec.rollout.trafficRouting", {"provider": "istio"}),
        ("trafficRouting.istio", "virtualService"),
    ),
    Invalid(
        "unknown-provider",
        _set("spec.rollout.trafficRouting", {"provider": "nginx"}),
        ("trafficRouting.provider", "service", "router", "gatewayAPI", "istio"),
    ),
    Invalid(
        "shadow-on-service-provider",
        _all(
            _set("spec.rollout.strategy", "shadow"),
            _set("spec.rollout.canary", _DELETE),
            _set("spec.rollout.shadow", {"duration": "5m"}),
            _set("spec.rollout.trafficRouting", {"provider": "service"}),
        ),
        ("trafficRouting.provider", "router, gatewayAPI or istio"),
    ),
    Invalid(
        "settings-for-other-strategy",
        _set("spec.rollout.blueGreen", {"autoPromote": True}),
        ("rollout.blueGreen", "strategy: blueGreen"),
    ),
    Invalid(
        "metric-builtin-and-query",
        _set("spec.rollout.analysis.metrics.0.query", "up"),
        ("metrics[0]", "exactly one of builtin or query"),
    ),
    Invalid(
        "metric-without-bound",
        _set("spec.rollout.analysis.metrics.0", {"name": "p95", "builtin": "latencyP95"}),
        ("metrics[0]", "min, max or relativeToStable"),
    ),
    Invalid(
        "duplicate-metric-names",
        _set("spec.rollout.analysis.metrics.1.name", "p95-latency"),
        ("analysis.metrics", "unique"),
    ),
    Invalid(
        "unknown-builtin",
        _set("spec.rollout.analysis.metrics.0.builtin", "latencyP50"),
        ("metrics[0].builtin", "latencyP95", "errorRate", "shadowAgreement"),
    ),
    Invalid(
        "unknown-no-data-policy",
        _set("spec.rollout.analysis.noData", "ignore"),
        ("analysis.noData", "inconclusive", "fail", "pass"),
    ),
    Invalid(
        "autoscaling-min-above-max",
        _set("spec.online.autoscaling", {"minReplicas": 5, "maxReplicas": 2}),
        ("autoscaling.minReplicas", "maxReplicas"),
    ),
    Invalid(
        "ab-weight-100",
        _set("spec.rollout.abTest.weight", 100),
        ("abTest.weight", "99"),
        base="online-ab-test.yaml",
    ),
    Invalid(
        "ab-cookie-that-is-no-cookie-name",
        _set("spec.rollout.abTest.routeBy", {"cookie": "user id"}),
        ("routeBy.cookie", "should match"),
        base="online-ab-test.yaml",
    ),
    Invalid(
        "ab-header-and-cookie",
        _set("spec.rollout.abTest.routeBy", {"header": "x-user", "cookie": "uid"}),
        ("routeBy", "exactly one of header or cookie"),
        base="online-ab-test.yaml",
    ),
    Invalid(
        "ab-alpha-out-of-range",
        _set("spec.rollout.abTest.alpha", 0.7),
        ("abTest.alpha", "0.5"),
        base="online-ab-test.yaml",
    ),
    Invalid("name-too-long", _set("metadata.name", "a" * 41), ("metadata.name", "40")),
    Invalid(
        "cpu-that-is-no-quantity",
        _set("spec.model.resources", {"requests": {"cpu": "lots"}}),
        ("model.resources.requests.cpu", "lots"),
    ),
    Invalid(
        "negative-memory",
        _set("spec.model.resources", {"limits": {"memory": -1}}),
        ("model.resources.limits.memory",),
    ),
    Invalid(
        "output-topic-that-is-no-kafka-topic",
        _set("spec.stream.kafka.outputTopic", "bad topic!"),
        ("stream.kafka.outputTopic", "Kafka topic name", "'.', '_' and '-'"),
        base="stream.yaml",
    ),
    Invalid(
        "dead-letter-topic-dot-dot",
        _set("spec.stream.kafka.deadLetterTopic", ".."),
        ("stream.kafka.deadLetterTopic", "not '.' or '..'"),
        base="stream.yaml",
    ),
    Invalid(
        "time-zone-not-in-the-database",
        _set("spec.batch.timeZone", "Mars/Olympus"),
        ("batch.timeZone", "IANA time zone", "Europe/Paris"),
        base="batch.yaml",
    ),
    Invalid(
        "time-zone-as-an-offset",
        _set("spec.batch.timeZone", "+05:00"),
        ("batch.timeZone", "IANA time zone"),
        base="batch.yaml",
    ),
    Invalid(
        "batch-canary-without-a-key",
        _all(
            _set("spec.batch.idColumns", _DELETE),
            _set("spec.rollout", {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}]}}),
        ),
        ("batch.key", "idColumns"),
        base="batch.yaml",
    ),
    Invalid(
        "batch-canary-with-an-analysis-step",
        _all(
            _set("spec.batch.idColumns", ["customer"]),
            _set("spec.rollout", {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"analysis": {}}]}}),
        ),
        ("rollout.canary.steps", "spec.batch.gates"),
        base="batch.yaml",
    ),
    Invalid(
        "batch-with-prometheus-analysis",
        _set("spec.rollout", {"strategy": "direct", "analysis": {"interval": "30s"}}),
        ("rollout.analysis", "spec.batch.gates"),
        base="batch.yaml",
    ),
    Invalid("batch-shards-zero", _set("spec.batch.shards", 0), ("batch.shards",), base="batch.yaml"),
    Invalid(
        "stream-exactly-once-without-a-dead-letter-topic",
        _set("spec.stream.kafka.deadLetterTopic", _DELETE),
        ("kafka.deadLetterTopic", "exactly-once", "at-least-once"),
        base="stream.yaml",
    ),
    Invalid(
        "stream-shadow-without-a-shadow-topic",
        _set("spec.rollout", {"strategy": "shadow", "shadow": {"duration": "5m"}}),
        ("a stream shadow", "stream.kafka.shadowTopic"),
        base="stream.yaml",
    ),
    Invalid(
        "stream-shadow-topic-is-the-output-topic",
        _set("spec.stream.kafka.shadowTopic", "transaction-scores"),
        ("kafka.shadowTopic", "outputTopic"),
        base="stream.yaml",
    ),
    Invalid(
        "stream-and-batch-without-online",
        _set("spec.batch", {"schedule": "@daily", "input": {"uri": "s3://a/"}, "output": {"uri": "s3://b/"}}),
        ("batch and stream together need spec.online",),
        base="stream.yaml",
    ),
    Invalid(
        "gate-with-url-and-url-secret",
        _set(
            "spec.rollout.gates",
            {"confirmPromotion": {"url": "http://gate/ok", "urlSecret": {"name": "hooks", "key": "url"}}},
        ),
        ("set exactly one of url or urlSecret",),
    ),
    Invalid(
        "gate-without-url",
        _set("spec.rollout.gates", {"confirmRollout": {"interval": "10s"}}),
        ("set exactly one of url or urlSecret",),
    ),
    Invalid(
        "gate-url-not-http",
        _set("spec.rollout.gates", {"confirmRollout": {"url": "ftp://gate/ok"}}),
        ("confirmRollout.url",),
    ),
    Invalid(
        "gate-on-timeout-unknown",
        _set("spec.rollout.gates", {"confirmRollout": {"url": "http://gate/ok", "onTimeout": "skip"}}),
        ("onTimeout", "abort", "proceed"),
    ),
    Invalid(
        "pre-rollout-without-command",
        _set("spec.rollout.gates", {"preRollout": {"command": []}}),
        ("preRollout.command",),
    ),
    Invalid(
        "gates-on-a-batch-only-rollout",
        _set("spec.rollout", {"strategy": "direct", "gates": {"confirmRollout": {"url": "http://gate/ok"}}}),
        ("rollout.gates are passed by online and stream rollouts", "spec.batch.gates"),
        base="batch.yaml",
    ),
    Invalid(
        "pre-rollout-on-a-stream-rollout",
        _set("spec.rollout", {"strategy": "direct", "gates": {"preRollout": {"command": ["smoke"]}}}),
        ("rollout.gates.preRollout", "needs spec.online"),
        base="stream.yaml",
    ),
]


_HOOK = {"name": "team-chat", "url": "https://hooks.example.com/x"}
INVALID += [
    Invalid(
        "notification-webhook-names-repeat",
        _set("spec.notifications", {"webhooks": [_HOOK, {**_HOOK, "format": "slack"}]}),
        ("notifications.webhooks", "must be unique", "its own name"),
    ),
    Invalid(
        "notification-webhook-url-twice",
        _set("spec.notifications", {"webhooks": [{**_HOOK, "urlSecret": {"name": "hooks", "key": "chat"}}]}),
        ("webhooks[0]", "exactly one of url or urlSecret"),
    ),
    Invalid(
        "notification-webhook-without-url",
        _set("spec.notifications", {"webhooks": [{"name": "team-chat"}]}),
        ("webhooks[0]", "exactly one of url or urlSecret"),
    ),
    Invalid(
        "notification-webhook-name",
        _set("spec.notifications", {"webhooks": [{**_HOOK, "name": "Team_Chat"}]}),
        ("webhooks[0].name", "must be a DNS label"),
    ),
    Invalid(
        "notification-webhook-format",
        _set("spec.notifications", {"webhooks": [{**_HOOK, "format": "discord"}]}),
        ("webhooks[0].format", "generic", "slack", "teams"),
    ),
    Invalid(
        "notification-event-kind",
        _set("spec.notifications", {"webhooks": [{**_HOOK, "events": ["promoted", "deployed"]}]}),
        ("webhooks[0].events[1]", "started", "stepReached", "rolledBack", "abDecided"),
    ),
    Invalid(
        "notification-webhook-url-scheme",
        _set("spec.notifications", {"webhooks": [{**_HOOK, "url": "ftp://hooks.example.com/x"}]}),
        ("webhooks[0].url", "https?://"),
    ),
]


_FALLBACK_MODEL = {"name": "churn", "version": "rules-1", "uri": "s3://models/rules-1.joblib", "format": "sklearn"}
_FALLBACK = {"model": _FALLBACK_MODEL}
INVALID += [
    Invalid(
        "fallback-without-the-router",
        _all(_set("spec.online.fallback", _FALLBACK), _set("spec.rollout.trafficRouting", _DELETE)),
        ("online.fallback is answered by our router", "rollout.trafficRouting.provider: router"),
    ),
    Invalid(
        "fallback-behind-a-mesh",
        _all(
            _set("spec.online.fallback", _FALLBACK),
            _set("spec.rollout.trafficRouting", {"provider": "istio", "istio": {"virtualService": "churn"}}),
        ),
        ("online.fallback is answered by our router",),
    ),
    Invalid(
        "fallback-budget-not-below-the-timeout",
        _all(
            _set("spec.online.fallback", {**_FALLBACK, "latencyBudget": "2s"}),
            _set("spec.rollout.trafficRouting", {"provider": "router", "router": {"timeout": "2s"}}),
        ),
        ("online.fallback.latencyBudget must be below rollout.trafficRouting.router.timeout",),
    ),
    Invalid(
        "fallback-budget-above-the-default-timeout",
        _set("spec.online.fallback", {**_FALLBACK, "latencyBudget": "1m"}),
        ("online.fallback.latencyBudget must be below", "(default 10s)"),
    ),
    Invalid(
        "fallback-without-a-model",
        _set("spec.online.fallback", {"replicas": 1}),
        ("online.fallback.model", "required"),
    ),
    Invalid(
        "fallback-model-custom-without-class",
        _set("spec.online.fallback", {"model": {**_FALLBACK_MODEL, "format": "custom"}}),
        ("model.className", "import path"),
    ),
]

_MEMBERS = [{"name": "b", "modelDeployment": "churn-b"}, {"name": "c", "modelDeployment": "churn-c"}]
_TRIO = {"members": ["self", "b", "c"], "quorum": 2}
INVALID += [
    Invalid(
        "graph-without-the-router",
        _all(
            _set("spec.online.graph", {"members": _MEMBERS, "ensemble": _TRIO}),
            _set("spec.rollout.trafficRouting", _DELETE),
        ),
        ("online.graph is served by our router", "provider: router"),
    ),
    Invalid(
        "graph-without-ensemble-or-routes",
        _set("spec.online.graph", {"members": _MEMBERS}),
        ("online.graph needs an ensemble, routes or an A/B/n test",),
    ),
    Invalid(
        "graph-member-named-like-a-role",
        _set("spec.online.graph", {"members": [{"name": "canary", "modelDeployment": "x"}], "ensemble": _TRIO}),
        ("online.graph.members[].name must not be one of self, stable, canary",),
    ),
    Invalid(
        "graph-member-named-twice",
        _set("spec.online.graph", {"members": [*_MEMBERS, _MEMBERS[0]], "ensemble": _TRIO}),
        ("online.graph.members names a member twice",),
    ),
    Invalid(
        "graph-ensemble-without-self",
        _set("spec.online.graph", {"members": _MEMBERS, "ensemble": {"members": ["b", "c"]}}),
        ("online.graph.ensemble.members must include 'self'",),
    ),
    Invalid(
        "graph-ensemble-names-an-unknown-member",
        _set("spec.online.graph", {"members": _MEMBERS, "ensemble": {"members": ["self", "d"]}}),
        ("online.graph.ensemble.members must each be 'self' or a name in online.graph.members",),
    ),
    Invalid(
        "graph-ensemble-quorum-above-its-members",
        _set("spec.online.graph", {"members": _MEMBERS, "ensemble": {**_TRIO, "quorum": 4}}),
        ("online.graph.ensemble.quorum must not be more than its members",),
    ),
    Invalid(
        "graph-weighted-without-weights",
        _set("spec.online.graph", {"members": _MEMBERS, "ensemble": {**_TRIO, "combine": "weighted"}}),
        ("combine weighted needs weights",),
    ),
    Invalid(
        "graph-weights-miss-a-member",
        _set(
            "spec.online.graph",
            {"members": _MEMBERS, "ensemble": {**_TRIO, "combine": "vote", "weights": {"self": 2, "b": 1}}},
        ),
        ("online.graph.ensemble.weights must give exactly the ensemble's members a weight each",),
    ),
    Invalid(
        "graph-route-to-an-unknown-member",
        _set("spec.online.graph", {"members": _MEMBERS, "routes": [{"to": "d", "header": "x-region", "exact": "eu"}]}),
        ("online.graph.routes[].to must be a name in online.graph.members",),
    ),
    Invalid(
        "graph-route-by-header-and-feature",
        _set(
            "spec.online.graph",
            {"members": _MEMBERS, "routes": [{"to": "b", "header": "x-region", "feature": "country", "equals": "FR"}]},
        ),
        ("online.graph.routes[] matches exactly one of header or feature",),
    ),
    Invalid(
        "graph-feature-route-without-a-value",
        _set("spec.online.graph", {"members": _MEMBERS, "routes": [{"to": "b", "feature": "country"}]}),
        ("online.graph.routes[] with feature sets exactly one of equals or in",),
    ),
    Invalid(
        "graph-ensemble-with-a-shadow",
        _all(
            _set("spec.online.graph", {"members": _MEMBERS, "ensemble": _TRIO}),
            _set(
                "spec.rollout",
                {"strategy": "shadow", "shadow": {"mirrorPercent": 10}, "trafficRouting": {"provider": "router"}},
            ),
        ),
        ("rollout.strategy shadow copies stable's requests to the candidate",),
    ),
    Invalid(
        "graph-member-timeout-above-the-routers",
        _set("spec.online.graph", {"members": _MEMBERS, "ensemble": {**_TRIO, "memberTimeout": "11s"}}),
        ("online.graph.ensemble.memberTimeout must not be above rollout.trafficRouting.router.timeout",),
    ),
]
_ABN = {
    "variants": [{"name": "self", "weight": 34}, {"name": "b", "weight": 33}, {"name": "c", "weight": 33}],
    "routeBy": {"header": "x-user-id"},
    "successMetric": {"successes": 'sum(increase(conversions{v="{{version}}"}[{{interval}}]))',
                      "trials": 'sum(increase(visits{v="{{version}}"}[{{interval}}]))'},
}  # fmt: skip
_DIRECT = {"strategy": "direct", "trafficRouting": {"provider": "router"}}


def _abn(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return _all(_set("spec.online.graph", {"members": _MEMBERS, "abn": {**_ABN, **changes}}),
                _set("spec.rollout", _DIRECT))  # fmt: skip


INVALID += [
    Invalid(
        "graph-abn-beside-a-canary",
        _set("spec.online.graph", {"members": _MEMBERS, "abn": _ABN}),
        ("online.graph.abn splits users between this model's stable version and the members",),
    ),
    Invalid(
        "graph-abn-and-an-ensemble",
        _all(
            _set("spec.online.graph", {"members": _MEMBERS, "abn": _ABN, "ensemble": _TRIO}),
            _set("spec.rollout", _DIRECT),
        ),
        ("online.graph.abn and online.graph.ensemble exclude each other",),
    ),
    Invalid(
        "graph-abn-without-self",
        _abn(variants=[{"name": "b", "weight": 50}, {"name": "c", "weight": 50}]),
        ("online.graph.abn.variants must include 'self'",),
    ),
    Invalid(
        "graph-abn-weights-not-100",
        _abn(variants=[{"name": "self", "weight": 50}, {"name": "b", "weight": 40}]),
        ("online.graph.abn.variants' weights must add up to 100",),
    ),
    Invalid(
        "graph-abn-unknown-variant",
        _abn(variants=[{"name": "self", "weight": 50}, {"name": "d", "weight": 50}]),
        ("online.graph.abn.variants must each be 'self' or a name in online.graph.members",),
    ),
    Invalid(
        "graph-abn-variant-twice",
        _abn(variants=[{"name": "self", "weight": 50}, {"name": "b", "weight": 25}, {"name": "b", "weight": 25}]),
        ("online.graph.abn.variants names a variant twice",),
    ),
    Invalid("graph-abn-unknown-on-winner", _abn(onWinner="promote"), ("onWinner", "report", "route")),
]

# Valid values at the edges of the rules above: both pydantic and the API server admit each.
EDGE_VALID: list[Invalid] = [
    Invalid(
        "graph-abn-of-two-variants-by-cookie",
        _abn(
            variants=[{"name": "self", "weight": 99}, {"name": "c", "weight": 1}],
            routeBy={"cookie": "uid"},
            test="sequential",
            onWinner="route",
        ),
        (),
    ),
    Invalid(
        "graph-weighted-ensemble-and-routes-by-header-and-feature",
        _set(
            "spec.online.graph",
            {
                "members": _MEMBERS,
                "ensemble": {
                    **_TRIO,
                    "combine": "weighted",
                    "weights": {"self": 2, "b": 1, "c": 0.5},
                    "memberTimeout": "10s",
                },
                "routes": [
                    {"to": "b", "header": "x-region", "regex": "eu-.*"},
                    {"to": "c", "feature": "country", "in": ["FR", 33]},
                    {"to": "c", "feature": "n", "equals": 3},
                ],
            },
        ),
        (),
    ),
    Invalid(
        "router-api-keys-from-a-secret",
        _set("spec.rollout.trafficRouting", {"provider": "router", "router": {"apiKeys": {"name": "k", "key": "f"}}}),
        (),
    ),
    Invalid(
        "fallback-budget-just-below-the-timeout",
        _all(
            _set("spec.online.fallback", {**_FALLBACK, "latencyBudget": "1999ms", "replicas": 2}),
            _set("spec.rollout.trafficRouting", {"provider": "router", "router": {"timeout": "2s"}}),
        ),
        (),
    ),
    Invalid(
        "pod-placement",
        _all(
            _set(
                "spec.pod",
                {
                    "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
                                ]
                            }
                        }
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "zone",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": {"matchLabels": {"team": "ml"}},
                        }
                    ],
                    "serviceAccountName": "churn-models",
                    "imagePullSecrets": ["registry-creds"],
                    "priorityClassName": "ml-serving",
                    "labels": {"team": "ml", "example.com/cost-center": "42"},
                    "annotations": {"example.com/owner": "ml-platform@example.com"},
                },
            ),
            _set("spec.model.resources", {"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}}),
        ),
        (),
    ),
    Invalid(
        "quantities",
        _set(
            "spec.model.resources",
            {"requests": {"cpu": "1.5", "memory": "512Mi"}, "limits": {"cpu": 2, "memory": "1e9"}},
        ),
        (),
    ),
    Invalid("millicores", _set("spec.model.resources", {"requests": {"cpu": "250m"}}), ()),
    Invalid("three-dots-topic", _set("spec.stream.kafka.outputTopic", "..."), (), base="stream.yaml"),
    Invalid(
        "stream-at-least-once-without-a-dead-letter-topic",
        _all(_set("spec.stream.kafka.deadLetterTopic", _DELETE), _set("spec.stream.delivery", "at-least-once")),
        (),
        base="stream.yaml",
    ),
    Invalid(
        "stream-canary-by-key",
        _set("spec.rollout", {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}),
        (),
        base="stream.yaml",
    ),
    Invalid(
        "shadow-led-by-online-with-stream-and-batch",
        _set("spec.rollout", {"strategy": "shadow", "shadow": {"duration": "5m"}}),
        (),
        base="hybrid.yaml",
    ),
    Invalid("dotted-topic", _set("spec.stream.kafka.outputTopic", ".scores_v2-eu"), (), base="stream.yaml"),
    Invalid("longest-topic", _set("spec.stream.kafka.inputTopic", "t" * 249), (), base="stream.yaml"),
    Invalid("utc", _set("spec.batch.timeZone", "UTC"), (), base="batch.yaml"),
    Invalid("etc-offset-zone", _set("spec.batch.timeZone", "Etc/GMT+5"), (), base="batch.yaml"),
    Invalid("three-part-zone", _set("spec.batch.timeZone", "America/Argentina/Buenos_Aires"), (), base="batch.yaml"),
    Invalid(
        "notification-webhooks-every-shape",
        _set(
            "spec.notifications",
            {
                "operatorDefaults": False,
                "webhooks": [
                    {**_HOOK, "events": ["promoted", "rolledBack"], "timeout": "1500ms"},
                    {"name": "slack", "format": "slack", "urlSecret": {"name": "hooks", "key": "slack"}},
                    {
                        "name": "t" * 63,
                        "format": "teams",
                        "urlSecret": {"name": "hooks", "key": "teams"},
                        "bearerTokenSecret": {"name": "hooks", "key": "token"},
                        "events": [
                            "started",
                            "stepReached",
                            "paused",
                            "promoted",
                            "rolledBack",
                            "analysisFailed",
                            "abDecided",
                        ],
                    },
                ],
            },
        ),
        (),
    ),
    Invalid("notifications-off", _set("spec.notifications", {"operatorDefaults": False}), ()),
]
