"""kill -9 of the router's process in the middle of a canary, while the operator moves the weights on.

The router pod's container is a process of the local kubelet, which restarts it (after the kubelet's back-off,
10 s as a real kubelet's first). Meanwhile the canary's pause ends and the operator writes the next weights. The
new process must serve the weights of the document in force from the very first request it answers: not the
weights its predecessor had, not a default, and not before it has read the document (until then it answers
503 and is not Ready, so no Service sends it anything). Then it must go on following the ConfigMap.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from testkit.load import ROLE_HEADER, VERSION_HEADER
from testkit.waiting import eventually

from modelrollout.planning.names import LABEL_MODE, LABEL_NAME
from modelrollout.planning.online import HTTP_PORT
from tests.e2e.rollouts import Rollout, World, routed
from tests.faults.rollouts.witness import Routing, Witness

pytestmark = [pytest.mark.faults, pytest.mark.slow]

# 10% before the kill, 90% once the pause is over: a router serving the old document (or stable's default) is
# as far from the new split as a split can be. The pause ends well after the kill (which comes as soon as the
# router serves 10%) and well before the kubelet restarts the router (10 s): it costs the test nothing.
STEPS = [{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 90}, {"pause": {}}]
FIRST = 200  # answered requests checked after the restart
IN_FLIGHT = 8


@dataclass(frozen=True)
class RouterPod:
    name: str
    ip: str
    pid: int
    restarts: int


async def router_pod(api: client.ApiClient, namespace: str, name: str) -> RouterPod | None:
    """The router's pod while its container runs (None while it is being restarted)."""
    pods = await client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"{LABEL_NAME}={name},{LABEL_MODE}=router"
    )
    for pod in pods.items:
        for container in pod.status.container_statuses or []:
            if container.state.running is not None and container.container_id and pod.status.pod_ip:
                pid = int(container.container_id.removeprefix("local://"))
                return RouterPod(pod.metadata.name, pod.status.pod_ip, pid, container.restart_count)
    return None


@dataclass(frozen=True)
class Answer:
    at: float
    status: int | None  # None: no HTTP answer (the port is closed while the process is down)
    role: str | None
    version: str | None


async def hammer(url: str, body: dict[str, Any], answered: int) -> list[Answer]:
    """Requests to `url`, IN_FLIGHT at a time, from now until `answered` of them got a 2xx; every outcome."""
    outcomes: list[Answer] = []

    async def one(http: httpx.AsyncClient) -> None:
        while sum(1 for a in outcomes if a.status == 200) < answered:
            sent = time.time()
            try:
                reply = await http.post(url, json=body, timeout=5)
            except httpx.TransportError:
                outcomes.append(Answer(sent, None, None, None))
                await asyncio.sleep(0.01)  # the port is closed: the process is down or not listening yet
                continue
            outcomes.append(Answer(sent, reply.status_code, reply.headers.get(ROLE_HEADER),
                                   reply.headers.get(VERSION_HEADER)))  # fmt: skip
            if reply.status_code != 200:
                await asyncio.sleep(0.01)

    async with httpx.AsyncClient() as http:
        await asyncio.wait_for(asyncio.gather(*(one(http) for _ in range(IN_FLIGHT))), 90)
    return sorted(outcomes, key=lambda a: a.at)


def binomial_bounds(n: int, p: float, sigmas: float = 4.5) -> tuple[float, float]:
    """Counts of a share `p` of `n` draws that chance alone leaves (about 1 in 150,000 outside)."""
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


async def test_router_kill9_mid_rollout_serves_the_current_weights_from_its_first_request(
    world: World, kube_api: client.ApiClient
) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": STEPS}}))
    witness = await Witness.start(kube_api, stack.namespace, stack.name)
    await rollout.to_version("2")
    before = await _router_serving(rollout, canary=10)

    since = time.time()
    os.kill(before.pid, signal.SIGKILL)
    row = world.classifiers.dataset.rows[0].tolist()
    body = {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
    url = f"http://{before.ip}:{HTTP_PORT}{stack.infer_path()}"
    answers = await hammer(url, body, FIRST)
    after = await router_pod(kube_api, stack.namespace, stack.name)
    config = await rollout.configmap()
    await witness.stop()

    assert after is not None, "the router's container is not running again"
    assert (after.name, after.restarts) == (before.name, before.restarts + 1), "restarted in place, once"
    assert after.pid != before.pid
    assert config is not None
    documents = [(at, doc) for at, doc in witness.documents if at >= since]
    assert [doc.weights for _, doc in documents] == [(10, 90)], "the operator moved on while the router was down"
    current = documents[-1][1]
    assert Routing(config.versions.stable, config.versions.canary, (config.weights.stable, config.weights.canary),
                   config.mirror_percent, None) == current  # fmt: skip
    restarted = next(a.at for a in answers if a.status is not None)
    assert documents[-1][0] < restarted, "the document changed before the new process answered anything"

    served = [a for a in answers if a.status == 200][:FIRST]
    refused = [a for a in answers if a.status not in (None, 200)]
    # Before it has read the document the router answers 503 (and is not Ready); nothing else may go wrong.
    assert {a.status for a in refused} <= {503}, refused[:5]
    low, high = binomial_bounds(FIRST, 0.9)
    canary = sum(a.role == "canary" for a in served)
    assert {(a.role, a.version) for a in served} <= {("stable", "1"), ("canary", "2")}
    assert low <= canary <= high, (
        f"{canary} of the first {FIRST} answers after the restart came from the canary; the document in force "
        f"says 90% ({low:.0f}..{high:.0f} expected), the one before it 10%"
    )
    first_ten = sum(a.role == "canary" for a in served[:10])
    assert first_ten >= 5, f"the first 10 answers: {[a.role for a in served[:10]]}"  # P(< 5 of 10 at 90%) ~ 2e-4
    print(f"\n[router kill] restarted {restarted - since:.1f}s after the kill; first {FIRST} answers: {canary} canary; "
          f"{len(refused)} answered 503 before the document was read")  # fmt: skip

    # The new process follows the ConfigMap from then on: promoted, everything goes to version 2 as stable.
    await rollout.verb("promote")
    await _router_serving(rollout, canary=0, stable_version="2")


async def _router_serving(rollout: Rollout, *, canary: int, stable_version: str | None = None) -> RouterPod:
    """The router pod once the router itself says it serves `canary`% (and, when given, once the ConfigMap names
    `stable_version` as stable): what it loaded, not what the ConfigMap or status say."""

    async def serving() -> RouterPod | None:
        pod = await router_pod(rollout.api, rollout.stack.namespace, rollout.stack.name)
        if pod is None:
            return None
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient() as http:
                ready = (await http.get(f"http://{pod.ip}:{HTTP_PORT}/readyz", timeout=2)).json()
            config = await rollout.configmap()
            same_version = stable_version is None or (config is not None and config.versions.stable == stable_version)
            if ready.get("weights", {}).get("canary") == canary and same_version:
                return pod
        return None

    return await eventually(serving, within=60, interval=0.1, what=f"the router serving {canary}% to the canary")
