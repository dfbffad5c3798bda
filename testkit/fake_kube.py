"""An in-memory stand-in for `modelrollout.kube.client.KubeClient`, for unit tests of the reconciler shell: it
keeps objects by (kind, namespace, name), gives them uid, generation and resourceVersion as the API server does,
and writes every call into a journal, so a test can check the order of a pass. Integration tests use the real
API server; this only serves the I/O shell's own unit tests.

Deployments become available when `ready` is on (the Deployment controller's part): their status follows their
spec at once.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.api.resource import API_VERSION, KIND

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass
class FakeKube:
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    journal: list[tuple[str, ...]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    event_keys: set[str] = field(default_factory=set)
    ready: bool = True
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)  # kind -> (HTTP status, message) on apply
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- what tests set up and read -------------------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj` as a user would create it (a ModelDeployment, a pod), with the server's fields."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.update(uid=f"uid-{next(self._ids)}", generation=1, resourceVersion=str(next(self._ids)))
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def edit(self, kind: str, namespace: str, name: str, **spec: Any) -> None:
        """A hand edit of an object's spec (generation moves, as the API server does)."""
        obj = self.objects[(kind, namespace, name)]
        obj["spec"] = {**obj.get("spec", {}), **spec}
        self._bump(obj, spec_changed=True)

    def remove(self, kind: str, namespace: str, name: str) -> None:
        del self.objects[(kind, namespace, name)]

    def names(self, kind: str) -> set[str]:
        return {name for (k, _, name) in self.objects if k == kind}

    def calls(self, *verbs: str) -> list[tuple[str, ...]]:
        return [entry for entry in self.journal if entry[0] in verbs]

    # --- the KubeClient surface the reconciler and the routers use ------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list_labelled(self, kind: str, namespace: str, *, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self.objects.items())
            if k == kind and ns == namespace and labels.items() <= (obj["metadata"].get("labels") or {}).items()
        ]

    async def apply(self, obj: dict[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        if subresource == "status":
            stored = self.objects[key]
            stored["status"] = copy.deepcopy(obj["status"])
            self._bump(stored, spec_changed=False)
            self.journal.append(("status", obj["kind"], meta["name"]))
            return copy.deepcopy(stored)
        if obj["kind"] in self.refuse:
            code, message = self.refuse[obj["kind"]]
            self.journal.append(("refused", obj["kind"], meta["name"]))
            refused = ApiException(status=code, reason="Refused")
            refused.body = json.dumps({"message": message})  # the Status the API server sends with a refusal
            raise refused
        stored = self.objects.get(key)
        if stored is None:
            stored = self.create({k: v for k, v in obj.items() if k != "status"})
            stored = self.objects[key]
        else:
            changed = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
            spec_changed = changed.get("spec") != stored.get("spec")
            stored.update(copy.deepcopy(changed))
            stored["metadata"].update({k: v for k, v in copy.deepcopy(meta).items() if k != "namespace"})
            self._bump(stored, spec_changed=spec_changed)
        if stored["kind"] == "Deployment" and self.ready:
            replicas = stored.get("spec", {}).get("replicas", 1)
            stored["status"] = {
                "observedGeneration": stored["metadata"]["generation"],
                **dict.fromkeys(("replicas", "readyReplicas", "updatedReplicas", "availableReplicas"), replicas),
            }
        self.journal.append(("apply", obj["kind"], meta["name"]))
        return copy.deepcopy(stored)

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}}
        return await self.apply({**body, "status": status}, subresource="status")

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.objects.pop((kind, namespace, name), None)
        self.journal.append(("delete", kind, name))

    async def emit_event(
        self, involved: dict[str, Any], *, type_: str, reason: str, message: str, key: str | None = None
    ) -> None:
        if key is not None:  # a named event is posted at most once, as the API server's 409 makes it
            if key in self.event_keys:
                return
            self.event_keys.add(key)
        self.events.append((type_, reason, message))
        self.journal.append(("event", reason))

    async def remove_annotation(self, kind: str, namespace: str, name: str, key: str, *, if_value: str) -> bool:
        obj = self.objects.get((kind, namespace, name))
        annotations = (obj or {}).get("metadata", {}).get("annotations") or {}
        if annotations.get(key) != if_value:
            return False
        del annotations[key]
        self.journal.append(("unannotate", kind, name, key))
        return True

    async def merge_patch(self, *_: Any, **__: Any) -> dict[str, Any]:
        raise NotImplementedError("the fake serves provider router and service; mesh routers are integration-tested")

    # --- the API server's bookkeeping -----------------------------------------------------------------------

    def _bump(self, obj: dict[str, Any], *, spec_changed: bool) -> None:
        meta = obj["metadata"]
        meta["resourceVersion"] = str(next(self._ids))
        if spec_changed and obj["kind"] != "Service":  # Services have no generation
            meta["generation"] = meta.get("generation", 1) + 1
