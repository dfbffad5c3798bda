"""The local kubelet (testkit/kubelet) under the e2e tests: what runs is what the operator's pod templates
say, and a pod's state in the API follows its process (running, ready, exit code, termination message, gone
when deleted), so batch and stream tests can rely on Job pods ending as their processes do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from testkit.kubelet.handle import IMAGES, NODE_SELECTOR, KubeletProcess, process_of
from testkit.waiting import eventually

from tests.e2e.rollouts import World, analysis, routed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IMAGE = "ghcr.io/modelrollout/model-server:0.1.0"


async def pods_of(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    listed = await client.CoreV1Api(api).list_namespaced_pod(namespace)
    found: list[dict[str, Any]] = api.sanitize_for_serialization(listed)["items"]
    return found


async def test_the_processes_run_are_the_ones_the_operators_pod_templates_name(
    world: World, kube_api: client.ApiClient, kubelet: KubeletProcess
) -> None:
    stack = world.launch({"1": world.classifiers.stable})
    rollout = world.rollout_of(stack)
    await rollout.create(
        routed({"strategy": "canary", "canary": {"steps": [{"setWeight": 50}]}, "analysis": analysis(stack)})
    )

    async def all_ready() -> list[dict[str, Any]] | None:
        pods = await pods_of(kube_api, world.namespace)
        ready = [
            p for p in pods if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
        ]
        return pods if len(pods) == 2 and len(ready) == 2 else None  # one model server, one router

    pods = await eventually(all_ready, within=60, what="the model server's and the router's pods ready")
    http = httpx.AsyncClient(timeout=5)
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        (status,) = pod["status"]["containerStatuses"]
        argv, env = process_of(status["containerID"])
        assert argv == IMAGES["model-server"] + container["args"], (pod["metadata"]["name"], argv)
        mounted = tuple(mount["mountPath"] for mount in container.get("volumeMounts") or [])
        for var in container.get("env") or []:
            expected = var["value"]
            if expected.startswith(mounted):  # a path on a volume: the volume's directory on this machine
                assert env[var["name"]].startswith(str(kubelet.config.work_dir)), (var, env[var["name"]])
            else:
                assert env[var["name"]] == expected, var
        # Each pod listens on its own address, on the port its template declares.
        port = container["ports"][0]["containerPort"]
        path = container["readinessProbe"]["httpGet"]["path"]
        assert (await http.get(f"http://{pod['status']['podIP']}:{port}{path}")).status_code == 200
    await http.aclose()

    # The router acts as its ServiceAccount, with exactly what the operator's Role grants it.
    (router,) = [p for p in pods if p["spec"]["serviceAccountName"] == f"{stack.name}-router"]
    _, env = process_of(router["status"]["containerStatuses"][0]["containerID"])
    can = {verb: _can_i(Path(env["KUBECONFIG"]), verb) for verb in ("watch configmaps", "list secrets", "get pods")}
    assert can == {"watch configmaps": True, "list secrets": False, "get pods": False}


def _can_i(kubeconfig: Path, what: str) -> bool:
    answer = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "auth", "can-i", *what.split()],
        capture_output=True,
        text=True,
        check=False,
    )
    return answer.stdout.strip() == "yes"


def job(name: str, code: int, *, seconds: float = 0) -> dict[str, Any]:
    script = f"import time; print('scored 12 files'); time.sleep({seconds}); raise SystemExit({code})"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": NODE_SELECTOR,
                    "containers": [
                        {
                            "name": "main",
                            "image": IMAGE,
                            "command": ["python", "-c", script],
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                        }
                    ],
                }
            },
        },
    }


async def test_job_pods_end_as_their_processes_do_and_deleted_pods_stop(
    kubelet: KubeletProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(kube_api)
    for name, code in (("ok", 0), ("fails", 3)):
        await batch.create_namespaced_job(namespace, job(name, code, seconds=1))
    await batch.create_namespaced_job(namespace, job("long", 0, seconds=600))

    async def ended(name: str) -> dict[str, Any] | None:
        pods = [p for p in await pods_of(kube_api, namespace) if p["metadata"]["labels"].get("job-name") == name]
        return pods[0] if pods and pods[0]["status"].get("phase") in ("Succeeded", "Failed") else None

    ok = await eventually(lambda: ended("ok"), within=60, what="the succeeding Job's pod to end")
    fails = await eventually(lambda: ended("fails"), within=60, what="the failing Job's pod to end")
    assert ok["status"]["phase"] == "Succeeded"
    assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert fails["status"]["phase"] == "Failed"
    terminated = fails["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["message"] == "scored 12 files", "FallbackToLogsOnError: the end of the log"
    # Ran for its second: kwok's pod-complete stage did not end it at once (kwok leaves this node alone).
    assert terminated["startedAt"] < terminated["finishedAt"]

    async def running_pid() -> int | None:
        pods = [p for p in await pods_of(kube_api, namespace) if p["metadata"]["labels"].get("job-name") == "long"]
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return (
            int(statuses[0]["containerID"].removeprefix("local://"))
            if statuses and "running" in statuses[0]["state"]
            else None
        )

    pid = await eventually(running_pid, within=60, what="the long Job's process to run")
    await batch.delete_namespaced_job("long", namespace, propagation_policy="Foreground")

    async def gone() -> bool | None:
        pods = [p for p in await pods_of(kube_api, namespace) if p["metadata"]["labels"].get("job-name") == "long"]
        return True if not pods and not _alive(pid) else None

    await eventually(gone, within=60, what="the deleted pod's process to stop and the pod to go")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_a_crashing_container_is_shown_backing_off_with_its_last_exit(
    kubelet: KubeletProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    container = {"name": "main", "image": IMAGE, "command": ["python", "-c", "raise SystemExit(7)"]}
    pod = {"metadata": {"name": "crasher"}, "spec": {"nodeSelector": NODE_SELECTOR, "containers": [container]}}
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_pod(namespace, pod)

    async def backing_off() -> dict[str, Any] | None:
        found = kube_api.sanitize_for_serialization(await core.read_namespaced_pod("crasher", namespace))
        statuses = found["status"].get("containerStatuses") or []
        waiting = statuses[0]["state"].get("waiting") if statuses else None
        return statuses[0] if waiting and waiting["reason"] == "CrashLoopBackOff" else None

    status = await eventually(backing_off, within=30, what="the container waiting in CrashLoopBackOff")
    assert status["lastState"]["terminated"]["exitCode"] == 7
    assert not status["ready"]
