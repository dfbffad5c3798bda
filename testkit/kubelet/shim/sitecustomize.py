"""The local kubelet's network shim, imported by every Python process it starts (this directory is first on the
process's PYTHONPATH, and Python imports `sitecustomize` at start-up).

A pod's process behaves as if it had its own network namespace:
- listening on the wildcard address (0.0.0.0 / "") listens on the pod's own address (LOCAL_KUBELET_POD_IP), so
  every pod can use the port its container declares; a gRPC server's too, whose core binds past the socket module;
- a Service name (`name`, `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local`) resolves (in socket.getaddrinfo,
  and in uvloop's loops, which resolve in libuv) to one ready endpoint
  of that Service, chosen at random per lookup (kube-proxy balances per connection), with the Service port
  translated to the endpoint's target port; a Service without ready endpoints fails the lookup, as a connection
  to a ClusterIP with no endpoints is refused. The table is the file LOCAL_KUBELET_SERVICES, re-read when it
  changes (testkit/kubelet/services.py writes it).
And its container's terminationMessagePath (LOCAL_KUBELET_TERMINATION_PATH, /dev/termination-log by default) is
the container's own file (LOCAL_KUBELET_TERMINATION_LOG), as the kubelet's bind mount makes it: opening the one
opens the other.
Nothing here imports more than the standard library: it runs before the program's own imports.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.util
import io
import json
import os
import random
import socket
import sys
from typing import Any

_POD_IP = os.environ.get("LOCAL_KUBELET_POD_IP", "")
_TABLE_PATH = os.environ.get("LOCAL_KUBELET_SERVICES", "")
_NAMESPACE = os.environ.get("LOCAL_KUBELET_NAMESPACE", "default")
_WILDCARDS = ("0.0.0.0", "")
_CLUSTER_DOMAIN = "cluster.local"
_TERMINATION_PATH = os.environ.get("LOCAL_KUBELET_TERMINATION_PATH", "")
_TERMINATION_LOG = os.environ.get("LOCAL_KUBELET_TERMINATION_LOG", "")

_loaded: tuple[float, dict[str, Any]] = (-1.0, {"services": {}})


def service_key(host: str, namespace: str) -> str | None:
    """`<ns>/<name>` for a name cluster DNS would answer for a Service, else None."""
    parts = host.rstrip(".").split(".")
    if parts[-2:] == _CLUSTER_DOMAIN.split("."):
        parts = parts[:-2]
    if len(parts) == 3 and parts[2] == "svc":
        parts = parts[:2]
    if len(parts) == 1 and parts[0]:
        return f"{namespace}/{parts[0]}"
    if len(parts) == 2 and all(parts):
        return f"{parts[1]}/{parts[0]}"
    return None


def lookup(
    table: dict[str, Any], host: str, port: int | str | None, namespace: str, pick: Any = random.choice
) -> tuple[str, int] | None:
    """(address, port) for `host:port` when host names a Service of the table; None when it names none.
    Raises socket.gaierror when the Service exists but has no ready endpoint serving that port."""
    key = service_key(host, namespace)
    service = table.get("services", {}).get(key) if key else None
    if service is None:
        return None
    name = service["ports"].get(str(port)) if port is not None else next(iter(service["ports"].values()), "")
    if name is None:
        raise socket.gaierror(socket.EAI_SERVICE, f"service {key} has no port {port}")
    serving = [e for e in service["endpoints"] if name in e["ports"]]
    if not serving:
        raise socket.gaierror(socket.EAI_AGAIN, f"service {key} has no ready endpoints (port {port})")
    chosen = pick(serving)
    return chosen["ip"], int(chosen["ports"][name])


def _table() -> dict[str, Any]:
    global _loaded  # noqa: PLW0603 - one cache per process, refreshed when the file changes
    try:
        changed = os.stat(_TABLE_PATH).st_mtime
    except OSError:
        return _loaded[1]
    if changed != _loaded[0]:
        try:
            with open(_TABLE_PATH, encoding="utf-8") as f:
                _loaded = (changed, json.load(f))
        except (OSError, ValueError):
            pass
    return _loaded[1]


def pod_address(address: str, pod_ip: str) -> str:
    """A gRPC listening address (`host:port`) with a wildcard host made the pod's address."""
    host, _, port = address.rpartition(":")
    return f"{pod_ip}:{port}" if host in ("0.0.0.0", "[::]", "") else address


class _GrpcServerPatch(importlib.abc.MetaPathFinder):
    """gRPC's core binds its listening sockets itself, past socket.socket.bind: when grpc.aio's server module is
    imported, its add_insecure_port gets the pod's address in place of a wildcard."""

    module = "grpc.aio._server"

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != self.module:
            return None
        sys.meta_path.remove(self)  # once; and find the real module below without finding ourselves
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader: Any = spec.loader
        real_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            real_exec(module)
            real_add = module.Server.add_insecure_port

            def add_insecure_port(self: Any, address: str) -> Any:
                return real_add(self, pod_address(address, _POD_IP))

            module.Server.add_insecure_port = add_insecure_port

        loader.exec_module = exec_module
        return spec


def _install() -> None:
    real_getaddrinfo = socket.getaddrinfo
    real_bind = socket.socket.bind

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:  # family, type, proto, flags
        name = host.decode() if isinstance(host, bytes) else host
        found = lookup(_table(), name, port, _NAMESPACE) if isinstance(name, str) else None
        if found is None:
            return real_getaddrinfo(host, port, *args, **kwargs)
        return real_getaddrinfo(found[0], found[1], *args, **kwargs)

    def bind(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and self.family == socket.AF_INET and address[0] in _WILDCARDS:
            address = (_POD_IP, *address[1:])
        real_bind(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.bind = bind  # type: ignore[method-assign,assignment]
    _install_uvloop()
    sys.meta_path.insert(0, _GrpcServerPatch())
    if _TERMINATION_PATH and _TERMINATION_LOG:
        _install_termination_log()


def _install_termination_log() -> None:
    real_open = io.open

    def open_(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike) and os.fspath(file) == _TERMINATION_PATH:
            file = _TERMINATION_LOG
        return real_open(file, *args, **kwargs)

    builtins.open = open_
    io.open = open_  # pathlib opens files through io.open


def _install_uvloop() -> None:
    """uvloop resolves names in libuv, not through socket.getaddrinfo: its loops (uvloop.new_event_loop and the
    policy build `uvloop.Loop`) become a subclass that resolves Service names before connecting."""
    try:
        import uvloop  # noqa: PLC0415 - only where the program has it
    except ImportError:
        return
    base: Any = uvloop.Loop

    class Loop(base):  # type: ignore[misc]
        async def create_connection(self, protocol_factory: Any, host: Any = None, port: Any = None, **kw: Any) -> Any:
            found = lookup(_table(), host, port, _NAMESPACE) if isinstance(host, str) else None
            if found is not None:
                host, port = found
            return await super().create_connection(protocol_factory, host, port, **kw)

        async def getaddrinfo(self, host: Any, port: Any, **kw: Any) -> Any:
            found = lookup(_table(), host, port, _NAMESPACE) if isinstance(host, str) else None
            if found is not None:
                host, port = found
            return await super().getaddrinfo(host, port, **kw)

    uvloop.Loop = Loop  # type: ignore[misc]


if _POD_IP:
    _install()
