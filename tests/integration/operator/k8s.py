"""Typed helpers over the real API for one operator test's namespace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from testkit.manifests import load_example
from testkit.waiting import eventually

from modelrollout.api import GROUP, PLURAL, VERSION
from modelrollout.planning.names import LABEL_MODE, LABEL_NAME

MERGE = {"_content_type": "application/merge-patch+json"}
CONVERGE_S = 60


class K8s:
    """Typed helpers over the real API for one test namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.policy = client.PolicyV1Api(api)
        self.batch = client.BatchV1Api(api)

    async def create(self, example: str, **spec_model: Any) -> dict[str, Any]:
        body = load_example(example)
        body["spec"]["model"].update(spec_model)
        created: dict[str, Any] = await self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, body
        )
        return created

    async def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        return found

    async def patch_model(self, name: str, **model: Any) -> None:
        await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"spec": {"model": model}}, **MERGE
        )

    async def wait_for(
        self, name: str, check: Callable[[dict[str, Any]], bool], what: str, within: float = CONVERGE_S
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            obj = await self.get(name)
            return obj if check(obj.get("status") or {}) else None

        return await eventually(probe, within=within, what=f"{name}: {what}")

    async def healthy(self, name: str, version: str | None = None) -> dict[str, Any]:
        def check(status: dict[str, Any]) -> bool:
            stable = status.get("stable") or {}
            return status.get("phase") == "Healthy" and (version is None or stable.get("version") == version)

        return await self.wait_for(name, check, f"Healthy on version {version}")

    async def deployments(self, name: str, mode: str = "online") -> list[Any]:
        selector = f"{LABEL_NAME}={name},{LABEL_MODE}={mode}"
        listed = await self.apps.list_namespaced_deployment(self.ns, label_selector=selector)
        return list(listed.items)

    async def cronjobs(self, name: str) -> dict[str, Any]:
        listed = await self.batch.list_namespaced_cron_job(self.ns, label_selector=f"{LABEL_NAME}={name}")
        return {c.metadata.name: c for c in listed.items}

    async def services(self, name: str) -> dict[str, Any]:
        listed = await self.core.list_namespaced_service(self.ns, label_selector=f"{LABEL_NAME}={name}")
        return {s.metadata.name: s for s in listed.items}

    async def children(self, name: str) -> dict[tuple[str, str], tuple[str, str]]:
        """(kind, name) -> (uid, resourceVersion) of everything labelled as this ModelDeployment's."""
        selector = f"{LABEL_NAME}={name}"
        found: dict[tuple[str, str], tuple[str, str]] = {}
        listings: list[tuple[str, Callable[..., Awaitable[Any]]]] = [
            ("Deployment", self.apps.list_namespaced_deployment),
            ("Service", self.core.list_namespaced_service),
            ("HorizontalPodAutoscaler", self.autoscaling.list_namespaced_horizontal_pod_autoscaler),
            ("PodDisruptionBudget", self.policy.list_namespaced_pod_disruption_budget),
        ]
        for kind, lister in listings:
            for item in (await lister(self.ns, label_selector=selector)).items:
                found[(kind, item.metadata.name)] = (item.metadata.uid, item.metadata.resource_version)
        return found

    async def event_reasons(self, name: str) -> list[str]:
        selector = f"involvedObject.kind=ModelDeployment,involvedObject.name={name}"
        events = await self.core.list_namespaced_event(self.ns, field_selector=selector)
        return [e.reason for e in events.items]

    async def wait_for_events(self, name: str, *reasons: str) -> list[str]:
        """Events are posted right after the change they explain; wait for them rather than race them."""

        async def probe() -> list[str] | None:
            seen = await self.event_reasons(name)
            return seen if set(reasons) <= set(seen) else None

        return await eventually(probe, within=10, what=f"events {reasons} on {name}")

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        await self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec}, **MERGE)
