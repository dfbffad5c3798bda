"""The operator throttled by the real API server's API Priority and Fairness: it backs off instead of hammering
(no tight loop while every request it makes is queued and then refused), drops no decision (a rollout started
while it is starved completes once the starvation is lifted, every step once), and says what happened.

The operator runs as a ServiceAccount with deploy/'s ClusterRole rules (testkit.chart.deployed_rules) and leader
election's Role, so that a FlowSchema can single its requests out. kwokctl starts the cluster's kube-apiserver
with APF off (`--enable-priority-and-fairness=false`, with the in-flight limits off, from hack/cluster-up.sh's
`--disable-qps-limits`), so this test starts it again with APF on, and with `--request-timeout=20s`: a request
waits in its queue at most a quarter of its deadline (k8s.io/apiserver getRequestWaitContext), 5 s here instead
of 15 s, so that a starvation of a few seconds shows both of APF's refusals. The `apiserver` fixture puts
kwokctl's command line back afterwards.

Starving: the operator's FlowSchema sends its requests to a PriorityLevelConfiguration that starts generous
(nominalConcurrencyShares 100) and is then given none (0: no seats of its own; lendablePercent and
borrowingLimitPercent 0: none borrowed either) and one queue of one request: a request waits there until the
quarter of its deadline passes (429, reason time-out) and any other arriving meanwhile is refused at once (429,
queue-full). Giving the shares back lifts it. The operator's Lease requests have a FlowSchema of their own to
the built-in leader-election level, as kube-system's controllers have (workload-leader-election): a leader whose
renewals are starved for its renew deadline exits by design (exit code 3), which is not what is tested here.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families
from testkit.apiserver import KwokApiServer
from testkit.chart import deployed_rules
from testkit.operator import OperatorProcess
from testkit.rbac import bind_leader_role

from tests.conftest import Cluster
from tests.faults.control_plane.conftest import StartOperator
from tests.faults.control_plane.support import Mdep, percent, spec_change_starts_rollout

pytestmark = [pytest.mark.faults, pytest.mark.slow]

ACCOUNT = "modelrollout"
STEPS = [{"setWeight": 50}, {"pause": {"duration": "2s"}}]
ROLLOUT = {"strategy": "canary", "canary": {"steps": STEPS}, "trafficRouting": {"provider": "router"}}
REQUEST_TIMEOUT_S = 20
QUEUE_WAIT_S = REQUEST_TIMEOUT_S / 4
# More than a queue wait: the change handler's first request waits out its queue (time-out) while the rest are
# refused at once (queue-full).
STARVED_S = 8
QUIET_S = 1.5  # after the promotion's last child change, before the next spec change
GENEROUS_SHARES = 100
# Requests a second the operator may make while starved. Unthrottled and idle it makes about 4 (66 in 15 s
# measured: a pass every resync, 5 s here, is about 20 requests), and a starved pass stops at its first refusal; a
# loop that retried refusals at once would make hundreds (a queue-full 429 comes back in milliseconds).
STARVED_RATE_BOUND = 2.0
# After the shares are back: the retry of a refused apply waits 2 s, doubling (apply_retry_initial_s), and the
# starvation refuses at most STARVED_S / QUEUE_WAIT_S of them; then a pass, the 2 s pause, the promotion.
RECOVERY_BOUND_S = 30


@dataclass
class Flow:
    """The operator's requests as the API server counted them, by its FlowSchema."""

    dispatched: float
    rejected: dict[str, float]  # by reason: time-out, queue-full, concurrency-limit, cancelled
    waiting: float  # in a queue right now
    waited: float  # requests that left a queue (dispatched or not)

    @property
    def arrived(self) -> float:
        return self.dispatched + sum(self.rejected.values()) + self.waiting


def _flow(apiserver: KwokApiServer, flow_schema: str) -> Flow:
    flow = Flow(dispatched=0, rejected={}, waiting=0, waited=0)
    for family in text_string_to_metric_families(apiserver.get("/metrics").text):
        for sample in family.samples:
            if sample.labels.get("flow_schema") != flow_schema:
                continue
            if sample.name == "apiserver_flowcontrol_dispatched_requests_total":
                flow.dispatched += sample.value
            elif sample.name == "apiserver_flowcontrol_rejected_requests_total":
                reason = sample.labels["reason"]
                flow.rejected[reason] = flow.rejected.get(reason, 0) + sample.value
            elif sample.name == "apiserver_flowcontrol_current_inqueue_requests":
                flow.waiting += sample.value
            elif sample.name == "apiserver_flowcontrol_request_wait_duration_seconds_count":
                flow.waited += sample.value
    return flow


def _operator_429s(operator: OperatorProcess) -> float:
    text = httpx.get(operator.metrics_url or "", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "modelrollout_api_requests_total" and s.labels.get("code") == "429"
    )


@dataclass
class Throttle:
    api: client.ApiClient
    name: str  # of the PriorityLevelConfiguration and the operator's FlowSchema

    async def shares(self, shares: int) -> None:
        body = {"spec": {"limited": {"nominalConcurrencyShares": shares}}}
        await client.FlowcontrolApiserverV1Api(self.api).patch_priority_level_configuration(self.name, body)


@pytest.fixture
async def apf(apiserver: KwokApiServer) -> KwokApiServer:
    """This worker's API server with API Priority and Fairness on (kwokctl's command line comes back after)."""
    command = apiserver.command().with_flags(
        enable_priority_and_fairness="true",
        # kwokctl's 0 (no limit) is refused with APF on: the defaults, which APF divides among priority levels.
        max_requests_inflight=None,
        max_mutating_requests_inflight=None,
        request_timeout=f"{REQUEST_TIMEOUT_S}s",
    )
    await asyncio.to_thread(apiserver.restart, command)
    return apiserver


@pytest.fixture
async def throttle(apf: KwokApiServer, kube_api: client.ApiClient, namespace: str) -> AsyncIterator[Throttle]:
    """The operator's ServiceAccount with deploy/'s rules, its own priority level (generous to start with), its
    FlowSchema, and its Lease's FlowSchema to the built-in leader-election level; removed afterwards."""
    name = f"faults-{namespace}"
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    flow = client.FlowcontrolApiserverV1Api(kube_api)
    subject = {"kind": "ServiceAccount", "serviceAccount": {"name": ACCOUNT, "namespace": namespace}}
    await core.create_namespaced_service_account(namespace, {"metadata": {"name": ACCOUNT}})
    await rbac.create_cluster_role({"metadata": {"name": name}, "rules": deployed_rules()})
    await rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
        }
    )
    await bind_leader_role(kube_api, namespace=namespace, account=ACCOUNT)
    await flow.create_priority_level_configuration(
        {
            "metadata": {"name": name},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": GENEROUS_SHARES,
                    "lendablePercent": 0,
                    "borrowingLimitPercent": 0,
                    "limitResponse": {
                        "type": "Queue",
                        "queuing": {"queues": 1, "handSize": 1, "queueLengthLimit": 1},
                    },
                },
            },
        }
    )
    lease = f"{name}-lease"
    await flow.create_flow_schema(
        {
            "metadata": {"name": lease},
            "spec": {
                "priorityLevelConfiguration": {"name": "leader-election"},
                "matchingPrecedence": 900,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [subject],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["coordination.k8s.io"],
                                "resources": ["leases"],
                                "namespaces": [namespace],
                            }
                        ],
                    }
                ],
            },
        }
    )
    await flow.create_flow_schema(
        {
            "metadata": {"name": name},
            "spec": {
                "priorityLevelConfiguration": {"name": name},
                "matchingPrecedence": 1000,  # before the built-in service-accounts (9000)
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [subject],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "namespaces": ["*"],
                                "clusterScope": True,
                            }
                        ],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        }
    )
    try:
        yield Throttle(kube_api, name)
    finally:
        removals: list[Callable[[], Awaitable[object]]] = [
            lambda: flow.delete_flow_schema(name),
            lambda: flow.delete_flow_schema(lease),
            lambda: flow.delete_priority_level_configuration(name),
            lambda: rbac.delete_cluster_role_binding(name),
            lambda: rbac.delete_cluster_role(name),
        ]
        for remove in removals:  # cluster-scoped: they would outlive the namespace
            try:
                await remove()
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


async def test_api_server_throttling_429_and_queuing_operator_backs_off_and_drops_no_decision(  # noqa: PLR0917 - fixtures
    apf: KwokApiServer,
    throttle: Throttle,
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    start_operator: StartOperator,
    mdep: Mdep,
) -> None:
    kubeconfig = cluster.service_account_kubeconfig(namespace, ACCOUNT, tmp_path / "sa.kubeconfig")
    # Which watch delivered what: the operator's modelrollout_pass_triggers_total (support.triggers).
    operator = start_operator(kubeconfig=kubeconfig, MODELROLLOUT_LOG_FORMAT="json")
    started = time.monotonic()
    await mdep.create(ROLLOUT)
    await mdep.healthy_on("1", within=60)
    unthrottled = _flow(apf, throttle.name)
    unthrottled_s = time.monotonic() - started
    assert unthrottled.arrived > 0, "the operator's requests are not in its FlowSchema"

    await throttle.shares(0)
    starved_at = time.monotonic()
    before = _flow(apf, throttle.name)
    await mdep.to_version("2")  # as admin: exempt, not throttled
    await asyncio.sleep(STARVED_S)
    during = _flow(apf, throttle.name)
    starved_s = time.monotonic() - starved_at
    status = await mdep.status()
    assert "canary" not in status, f"the starved operator made progress: {status}"

    await throttle.shares(GENEROUS_SHARES)
    lifted = time.monotonic()
    await mdep.healthy_on("2", within=RECOVERY_BOUND_S)
    recovered_s = time.monotonic() - lifted

    arrived = during.arrived - before.arrived
    rate = arrived / starved_s
    refused = {reason: during.rejected.get(reason, 0) - before.rejected.get(reason, 0) for reason in during.rejected}
    print(
        f"\nunthrottled: {unthrottled.arrived:g} requests in {unthrottled_s:.1f}s from its start to version 1 "
        f"Healthy ({unthrottled.arrived / unthrottled_s:.2f}/s); starved {starved_s:.1f}s: {arrived:g} requests "
        f"({rate:.2f}/s), refused {refused}, waited in a queue {during.waited - before.waited:g}; "
        f"version 2 promoted {recovered_s:.1f}s after the starvation was lifted"
    )
    assert refused.get("time-out", 0) >= 1, f"no request waited out its queue: {refused}"
    assert rate <= STARVED_RATE_BOUND, f"{rate:.2f} requests/s while starved: a retry loop"

    events = await mdep.events_until(
        lambda found: sum(e.reason == "Promoted" for e in found) == 2, "the Promoted Event of version 2"
    )
    assert [e.reason for e in events].count("RolloutStarted") == 2, "version 1, then version 2, once"
    assert [percent(e.message) for e in events if e.reason == "WeightSet"] == [50], "the step once"
    # Said: the operator's own metrics count the refusals, and its log names them.
    assert _operator_429s(operator) >= 1
    # The API server's words, not the digits: log timestamps carry milliseconds such as ",429".
    told = [line for line in operator.log().splitlines() if re.search(r"\(429\)|status=429|Too Many Requests", line)]
    assert told, "the log never says the API server throttled the operator"
    assert operator.alive()
    assert operator.log().count("===== operator start") == 1

    # Once it is over, a spec change starts its rollout at once again, through the ModelDeployment's watch.
    await asyncio.sleep(QUIET_S)
    await spec_change_starts_rollout(operator, mdep, "3", within=3.0)
