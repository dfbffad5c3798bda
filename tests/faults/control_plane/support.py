"""One ModelDeployment of a fault test, driven through the real API as a user would (admin credentials): create,
change the model version, read status and Events, wait on status."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families
from testkit.operator import OperatorProcess
from testkit.waiting import eventually

from modelrollout.api import API_VERSION, GROUP, KIND, PLURAL, VERSION

NAME = "churn"
MERGE_PATCH = "application/merge-patch+json"
T = TypeVar("T")


def model(version: str) -> dict[str, Any]:
    # kwok's pods run nothing: the URI is never read.
    return {"name": NAME, "version": version, "uri": f"s3://models/churn/{version}/model.joblib", "format": "sklearn"}


def percent(message: str) -> int | None:
    """The weight a WeightSet Event announces ("... gets 30% of requests")."""
    found = re.search(r"gets (\d+)%", message)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Event:
    name: str  # `<object>.<hex ns>`: sorted by name is in order of writing
    reason: str
    message: str
    type: str


class Mdep:
    """ModelDeployment `churn` in one test namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    async def create(self, rollout: dict[str, Any], *, version: str = "1") -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": NAME},
            "spec": {"model": model(version), "online": {"replicas": 1}, "rollout": rollout},
        }
        await self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    async def to_version(self, version: str) -> None:
        await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, NAME, {"spec": {"model": model(version)}}, _content_type=MERGE_PATCH
        )

    async def verb(self, name: str, verb_id: str) -> None:
        """A user verb (kubectl modelrollout <name>), as the plugin delivers it: an annotation."""
        body = {"metadata": {"annotations": {"modelrollout.dev/verb": f'{{"name": "{name}", "id": "{verb_id}"}}'}}}
        await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, NAME, body, _content_type=MERGE_PATCH
        )

    async def get(self) -> dict[str, Any]:
        found: dict[str, Any] = await self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, NAME)
        return found

    async def status(self) -> dict[str, Any]:
        return dict((await self.get()).get("status") or {})

    async def wait(self, check: Callable[[dict[str, Any]], bool], what: str, *, within: float) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            status = await self.status()
            return status if check(status) else None

        return await eventually(probe, within=within, interval=0.1, what=what)

    async def healthy_on(self, version: str, *, within: float) -> dict[str, Any]:
        return await self.wait(
            lambda s: (
                s.get("phase") == "Healthy" and (s.get("stable") or {}).get("version") == version and "canary" not in s
            ),
            f"version {version} Healthy",
            within=within,
        )

    async def events(self) -> list[Event]:
        selector = f"involvedObject.kind={KIND},involvedObject.name={NAME}"
        listed = await self.core.list_namespaced_event(self.ns, field_selector=selector)
        found = [Event(e.metadata.name, e.reason, e.message or "", e.type) for e in listed.items]
        return sorted(found, key=lambda e: e.name)

    async def events_until(self, check: Callable[[list[Event]], bool], what: str, within: float = 10) -> list[Event]:
        """The Events once `check` holds: the operator posts them right after the status write they explain, so a
        test that read that status first waits for them rather than racing them."""

        async def probe() -> list[Event] | None:
            found = await self.events()
            return found if check(found) else None

        return await eventually(probe, within=within, interval=0.1, what=what)


async def retrying(call: Callable[[], Awaitable[T]], *, what: str, within: float = 10) -> T:
    """A call the test makes right after the API server came back: its client's pooled connection may be to the
    process that was killed, and a first attempt can fail on that; it is the operator's behaviour that is under
    test, not the test's own client's."""

    async def attempt() -> tuple[T]:
        return (await call(),)  # a tuple: a call that returns None has succeeded too

    return (await eventually(attempt, within=within, interval=0.1, what=what))[0]


def triggers(operator: OperatorProcess, by: str) -> float:
    """How many passes the operator started because a watch delivered a change of kind `by` (its
    modelrollout_pass_triggers_total): which watch delivered what."""
    text = httpx.get(operator.metrics_url or "", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelrollout_pass_triggers_total" and sample.labels.get("by") == by
    )


async def spec_change_starts_rollout(operator: OperatorProcess, mdep: Mdep, version: str, *, within: float) -> float:
    """Change the model version on a quiet ModelDeployment (no child's event under way: a pass one started would
    read the new spec whatever became of the ModelDeployment's own event); the seconds until status names the new
    canary, checking that the ModelDeployment's own watch delivered the change."""
    before = await asyncio.to_thread(triggers, operator, "ModelDeployment")
    changed = time.monotonic()
    await mdep.to_version(version)

    async def started() -> bool | None:
        canary = ((await mdep.status()).get("canary") or {}).get("version")
        return True if canary == version else None

    await eventually(started, within=within, interval=0.1, what=f"version {version}'s rollout to start")
    seconds = time.monotonic() - changed
    assert await asyncio.to_thread(triggers, operator, "ModelDeployment") > before, "its own watch delivered it"
    return seconds
