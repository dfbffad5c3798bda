"""The CLI's thin I/O layer: kubeconfig, and the few API calls the commands make (get, list, annotate, watch one
object, list its events). Every API failure leaves here as a CliError carrying a readable message and exit code 3.

It is separate from modelrollout.kube (the operator's client) because a user's CLI needs what an operator does
not: --context, the context's namespace, merge patches guarded by resourceVersion and a watch on one object.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.api.resource import GROUP, KIND, PLURAL, VERSION
from modelrollout.cli.errors import CliError, Conflict
from modelrollout.cli.render import EventInfo

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# A merge patch (not apply): the annotation is a message to the operator, which removes it, so no field manager
# should own it. The manager name still shows who wrote it in metadata.managedFields.
PATCH_OPTIONS: dict[str, Any] = {
    "_content_type": "application/merge-patch+json",
    "field_manager": "kubectl-modelrollout",
}
WATCH_WINDOW_S = 300  # the server ends a watch after this; we then list and watch again


def _reason(exc: ApiException) -> str:
    """The API server's own message from a Status body, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"{exc.status} {exc.reason}".strip()


def _not_found_is_the_object(exc: ApiException, name: str) -> bool:
    """A 404 names the object when the object is missing; an unserved resource (no CRD) gives a bare 404."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return False
    return isinstance(body, dict) and body.get("details", {}).get("name") == name


@contextmanager
def api_errors(what: str, *, namespace: str, name: str | None = None) -> Iterator[None]:
    """Turn what the client raises into a CliError that says what we were doing and what to check."""
    try:
        yield
    except ApiException as exc:
        if exc.status == 404 and name is not None and _not_found_is_the_object(exc, name):
            raise CliError(f'modeldeployment "{name}" not found in namespace "{namespace}"') from None
        if exc.status == 404:
            raise CliError(
                f"{what}: the API server does not serve {PLURAL}.{GROUP}/{VERSION}; is the ModelRollout CRD "
                "installed (kubectl apply -f crds/)?"
            ) from None
        if exc.status == 409:
            raise Conflict(f"{what}: {_reason(exc)}") from None
        if exc.status in (401, 403):
            raise CliError(f"{what}: not allowed: {_reason(exc)}") from None
        raise CliError(f"{what}: {_reason(exc)}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise CliError(f"{what}: cannot reach the API server: {exc}") from None


@dataclass(frozen=True, slots=True)
class Connection:
    api: client.ApiClient
    namespace: str  # the context's namespace, "default" when it sets none
    server: str


def _kubeconfig_source(kubeconfig: str | None) -> str | None:
    """The kubeconfig path(s) to load, or None to use in-cluster credentials (in a pod, without a kubeconfig)."""
    explicit = kubeconfig or os.environ.get("KUBECONFIG")
    default_file = Path("~/.kube/config").expanduser()
    if explicit is None and not default_file.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    return explicit or str(default_file)


def _context_namespace(current: Any) -> str | None:
    """The namespace a kubeconfig context sets (the loader hands out ConfigNodes or plain dicts)."""
    context = getattr(current, "value", current) if current else None
    settings = context.get("context") if isinstance(context, dict) else None
    settings = getattr(settings, "value", settings)
    namespace = settings.get("namespace") if isinstance(settings, dict) else None
    return str(namespace) if namespace else None


def _in_cluster_namespace() -> str:
    return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else ""


async def connect(*, kubeconfig: str | None, context: str | None) -> Connection:
    """Credentials from --kubeconfig, KUBECONFIG or ~/.kube/config (or in-cluster when there is none)."""
    configuration = client.Configuration()
    source = _kubeconfig_source(kubeconfig)
    if source is None:
        config.load_incluster_config(client_configuration=configuration)
        return Connection(
            client.ApiClient(configuration), _in_cluster_namespace() or "default", str(configuration.host)
        )
    try:
        loader = await config.load_kube_config(
            config_file=source, context=context, client_configuration=configuration, persist_config=False
        )
    except (config.ConfigException, OSError, ValueError, KeyError) as exc:
        raise CliError(f"cannot load kubeconfig {source}: {exc}") from None
    namespace = _context_namespace(loader.current_context)
    return Connection(client.ApiClient(configuration), str(namespace or "default"), str(configuration.host))


def _event_time(event: Any) -> Any:
    return event.last_timestamp or event.event_time or event.first_timestamp or event.metadata.creation_timestamp


@dataclass(frozen=True, slots=True)
class NamedEvent:
    name: str
    uid: str | None  # of the involved object
    info: EventInfo


class Api:
    """ModelDeployments in one namespace, and their events."""

    def __init__(self, connection: Connection, namespace: str) -> None:
        self.namespace = namespace
        self.server = connection.server
        self._custom = client.CustomObjectsApi(connection.api)
        self._core = client.CoreV1Api(connection.api)

    async def get(self, name: str) -> dict[str, Any]:
        with api_errors(f"reading modeldeployment {name}", namespace=self.namespace, name=name):
            found: dict[str, Any] = await self._custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        return found

    async def list_all(self, *, all_namespaces: bool) -> list[dict[str, Any]]:
        with api_errors("listing modeldeployments", namespace=self.namespace):
            if all_namespaces:
                listed = await self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            else:
                listed = await self._custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return list(listed.get("items", []))

    async def annotate(self, name: str, annotations: dict[str, str | None], *, resource_version: str) -> dict[str, Any]:
        """Merge `annotations` (None removes one) if the object is still at `resource_version` (else Conflict)."""
        body = {"metadata": {"annotations": annotations, "resourceVersion": resource_version}}
        with api_errors(f"annotating modeldeployment {name}", namespace=self.namespace, name=name):
            patched: dict[str, Any] = await self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, body, **PATCH_OPTIONS
            )
        return patched

    async def events(self, name: str, *, uid: str | None = None) -> list[NamedEvent]:
        """Events about the ModelDeployment `name` (and, when given, that very object: `uid`)."""
        selector = f"involvedObject.kind={KIND},involvedObject.name={name}"
        with api_errors(f"listing events of modeldeployment {name}", namespace=self.namespace):
            listed = await self._core.list_namespaced_event(self.namespace, field_selector=selector)
        found = []
        for e in listed.items:
            involved = e.involved_object.uid if e.involved_object else None
            if uid is not None and involved not in (None, uid):
                continue
            info = EventInfo(
                type=e.type or "", reason=e.reason or "", message=e.message or "", at=_event_time(e), count=e.count or 1
            )
            found.append(NamedEvent(name=e.metadata.name, uid=involved, info=info))
        return found

    async def _get_or_none(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.get(name)
        except CliError as exc:
            if "not found" in exc.message and f'"{name}"' in exc.message:
                return None
            raise

    async def watch(self, name: str) -> AsyncGenerator[dict[str, Any] | None, None]:
        """The object now, then again on every change; None once it is deleted (and the watch ends)."""
        current = await self.get(name)
        yield current
        while True:
            with api_errors(f"watching modeldeployment {name}", namespace=self.namespace, name=name):
                try:
                    async with watch.Watch() as stream:
                        async for event in stream.stream(
                            self._custom.list_namespaced_custom_object,
                            GROUP,
                            VERSION,
                            self.namespace,
                            PLURAL,
                            field_selector=f"metadata.name={name}",
                            resource_version=current["metadata"]["resourceVersion"],
                            timeout_seconds=WATCH_WINDOW_S,
                        ):
                            if event["type"] == "DELETED":
                                yield None
                                return
                            if event["type"] in ("ADDED", "MODIFIED"):
                                current = event["raw_object"]
                                yield current
                except ApiException as exc:
                    if exc.status != 410:  # 410 Gone: our resourceVersion is too old; read again below
                        raise
            # The window ended or the version expired: read the object again and watch on from there.
            latest = await self._get_or_none(name)
            if latest is None:
                yield None
                return
            if latest["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
                yield latest
            current = latest
