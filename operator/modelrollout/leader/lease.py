"""The Lease on the API server, read and written for the elector (the only I/O of leader election)."""

from __future__ import annotations

from typing import Protocol

from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.kube.client import KubeClient
from modelrollout.kube.kinds import LEASE
from modelrollout.leader.election import LeaseRecord, lease_spec, record_of


class LeaseConflict(Exception):
    """Someone else created or changed the lease first (HTTP 409): they won this round."""


class LeaseStore(Protocol):
    """One lease: its record and the resourceVersion every conditional write names."""

    async def read(self) -> tuple[LeaseRecord, str] | None:
        """The record and resourceVersion; None when the lease does not exist."""
        ...

    async def create(self, record: LeaseRecord) -> str:
        """Create the lease; its resourceVersion. LeaseConflict when it exists already."""
        ...

    async def update(self, record: LeaseRecord, resource_version: str) -> str:
        """Write the record if the lease is still at `resource_version`; the new one. LeaseConflict otherwise."""
        ...


class KubeLease:
    """A LeaseStore on the API server. Writes are merge patches carrying metadata.resourceVersion, which the API
    server turns into a precondition (409 when the lease changed since it was read): the same optimistic
    concurrency as client-go's Update, with the verbs (get, create, patch) the rest of the operator uses."""

    def __init__(self, kube: KubeClient, *, namespace: str, name: str) -> None:
        self._kube = kube
        self.namespace = namespace
        self.name = name

    async def read(self) -> tuple[LeaseRecord, str] | None:
        found = await self._kube.get(LEASE.name, self.namespace, self.name)
        if found is None:
            return None
        return record_of(found), str(found["metadata"]["resourceVersion"])

    async def create(self, record: LeaseRecord) -> str:
        body = {
            "apiVersion": f"{LEASE.group}/{LEASE.version}",
            "kind": LEASE.name,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": lease_spec(record),
        }
        try:
            created = await self._kube.create(body)
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(f"lease {self.namespace}/{self.name} was created by someone else") from exc
            raise
        return str(created["metadata"]["resourceVersion"])

    async def update(self, record: LeaseRecord, resource_version: str) -> str:
        patch = {"metadata": {"resourceVersion": resource_version}, "spec": lease_spec(record)}
        try:
            updated = await self._kube.merge_patch(LEASE.name, self.namespace, self.name, patch)
        except ApiException as exc:
            if exc.status in (404, 409):  # changed since read, or deleted: either way not ours to write
                raise LeaseConflict(f"lease {self.namespace}/{self.name} changed since it was read") from exc
            raise
        return str(updated["metadata"]["resourceVersion"])
