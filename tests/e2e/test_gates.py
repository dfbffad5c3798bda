"""spec.rollout.gates end to end: a real webhook receiver on loopback that the operator asks, and a preRollout hook
Job run by the local kubelet as a real process that smoke-tests the candidate through its `<name>-canary` Service
before the candidate gets any traffic."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.e2e.rollouts import World, routed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The hook's smoke test, as a user would write one: the candidate is ready and answers a real row with its own
# version (so the test reached the candidate, not stable); any failure exits non-zero with its reason.
SMOKE = """
import json, os, sys, urllib.request
base = os.environ["MODEL_URL"]
name, version = os.environ["MODEL_NAME"], os.environ["MODEL_VERSION"]
row = json.loads(os.environ["ROW"])
body = json.dumps({"inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}).encode()
request = urllib.request.Request(f"{base}/v2/models/{name}/infer", data=body,
                                 headers={"Content-Type": "application/json"})
try:
    answer = json.load(urllib.request.urlopen(request, timeout=10))
except Exception as exc:
    sys.exit(f"smoke test: infer failed: {exc}")
if answer.get("model_version") != version:
    sys.exit(f"smoke test: answered by version {answer.get('model_version')}, not the candidate {version}")
print("smoke test passed")
"""


@dataclass
class Gatekeeper:
    """A webhook receiver: records every question (the JSON body) and answers 200 to the gates it approves, 403
    to the others."""

    approved: set[str] = field(default_factory=set)
    asked: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def asked_for(self, gate: str) -> list[dict[str, Any]]:
        return [q for q in self.asked if q["gate"] == gate]


@pytest.fixture
def gatekeeper() -> Iterator[Gatekeeper]:
    keeper = Gatekeeper()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            keeper.asked.append(body)
            yes = body["gate"] in keeper.approved
            self.send_response(200 if yes else 403)
            self.end_headers()
            self.wfile.write(b"approved" if yes else b"not yet")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    keeper.url = f"http://127.0.0.1:{server.server_address[1]}/gate"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield keeper
    server.shutdown()
    server.server_close()


def gated(keeper: Gatekeeper, row: list[float]) -> dict[str, Any]:
    confirm = {"url": keeper.url, "interval": "1s"}
    return routed(
        {
            "strategy": "canary",
            "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}]},
            "gates": {
                "confirmRollout": confirm,
                "preRollout": {
                    "command": ["python", "-c", SMOKE],
                    "env": [{"name": "ROW", "value": json.dumps(row)}],
                    "timeout": "60s",
                },
                "confirmPromotion": confirm,
            },
        }
    )


async def test_gates_hold_the_canary_until_yes_and_the_hook_tests_it_before_any_traffic(
    world: World, gatekeeper: Gatekeeper, kube_api: client.ApiClient
) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    row = [float(v) for v in world.classifiers.dataset.rows[0]]
    await rollout.create(gated(gatekeeper, row))
    assert gatekeeper.asked == []  # the first revision passes no gate
    rollout.start_recording()

    await rollout.to_version("2")
    waiting = await rollout.wait(
        lambda s: (s.get("gate") or {}).get("name") == "confirmRollout" and s["gate"].get("checks", 0) >= 2,
        "waiting at confirmRollout, asked twice",
    )
    assert waiting["gate"]["answer"] == "403: not yet"
    assert waiting["weights"]["canary"] == 0
    assert (waiting.get("replicas") or {}).get("canary", {}).get("desired", 0) == 0  # no pods before the yes
    question = gatekeeper.asked_for("confirmRollout")[-1]
    assert question["candidate"]["version"] == "2"
    assert question["stable"]["version"] == "1"
    assert question["modelDeployment"] == {"namespace": world.namespace, "name": stack.name, "uid": question[
        "modelDeployment"]["uid"]}  # fmt: skip

    gatekeeper.approved.add("confirmRollout")
    at_promotion = await rollout.wait(
        lambda s: (s.get("gate") or {}).get("name") == "confirmPromotion", "waiting at confirmPromotion", within=120
    )
    assert at_promotion["gatesPassed"] == ["confirmRollout", "preRollout"]
    assert at_promotion["weights"]["canary"] == 50
    held = await rollout.wait(
        lambda s: (s.get("gate") or {}).get("checks", 0) >= 3, "confirmPromotion asked three times"
    )
    assert held["phase"] == "Progressing"
    assert held["stable"]["version"] == "1"

    gatekeeper.approved.add("confirmPromotion")
    done = await rollout.wait(
        lambda s: s.get("phase") == "Healthy" and (s.get("stable") or {}).get("version") == "2", "version 2 promoted"
    )
    await rollout.stop_recording()
    assert "gate" not in done
    assert done["history"][-1]["outcome"] == "Promoted"

    # No traffic reached the candidate before the hook had passed: the weight moved only after GatePassed preRollout.
    events = await rollout.events()
    reasons = [reason for reason, _ in events]
    passed = [i for i, (reason, message) in enumerate(events) if reason == "GatePassed"]
    assert len(passed) == 3
    assert "preRollout" in events[passed[1]][1]
    assert reasons.index("WeightSet") > passed[1]
    assert reasons.index("Promoted") > passed[2]
    jobs = await client.BatchV1Api(kube_api).list_namespaced_job(world.namespace)
    hooks = [j for j in jobs.items if "modelrollout.dev/hook" in (j.metadata.labels or {})]
    assert len(hooks) == 1
    assert hooks[0].status.succeeded == 1
    first_traffic = rollout.first_time(lambda s: s.status[1] > 0)
    assert first_traffic is not None
    assert all(s.configmap is None or s.configmap[1] == 0 for s in rollout.samples if s.at < first_traffic)


async def test_a_failing_hook_rolls_back_before_the_candidate_gets_any_traffic(
    world: World, gatekeeper: Gatekeeper, kube_api: client.ApiClient
) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.failing(1.0)})
    rollout = world.rollout_of(stack)
    row = [float(v) for v in world.classifiers.dataset.rows[0]]
    gatekeeper.approved.update({"confirmRollout", "confirmPromotion"})
    await rollout.create(gated(gatekeeper, row))
    rollout.start_recording()

    await rollout.to_version("2")
    status = await rollout.wait(lambda s: s.get("phase") == "RolledBack", "rolled back by the hook", within=120)
    await rollout.stop_recording()
    assert status["stable"]["version"] == "1"
    assert status["history"][-1]["outcome"] == "RolledBack"
    message = status["history"][-1]["message"]
    assert "preRollout hook Job failed" in message
    assert "smoke test: infer failed" in message  # the hook's own words, from its pod's log
    assert all(s.status[1] == 0 and (s.configmap is None or s.configmap[1] == 0) for s in rollout.samples)
    assert [reason for reason, _ in await rollout.events()].count("WeightSet") == 0
    assert gatekeeper.asked_for("confirmPromotion") == []
