"""Where a reconcile pass reads what a ModelDeployment owns. Today a labelled LIST per kind (`ListedChildren`);
the watch-fed index of the scale issue implements the same two calls, and nothing that reads children changes."""

from __future__ import annotations

from typing import Any, Protocol

from modelrollout.kube.client import KubeClient
from modelrollout.planning.names import LABEL_NAME


class ChildSource(Protocol):
    async def owned(self, kind: str, namespace: str, name: str, uid: str | None) -> list[dict[str, Any]]:
        """The objects of `kind` that the ModelDeployment `name` (with `uid`) owns: labelled with its name and
        carrying its owner reference (a same-named ModelDeployment created since owns nothing of the old one)."""
        ...

    async def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The pods with these labels (read only when a revision is not available, to say why)."""
        ...

    async def labelled(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The objects of `kind` with these labels, whoever owns them (a CronJob's Jobs are owned by the CronJob)."""
        ...


class ListedChildren:
    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def owned(self, kind: str, namespace: str, name: str, uid: str | None) -> list[dict[str, Any]]:
        found = await self._kube.list_labelled(kind, namespace, labels={LABEL_NAME: name})
        return [obj for obj in found if _owned_by(obj, uid)]

    async def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return await self._kube.list_labelled("Pod", namespace, labels=labels)

    async def labelled(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return await self._kube.list_labelled(kind, namespace, labels=labels)


def _owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])
