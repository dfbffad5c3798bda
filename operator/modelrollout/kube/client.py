"""The operator's access to the Kubernetes API server (async, server-side apply). (The kubectl plugin has its own
small client, `cli/kube.py`.)

A small generic REST layer over kubernetes_asyncio's ApiClient: the operator writes a handful of kinds, and one
table of them (`kube.kinds`, from which the RBAC manifest is generated too) keeps every call explicit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.api.resource import API_VERSION, KIND
from modelrollout.kube.kinds import BY_NAME
from modelrollout.kube.throttle import TokenBucket, retry_after_s
from modelrollout.telemetry import API_REQUESTS, API_RETRIES

logger = logging.getLogger(__name__)

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# Called before every request; returns only when this process may still call the API server. Leader election's
# fence (`leader.elector.LeaderElector.check`): the leader stops as soon as its lease may have lapsed, even when
# the loop that renews it was held up (a paused process, a blocked event loop) and has not noticed yet.
Guard = Callable[[], None]
# Answers that mean "not now" rather than "no": the API server shed the request (API Priority and Fairness) or is
# briefly unable; retried after its Retry-After (429 always, a 5xx only when it sent one), as client-go does.
SHED = 429
HTTP_CONFLICT = 409
# A watch the API server ends after this many seconds (a random share more, so a fleet of watches does not end
# together); the client gives up on one silent for that long plus a margin: a connection that died without a
# word (an API server restarted behind a proxy, kopf #585) is noticed instead of waited on forever.
WATCH_MARGIN_S = 30.0
# Any other request that has not been answered in this long is abandoned (and raised): a connection that stops
# answering without closing would otherwise hold its ModelDeployment's pass, and its lock, for ever.
REQUEST_TIMEOUT_S = 60.0


def _path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    where = BY_NAME[kind]
    if namespace is None:  # every namespace (a cluster-wide list or watch)
        return f"{where.prefix}/{where.plural}"
    path = f"{where.prefix}/namespaces/{namespace}/{where.plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class KubeClient:
    """Async access to the API server with one field manager for everything the operator owns."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        field_manager: str,
        instance: str | None = None,
        guard: Guard | None = None,
        limiter: TokenBucket | None = None,
        max_retries: int = 5,
        max_retry_wait_s: float = 30.0,
    ) -> None:
        self._api = api
        self._field_manager = field_manager
        self._instance = instance  # who writes: the Events' reportingInstance (the leader's identity)
        self._guard = guard
        self._limiter = limiter
        self._max_retries = max_retries
        self._max_retry_wait_s = max_retry_wait_s

    @classmethod
    async def connect(
        cls,
        *,
        field_manager: str,
        kubeconfig: str | None = None,
        instance: str | None = None,
        guard: Guard | None = None,
        limiter: TokenBucket | None = None,
        max_retries: int = 5,
    ) -> KubeClient:
        """In-cluster credentials when running in a pod, otherwise the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return cls(
            client.ApiClient(configuration), field_manager=field_manager, instance=instance, guard=guard,
            limiter=limiter, max_retries=max_retries,
        )  # fmt: skip

    @property
    def configuration(self) -> client.Configuration:
        return self._api.configuration

    async def close(self) -> None:
        await self._api.close()

    async def _call(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """One request; `verb` (get, list, apply, patch, create, delete) labels it in the operator's metrics.
        A shed request is retried after the server's Retry-After (at most `max_retries` times), then raised."""
        attempt = 0
        while True:
            try:
                answer: dict[str, Any] = await self._request(
                    verb, method, path, query=query, body=body, content_type=content_type
                )
                return answer
            except ApiException as exc:
                headers: dict[str, str] = dict(exc.headers or {})
                retry_after = headers.get("Retry-After")
                shed = exc.status == SHED or ((exc.status or 0) >= 500 and retry_after is not None)
                attempt += 1
                if not shed or attempt > self._max_retries:
                    raise
                wait = retry_after_s(retry_after, attempt, ceiling_s=self._max_retry_wait_s)
                API_RETRIES.labels(verb, str(exc.status)).inc()
                logger.warning("the API server shed %s %s (HTTP %s %s); retry %d of %d in %.1fs", method, path,
                               exc.status, exc.reason or "", attempt, self._max_retries, wait)  # fmt: skip
                await asyncio.sleep(wait)

    async def _request(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        stream: bool = False,
        timeout_s: float | aiohttp.ClientTimeout | None = None,
    ) -> Any:
        if self._guard is not None:
            self._guard()
        if self._limiter is not None:
            await self._limiter.acquire()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            answer = await self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=False,
                _preload_content=not stream,
                _request_timeout=timeout_s if timeout_s is not None else REQUEST_TIMEOUT_S,
            )
            # A stream is the open response itself (its status already checked); otherwise (data, code, headers).
            result, code = (answer, answer.status) if stream else answer[:2]
        except ApiException as exc:
            API_REQUESTS.labels(verb, str(exc.status or 0)).inc()
            raise
        except Exception:
            API_REQUESTS.labels(verb, "0").inc()  # no answer: connection refused, reset, timed out
            raise
        API_REQUESTS.labels(verb, str(code)).inc()
        return result

    async def list_all(
        self, kind: str, namespace: str | None, *, selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of `kind` (in `namespace`, or all when None) matching the label `selector`, with the
        list's resourceVersion (where a watch starts). Items carry their kind and apiVersion, as watch events do."""
        query = [("labelSelector", selector)] if selector else []
        listed = await self._call("list", "GET", _path(kind, namespace), query=query)
        where = BY_NAME[kind]
        api_version = f"{where.group}/{where.version}" if where.group else where.version
        items: list[dict[str, Any]] = listed.get("items") or []
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        return items, str(listed.get("metadata", {}).get("resourceVersion", ""))

    async def watch(
        self, kind: str, namespace: str | None, *, resource_version: str, selector: str | None, timeout_s: int
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The events of one watch from `resource_version`: (type, object) with type ADDED, MODIFIED, DELETED,
        BOOKMARK or ERROR (its object a Status; 410 Gone means the version is too old: list again). Ends when
        the API server ends the watch (after `timeout_s`); raises when the connection fails or stays silent
        past `timeout_s` plus a margin."""
        query = [("watch", "1"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(timeout_s))]  # fmt: skip
        if selector:
            query.append(("labelSelector", selector))
        response = await self._request(
            "watch", "GET", _path(kind, namespace), query=query, stream=True,
            timeout_s=aiohttp.ClientTimeout(sock_connect=10.0, sock_read=timeout_s + WATCH_MARGIN_S),
        )  # fmt: skip
        try:
            # One JSON event per line, of any length (aiohttp's line reader refuses lines over 64 KiB, and a
            # ModelDeployment's status with its analysis history can be longer).
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield str(event.get("type", "")), event.get("object") or {}
        finally:
            response.release()

    async def apply(self, obj: dict[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        """Server-side apply: we own exactly the fields we send; conflicts are forced (we are the controller)."""
        meta = obj["metadata"]
        return await self._call(
            "apply",
            "PATCH",
            _path(obj["kind"], meta["namespace"], meta["name"], subresource),
            query=[("fieldManager", self._field_manager), ("force", "true")],
            body=obj,
            content_type=APPLY_CONTENT_TYPE,
        )

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST: for objects made once and never changed after (a Job's pod template is immutable); 409 when it
        exists."""
        meta = obj["metadata"]
        return await self._call(
            "create", "POST", _path(obj["kind"], meta["namespace"]), body=obj, content_type="application/json"
        )

    async def merge_patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], *, strict: bool = False
    ) -> dict[str, Any]:
        """A JSON merge patch of an object someone else owns, for lists that server-side apply cannot share (an
        atomic list is owned whole: the fields we change are recorded as ours as an Update, so an owner's later
        server-side apply of them conflicts unless forced; kubectl edit and client-side apply do not). A
        `metadata.resourceVersion` in the patch makes it conditional (409 when the object changed since);
        `strict` refuses fields the schema does not know instead of dropping them."""
        query = [("fieldManager", self._field_manager)] + ([("fieldValidation", "Strict")] if strict else [])
        return await self._call(
            "patch",
            "PATCH",
            _path(kind, namespace, name),
            query=query,
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("get", "GET", _path(kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list_labelled(self, kind: str, namespace: str, *, labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        listed = await self._call("list", "GET", _path(kind, namespace), query=[("labelSelector", selector)])
        items: list[dict[str, Any]] = listed.get("items", [])
        return items

    async def list_in(self, kind: str, namespaces: list[str]) -> list[dict[str, Any]]:
        """Every object of `kind` in the given namespaces, or in all namespaces when the list is empty."""
        found: list[dict[str, Any]] = []
        scopes: list[str | None] = list(namespaces) or [None]
        for scope in scopes:
            found += (await self.list_all(kind, scope))[0]
        return found

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self._call("delete", "DELETE", _path(kind, namespace, name), body={"propagationPolicy": "Background"})
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def remove_annotation(self, kind: str, namespace: str, name: str, key: str, *, if_value: str) -> bool:
        """Remove annotation `key` only while it still has `if_value` (a JSON patch `test`), so a value written
        after we read it is never lost. False when it changed or is gone."""
        pointer = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        patch = [{"op": "test", "path": pointer, "value": if_value}, {"op": "remove", "path": pointer}]
        try:
            await self._call(
                "patch", "PATCH", _path(kind, namespace, name), body=patch, content_type="application/json-patch+json"
            )
        except ApiException as exc:
            if exc.status in (404, 409, 422):
                return False
            raise
        return True

    async def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Apply status through the subresource; fields we stop sending (e.g. a finished canary) are removed."""
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}}
        return await self.apply({**body, "status": status}, subresource="status")

    async def emit_event(
        self,
        involved: dict[str, Any],
        *,
        type_: str,
        reason: str,
        message: str,
        component: str = "modelrollout",
        key: str | None = None,
    ) -> None:
        """A core/v1 Event on the ModelDeployment, so `kubectl describe mdep` tells the story of every decision.
        Named `<object>.<key>` when a key is given, and then posted at most once (a second post of that name,
        e.g. by a pass done again after a crash, is a no-op); else `<object>.<hex nanoseconds>`, as kubelet and
        controllers name theirs."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{key or f'{time.time_ns():x}'}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", API_VERSION),
                "kind": involved.get("kind", KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": self._instance or component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._call("create", "POST", _path("Event", meta["namespace"]), body=event)
        except ApiException as exc:
            if key is None or exc.status != HTTP_CONFLICT:
                raise
