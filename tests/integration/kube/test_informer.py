"""The watch-fed index against the real API server: what a watch delivers reaches the index and the listener
(large objects included), a watch the server ends is resumed without losing a change, a version too old is
answered by listing again, and our own write's echo adds no second change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.waiting import eventually

from modelrollout.kube import informer as informer_module
from modelrollout.kube.client import KubeClient
from modelrollout.kube.index import Change, ObjectIndex
from modelrollout.kube.informer import Gone, Informer
from modelrollout.planning.names import LABEL_NAME
from tests.conftest import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[KubeClient]:
    kube = await KubeClient.connect(field_manager="modelrollout-test", kubeconfig=str(cluster.kubeconfig))
    yield kube
    await kube.close()


class Watched:
    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self.index = ObjectIndex("ConfigMap")
        self.changes: list[tuple[str, str, bool]] = []
        self.informer = Informer(kube, self.index, self._heard, namespace=namespace, selector=LABEL_NAME)

    def _heard(self, _kind: str, change: Change, initial: bool) -> None:
        self.changes.append((change.type, change.name, initial))


def config_map(name: str, data: dict[str, str], *, owner: str | None = "iris") -> client.V1ConfigMap:
    labels = {LABEL_NAME: owner} if owner else {}
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data)


async def running(watched: Watched) -> asyncio.Task[None]:
    task = asyncio.create_task(watched.informer.run())
    await asyncio.wait_for(watched.informer.synced.wait(), 30)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_changes_reach_the_index_and_the_listener_large_objects_included(
    kube: KubeClient, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_config_map(namespace, config_map("before", {"a": "1"}))
    await core.create_namespaced_config_map(namespace, config_map("unlabelled", {"a": "1"}, owner=None))
    watched = Watched(kube, namespace)
    task = await running(watched)
    try:
        assert watched.changes == [("added", "before", True)], "the first list, labelled objects only"
        big = "x" * 300_000  # one watch event far over aiohttp's 64 KiB line limit
        await core.create_namespaced_config_map(namespace, config_map("big", {"blob": big}))
        await core.patch_namespaced_config_map("before", namespace, {"data": {"a": "2"}})
        await core.delete_namespaced_config_map("before", namespace)

        async def seen() -> bool | None:
            return True if ("deleted", "before", False) in watched.changes else None

        await eventually(seen, within=10, what="the deletion")
        assert watched.changes[1:] == [("added", "big", False), ("modified", "before", False),
                                       ("deleted", "before", False)]  # fmt: skip
        stored = watched.index.get(namespace, "big")
        assert stored is not None
        assert stored["data"]["blob"] == big
        assert "managedFields" not in stored["metadata"]
        assert [o["metadata"]["name"] for o in watched.index.labelled_by(namespace, "iris")] == ["big"]
    finally:
        await stop(task)


async def test_a_watch_the_server_ends_is_resumed_without_losing_a_change(
    kube: KubeClient, kube_api: client.ApiClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(informer_module, "WATCH_TIMEOUT_S", (1, 1))  # the server ends every watch after 1 s
    core = client.CoreV1Api(kube_api)
    watched = Watched(kube, namespace)
    task = await running(watched)
    try:
        for i in range(6):
            await core.create_namespaced_config_map(namespace, config_map(f"c{i}", {"i": str(i)}))
            await asyncio.sleep(0.5)  # across several watch ends

        async def all_seen() -> bool | None:
            return True if len(watched.index) == 6 else None

        await eventually(all_seen, within=10, what="every ConfigMap")
        assert [c[:2] for c in watched.changes] == [("added", f"c{i}") for i in range(6)], "each once, in order"
    finally:
        await stop(task)


async def test_a_version_too_old_is_gone(kube: KubeClient, namespace: str) -> None:
    watched = Watched(kube, namespace)
    with pytest.raises(Gone):
        await watched.informer._watch("1")  # compacted long ago: the informer lists again on Gone


async def test_the_echo_of_our_own_write_changes_nothing(kube: KubeClient, namespace: str) -> None:
    watched = Watched(kube, namespace)
    task = await running(watched)
    try:
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "ours", "namespace": namespace, "labels": {LABEL_NAME: "iris"}},
                                "data": {"a": "1"}}  # fmt: skip
        answer = await kube.apply(body)
        watched.index.record_applied(answer, "digest-1")  # what the reconciler does with its apply's answer
        await asyncio.sleep(2)  # the watch event of that same change has arrived by now
        # The answer and the watch event race: when the answer is recorded first, the event changes nothing;
        # when the event wins, it is the one change (a pass that finds nothing to do). Never both.
        assert watched.changes in ([], [("added", "ours", False)]), watched.changes
        entry = watched.index.entry(namespace, "ours")
        assert entry is not None
        assert entry.applied_still("digest-1")
    finally:
        await stop(task)
