"""Our router as the e2e tests use it: a local `modelserver route` process follows the routing document that the
operator's writer (ConfigMapRouter) puts into a ConfigMap of the real API server, splits live load by it, and
its modelrouter_* series reach Prometheus."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from testkit.load import Load
from testkit.models import Classifiers
from testkit.modelservers import configmap_io, router_configmap_name
from testkit.waiting import eventually

from modelrollout.traffic.router import ConfigMapRouter, Versions
from tests.conftest import Cluster
from tests.e2e.conftest import LaunchProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_router_follows_the_configmap_the_operator_writes(
    cluster: Cluster,
    kube_api: client.ApiClient,
    namespace: str,
    classifiers: Classifiers,
    launch_processes: LaunchProcesses,
) -> None:
    servers = {"1": classifiers.stable, "2": classifiers.healthy}
    stack = launch_processes(servers, namespace=namespace, router=cluster.kubeconfig)
    assert stack.router is not None
    write, read = configmap_io(kube_api, namespace=namespace, name=router_configmap_name(stack.name))
    writer = ConfigMapRouter(
        route=stack.name,
        stable_url=f"http://{stack.name}-stable.{namespace}.svc:80",
        canary_url=f"http://{stack.name}-canary.{namespace}.svc:80",
        versions=Versions(stable="1", canary="2"),
        write=write,
        read=read,
    )
    await writer.set_weights(50, 50)
    assert await writer.verify()
    stack.router.start()

    expected = {"1": classifiers.stable.predictions, "2": classifiers.healthy.predictions}
    with Load(stack.router.url + f"/v2/models/{stack.model}/infer", classifiers.dataset, rate=50) as load:
        split = load.wait_for(400)
        route = f'namespace="{namespace}",route="{stack.name}"'
        for version in ("1", "2"):
            stack.prometheus.wait_for_series(f'sum(modelrouter_requests_total{{{route},version="{version}"}})')

        await writer.set_weights(100, 0)

        async def all_on_stable() -> bool | None:
            recent = load.summary().last(50)
            return True if recent.by_version.keys() == {"1"} else None

        await eventually(all_on_stable, within=30, what="the router to send everything to version 1")

    assert split.by_code.keys() == {200}, split.describe()
    assert split.share("2") == pytest.approx(0.5, abs=0.1), split.describe()
    assert split.by_role == {"stable": split.by_version["1"], "canary": split.by_version["2"]}, split.describe()
    assert not split.mismatches(expected), split.describe()
