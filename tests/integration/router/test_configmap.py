"""`--configmap`: the router follows the operator's ConfigMap through the real API server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.conftest import Cluster
from tests.integration.router.conftest import Fleet, Router, document, launch_router, upstream_args, v2_body

pytestmark = pytest.mark.integration

NAME = "clf-router"
INFER = "/v2/models/clf/infer"


def configmap(namespace: str, routing: dict[str, Any]) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=NAME, namespace=namespace), data={"router.json": json.dumps(routing)}
    )


async def until(probe: Callable[[], bool], *, within: float, what: str, router: Router) -> float:
    """Seconds until `probe()` holds (the router is another process: blocking calls to it are fine here)."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s: {what}\n{router.log()}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def weights_applied(router: Router, stable: int, canary: int) -> None:
    """Within 2 s of the write, /readyz reports the new weights."""

    def loaded() -> bool:
        response = router.client.get("/readyz")
        return response.status_code == 200 and response.json()["weights"] == {"stable": stable, "canary": canary}

    await until(loaded, within=2.0, what=f"weights {stable}/{canary}", router=router)


async def test_the_router_follows_the_configmap(
    cluster: Cluster, kube_api: client.ApiClient, namespace: str, fleet: Fleet, tmp_path: Path
) -> None:
    core = client.CoreV1Api(kube_api)
    args = ["--configmap", f"{namespace}/{NAME}", "--kubeconfig", str(cluster.kubeconfig)]
    # Watches that expire every second: changes must still arrive across the re-lists that follow.
    env = {"MODELSERVER_ROUTER_WATCH_TIMEOUT_S": "1", "MODELSERVER_ROUTER_LOG_LEVEL": "debug"}
    router = launch_router(tmp_path, [*args, *upstream_args(fleet.upstreams("clf"))], env=env)
    try:
        router.wait("/healthz")
        assert router.client.get("/readyz").status_code == 503  # no ConfigMap yet
        await core.create_namespaced_config_map(namespace, configmap(namespace, document(weights=(100, 0))))
        router.wait("/readyz", timeout=10)
        assert router.client.post(INFER, json=v2_body(fleet.x[0])).headers["x-modelrollout-version"] == "1"

        for weights in [(0, 100), (50, 50), (100, 0), (0, 100)]:
            await asyncio.sleep(0.7)  # at a different point of the watch's one-second life each time
            await core.replace_namespaced_config_map(NAME, namespace, configmap(namespace, document(weights=weights)))
            await weights_applied(router, *weights)
        # Each expired watch was followed by a list, which saw the document again, unchanged.
        assert router.sample("modelrouter_config_reloads_total", route="clf", result="unchanged") >= 2
        answered = {
            router.client.post(INFER, json=v2_body(fleet.x[i])).headers["x-modelrollout-version"] for i in range(10)
        }
        assert answered == {"2"}

        # An unusable document, then no ConfigMap at all: the last good routing keeps serving.
        await core.replace_namespaced_config_map(
            NAME, namespace, configmap(namespace, document(weights=(0, 100)) | {"schemaVersion": 99})
        )
        await core.delete_namespaced_config_map(NAME, namespace)
        await until(
            lambda: router.sample("modelrouter_config_reloads_total", route="clf", result="missing") >= 1,
            within=10,
            what="the deletion seen",
            router=router,
        )
        assert router.sample("modelrouter_config_reloads_total", route="clf", result="invalid") == 1
        assert router.client.get("/readyz").status_code == 200
        assert router.client.post(INFER, json=v2_body(fleet.x[0])).headers["x-modelrollout-version"] == "2"

        # Created again: followed again.
        await core.create_namespaced_config_map(namespace, configmap(namespace, document(weights=(100, 0))))
        await weights_applied(router, 100, 0)
    finally:
        router.stop()
