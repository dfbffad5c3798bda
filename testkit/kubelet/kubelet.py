"""The local kubelet's I/O: its Node and Lease, the watches of its pods and of Services/EndpointSlices, and one
PodWorker task per pod (see __init__.py for what is emulated)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from testkit.kubelet import services
from testkit.kubelet.config import KubeletConfig
from testkit.kubelet.containers import ContainerConfigError, Launch, launch, referenced, volume_files
from testkit.kubelet.pods import PodWorker

log = logging.getLogger("local-kubelet")
SHIM_DIR = Path(__file__).resolve().parent / "shim"
MERGE_PATCH = "application/merge-patch+json"
WATCH_TIMEOUT_S = 60
TOKEN_SECONDS = 3600
NODE_LABEL = "modelrollout.dev/local-kubelet"

OnEvent = Callable[[str, Any], Awaitable[None]]  # ("SYNC", [objects]) after a list; (type, object) per event


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def watch_objects(list_call: Callable[..., Any], on_event: OnEvent, *, what: str, **kwargs: Any) -> None:
    """List (as "SYNC"), then watch from that list's resourceVersion; list again whenever a watch ends or fails."""
    while True:
        try:
            response = await list_call(**kwargs, _preload_content=False)
            listed = json.loads(await response.read())
            await on_event("SYNC", listed.get("items") or [])
            version = listed["metadata"]["resourceVersion"]
            async with watch.Watch() as stream:
                async for event in stream.stream(
                    list_call, resource_version=version, timeout_seconds=WATCH_TIMEOUT_S, **kwargs
                ):
                    if event["type"] == "ERROR":
                        break  # 410 Gone and friends: list again
                    await on_event(event["type"], event["raw_object"])
        except asyncio.CancelledError:
            raise
        except Exception:  # the API server restarting, a dropped connection: list again shortly
            log.exception("watch of %s failed; listing again", what)
            await asyncio.sleep(1)


class LocalKubelet:
    def __init__(self, settings: KubeletConfig, api: client.ApiClient) -> None:
        self.settings = settings
        self.api = api
        self.core = client.CoreV1Api(api)
        self.workers: dict[str, tuple[PodWorker, asyncio.Task[None]]] = {}  # by pod uid
        self._ips: dict[str, str] = {}  # pod uid -> address
        self._services: dict[str, Any] = {}
        self._slices: dict[str, Any] = {}
        self._http = httpx.AsyncClient()
        self._cluster = yaml.safe_load(settings.kubeconfig.read_text())

    # --- node -------------------------------------------------------------------------------------------------

    async def register(self) -> None:
        name = self.settings.node_name
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "local",
                    NODE_LABEL: "true",
                },
            },
        }
        with contextlib.suppress(ApiException):
            await self.core.delete_node(name)  # a leftover of a killed run: its pods are gone with it
        await self.core.create_node(node)
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "1Ti"}
        beat = micro_time().split(".")[0] + "Z"
        conditions = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHas{ok}",
                "lastHeartbeatTime": beat,
                "lastTransitionTime": beat,
            }
            for kind, ok in (
                ("MemoryPressure", "SufficientMemory"),
                ("DiskPressure", "NoDiskPressure"),
                ("PIDPressure", "SufficientPID"),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "local kubelet is posting ready",
                "lastHeartbeatTime": beat,
                "lastTransitionTime": beat,
            }
        )
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": self.settings.node_ip},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.33.0-local",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "local://processes",
                "osImage": "local",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }
        await self.core.patch_node_status(name, {"status": status}, _content_type=MERGE_PATCH)

    async def heartbeat(self) -> None:
        """The node's Lease in kube-node-lease, renewed every quarter of its duration (the kubelet's rhythm)."""
        name, leases = self.settings.node_name, client.CoordinationV1Api(self.api)
        duration = self.settings.lease_duration_s
        while True:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": duration, "renewTime": micro_time()},
            }
            try:
                await leases.patch_namespaced_lease(name, "kube-node-lease", body, _content_type=MERGE_PATCH)
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("lease renewal failed: %s", exc.reason)
                else:
                    await leases.create_namespaced_lease("kube-node-lease", body)
            await asyncio.sleep(duration / 4)

    # --- pods -------------------------------------------------------------------------------------------------

    def _address(self, uid: str) -> str:
        if uid not in self._ips:
            used = set(self._ips.values())
            # The lowest free one: tests scrape the first few addresses (testkit/prometheus.PodAddresses).
            self._ips[uid] = next(a for a in self.settings.pod_addresses(65_000) if a not in used)
        return self._ips[uid]

    async def on_pod(self, kind: str, found: Any) -> None:
        if kind == "SYNC":
            listed = {pod["metadata"]["uid"]: pod for pod in found}
            for uid in list(self.workers):
                if uid not in listed:
                    self._forget(uid)
            for pod in listed.values():
                self._update(pod)
        elif kind == "DELETED":
            self._forget(found["metadata"]["uid"])
        elif kind in ("ADDED", "MODIFIED"):
            self._update(found)

    def _update(self, pod: Mapping[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self.workers:
            self.workers[uid][0].pod = pod
            return
        worker = PodWorker(
            pod,
            ip=self._address(uid),
            config=self.settings,
            prepare=self.prepare,
            write_status=self.write_status,
            delete=self.delete_pod,
            http=self._http,
        )
        task = asyncio.create_task(self._run(worker, uid), name=f"pod {worker.key}")
        self.workers[uid] = (worker, task)
        log.info("pod %s: starting on %s", worker.key, worker.ip)

    async def _run(self, worker: PodWorker, uid: str) -> None:
        try:
            await worker.run()
        except Exception:
            log.exception("pod %s: worker failed", worker.key)
        finally:
            self.workers.pop(uid, None)
            self._ips.pop(uid, None)
            log.info("pod %s: stopped", worker.key)

    def _forget(self, uid: str) -> None:
        if uid in self.workers:
            self.workers[uid][0].forget()

    async def write_status(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            await self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}, _content_type=MERGE_PATCH
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("pod %s/%s: status write failed: %s", meta["namespace"], meta["name"], exc.reason)

    async def delete_pod(self, pod: Mapping[str, Any]) -> None:
        """Its processes are gone: the pod object may go (the kubelet's last word on a deleted pod)."""
        meta = pod["metadata"]
        body = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"]))
        with contextlib.suppress(ApiException):
            await self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=body)

    async def prepare(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> Launch:
        namespace = pod["metadata"]["namespace"]
        worker = self.workers[pod["metadata"]["uid"]][0]
        # The downward API sees the addresses this kubelet gives the pod, written or not yet.
        addresses = {"podIP": worker.ip, "hostIP": self.settings.node_ip}
        pod = {**pod, "status": {**(pod.get("status") or {}), **addresses}}
        sources: dict[tuple[str, str], Mapping[str, str] | None] = {}
        for kind, name in referenced(pod):
            sources[(kind, name)] = await self._read_source(kind, namespace, name)
        token = await self._token(pod)
        kubeconfig = self._pod_kubeconfig(pod, worker.dir, token)
        settings = self.settings
        base_env = {
            "PATH": os.pathsep.join([*(str(p) for p in settings.path), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(worker.dir / "root"),
            "PYTHONPATH": os.pathsep.join(str(p) for p in settings.pythonpath),
            "LOCAL_KUBELET_POD_IP": worker.ip,
            "LOCAL_KUBELET_SERVICES": str(settings.services_file),
            "LOCAL_KUBELET_NAMESPACE": namespace,
            "KUBECONFIG": str(kubeconfig),
            **settings.extra_env,
        }
        read = lambda kind, _ns, name: sources.get((kind, name))  # noqa: E731
        found = launch(pod, container, images=settings.images, pod_dir=worker.dir, read=read, base_env=base_env)
        # The shim goes first whatever PYTHONPATH the container sets (as a runtime's own set-up would).
        found.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SHIM_DIR), found.env.get("PYTHONPATH")) if p)
        for volume in pod["spec"].get("volumes") or []:
            directory = worker.dir / "volumes" / volume["name"]
            for relative, content in volume_files(pod, volume, read, token).items():
                (directory / relative).parent.mkdir(parents=True, exist_ok=True)
                (directory / relative).write_text(content)
        return found

    async def _read_source(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            if kind == "secret":
                secret = await self.core.read_namespaced_secret(name, namespace)
                return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            found = await self.core.read_namespaced_config_map(name, namespace)
            return dict(found.data or {})
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _token(self, pod: Mapping[str, Any]) -> str:
        """A token of the pod's ServiceAccount, bound to the pod (TokenRequest), as the kubelet projects it."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": TOKEN_SECONDS,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        try:
            answer = await self.core.create_namespaced_service_account_token(account, meta["namespace"], request)
        except ApiException as exc:
            raise ContainerConfigError(
                f"no token for ServiceAccount {meta['namespace']}/{account}: {exc.reason}"
            ) from None
        return str(answer.status.token)

    def _pod_kubeconfig(self, pod: Mapping[str, Any], pod_dir: Path, token: str) -> Path:
        """A kubeconfig acting as the pod's ServiceAccount: what in-cluster config gives a real pod."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        cluster = self._cluster["clusters"][0]["cluster"]
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {"name": "pod", "context": {"cluster": "cluster", "user": account, "namespace": meta["namespace"]}}
            ],
            "current-context": "pod",
        }
        path = pod_dir / "kubeconfig.yaml"
        path.write_text(yaml.safe_dump(kubeconfig))
        return path

    # --- services ---------------------------------------------------------------------------------------------

    async def on_service(self, kind: str, found: Any) -> None:
        self._keep(self._services, kind, found)

    async def on_slice(self, kind: str, found: Any) -> None:
        self._keep(self._slices, kind, found)

    def _keep(self, objects: dict[str, Any], kind: str, found: Any) -> None:
        if kind == "SYNC":
            objects.clear()
            objects.update({_key(o): o for o in found})
        elif kind == "DELETED":
            objects.pop(_key(found), None)
        else:
            objects[_key(found)] = found
        services.write(self.settings.services_file, services.table(self._services.values(), self._slices.values()))

    # --- the whole -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        services.write(self.settings.services_file, services.table([], []))
        await local_route(self.settings.pod_cidr)
        await self.register()
        discovery = client.DiscoveryV1Api(self.api)
        tasks = [
            asyncio.create_task(self.heartbeat()),
            asyncio.create_task(
                watch_objects(self.core.list_service_for_all_namespaces, self.on_service, what="services")
            ),
            asyncio.create_task(
                watch_objects(discovery.list_endpoint_slice_for_all_namespaces, self.on_slice, what="endpointslices")
            ),
            asyncio.create_task(
                watch_objects(
                    self.core.list_pod_for_all_namespaces,
                    self.on_pod,
                    what="pods",
                    field_selector=f"spec.nodeName={self.settings.node_name}",
                )
            ),
        ]
        log.info("node %s registered; pods get addresses in %s", self.settings.node_name, self.settings.pod_cidr)
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop every pod's processes (no grace: the test session is over) and take the node away."""
        for worker, _ in list(self.workers.values()):
            worker.forget()
            worker.pod = {**worker.pod, "metadata": {**worker.pod["metadata"], "deletionGracePeriodSeconds": 2}}
        await asyncio.gather(*(task for _, task in list(self.workers.values())), return_exceptions=True)
        with contextlib.suppress(ApiException):
            await self.core.delete_node(self.settings.node_name)
        await self._http.aclose()


async def local_route(cidr: str) -> None:
    """Make every address of `cidr` local to this machine (the "AnyIP" route on lo): each pod can listen on its
    own address, and anything here (Prometheus, a test's client) can reach it. Needs CAP_NET_ADMIN (root)."""
    process = await asyncio.create_subprocess_exec(
        "ip", "route", "replace", "local", cidr, "dev", "lo", stderr=asyncio.subprocess.PIPE
    )
    _, error = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(
            f"`ip route replace local {cidr} dev lo` failed ({error.decode().strip()}): the local kubelet gives "
            "pods their own addresses through that route and needs root (CAP_NET_ADMIN) for it"
        )


def _key(found: Mapping[str, Any]) -> str:
    return f"{found['metadata'].get('namespace', '')}/{found['metadata']['name']}"


async def main(settings: KubeletConfig) -> None:
    api = await config.new_client_from_config(config_file=str(settings.kubeconfig))
    try:
        await LocalKubelet(settings, api).run()
    finally:
        await api.close()
