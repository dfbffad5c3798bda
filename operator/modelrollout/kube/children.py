"""Where a reconcile pass reads the cluster, and tells what it wrote: the ModelDeployment itself and what it owns.

Two implementations of one Protocol (`ClusterView`):
- `WatchedCluster`, what the operator runs: every kind it reads kept current by one label-selected watch per
  kind (`kube.informer`) in an index (`kube.index`); a pass reads memory, not the API server, and its own writes
  go into the index at once (a pass right after reads what it wrote).
- `ListedChildren`: a GET or a labelled LIST per read, nothing kept (the I/O shell's unit tests, a one-off pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from modelrollout.api.resource import KIND
from modelrollout.kube.client import KubeClient
from modelrollout.kube.index import Change, ObjectIndex
from modelrollout.kube.informer import Informer
from modelrollout.planning.graph import graph_member_names
from modelrollout.planning.names import LABEL_NAME

logger = logging.getLogger(__name__)
POD = "Pod"


class ClusterView(Protocol):
    async def model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ModelDeployment as it is now (None when gone)."""
        ...

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

    def applied_still(self, kind: str, namespace: str, name: str, digest: str) -> bool:
        """Our last apply of this object sent `digest` and nobody changed it since (known only to a view that
        saw the apply's answer and every change after it)."""
        ...

    def wrote(self, answer: dict[str, Any], *, digest: str | None = None) -> None:
        """An object as our write left it (the API server's answer); `digest`: what an apply sent."""
        ...

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        """We deleted this object."""
        ...


# Kept for the modes' observers, which read children only.
ChildSource = ClusterView


class ListedChildren:
    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._kube.get(KIND, namespace, name)

    async def owned(self, kind: str, namespace: str, name: str, uid: str | None) -> list[dict[str, Any]]:
        found = await self._kube.list_labelled(kind, namespace, labels={LABEL_NAME: name})
        return [obj for obj in found if owned_by(obj, uid)]

    async def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return await self._kube.list_labelled(POD, namespace, labels=labels)

    async def labelled(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return await self._kube.list_labelled(kind, namespace, labels=labels)

    def applied_still(self, kind: str, namespace: str, name: str, digest: str) -> bool:
        return False

    def wrote(self, answer: dict[str, Any], *, digest: str | None = None) -> None:
        pass

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        pass


# (kind, change, initial) -> None: what the handlers do with a change (reconcile its ModelDeployment).
Listener = Callable[[str, Change, bool], None]


class WatchedCluster:
    """Indexes of the ModelDeployments and of every kind they own (children by the `modelrollout.io/name` label,
    server-side: nothing else is sent or kept), fed by one informer per kind and namespace watched."""

    def __init__(self, kube: KubeClient, kinds: Iterable[str], listener: Listener, *, namespaces: list[str]) -> None:
        self._kube = kube
        self._indexes: dict[str, ObjectIndex] = {KIND: ObjectIndex(KIND)}
        for kind in (*kinds, POD):
            # Of a pod a pass reads its labels and status only; its spec is most of its size.
            self._indexes.setdefault(kind, ObjectIndex(kind, keep_spec=kind != POD))
        scopes: list[str | None] = list(namespaces) or [None]
        self._informers = [
            Informer(kube, index, listener, namespace=scope, selector=None if kind == KIND else LABEL_NAME)
            for kind, index in self._indexes.items()
            for scope in scopes
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(i.run(), name=f"watch-{i.kind}") for i in self._informers]

    async def synced(self) -> None:
        """Returns once every informer has listed its kind once (or found it is not served)."""
        await asyncio.gather(*(informer.synced.wait() for informer in self._informers))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def model_deployment_keys(self) -> list[tuple[str, str]]:
        return list(self._indexes[KIND].keys())

    def graphs_naming(self, namespace: str, name: str) -> list[tuple[str, str]]:
        """The ModelDeployments of `namespace` whose serving graph has ModelDeployment `name` as a member."""
        index = self._indexes[KIND]
        keys = index.keys()
        return [key for key in keys if key[0] == namespace and name in graph_member_names(index.get(*key) or {})]

    def sizes(self) -> dict[str, int]:
        return {kind: len(index) for kind, index in self._indexes.items()}

    # --- ClusterView ----------------------------------------------------------------------------------------

    async def model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._indexes[KIND].get(namespace, name)

    async def owned(self, kind: str, namespace: str, name: str, uid: str | None) -> list[dict[str, Any]]:
        return [obj for obj in self._index(kind).labelled_by(namespace, name) if owned_by(obj, uid)]

    async def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return self._indexes[POD].matching(namespace, labels)

    async def labelled(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return self._index(kind).matching(namespace, labels)

    def applied_still(self, kind: str, namespace: str, name: str, digest: str) -> bool:
        entry = self._index(kind).entry(namespace, name)
        return entry is not None and entry.applied_still(digest)

    def wrote(self, answer: dict[str, Any], *, digest: str | None = None) -> None:
        index = self._indexes.get(answer.get("kind", ""))
        if index is None:
            return
        if digest is None:
            index.upsert(answer)
        else:
            index.record_applied(answer, digest)

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        index = self._indexes.get(kind)
        if index is not None:
            index.delete({"metadata": {"namespace": namespace, "name": name}})

    def _index(self, kind: str) -> ObjectIndex:
        index = self._indexes.get(kind)
        if index is None:
            raise KeyError(f"{kind} is not watched; WatchedCluster was built for {sorted(self._indexes)}")
        return index


def owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])
