"""The Service table the network shim resolves names with: what kube-proxy and cluster DNS do together, without
a virtual IP. Built (pure) from Services and EndpointSlices; the kubelet writes it to a file on every change.

Shape (JSON): {"services": {"<ns>/<name>": {"ports": {"<service port>": "<port name>"},
                                           "endpoints": [{"ip": "...", "ports": {"<port name>": <port>}}]}}}
Only ready endpoints are listed (a Service sends nothing to an unready pod); a port without a name is "".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _ready(endpoint: Mapping[str, Any]) -> bool:
    # EndpointSlice semantics: an unset `ready` means ready.
    return (endpoint.get("conditions") or {}).get("ready") is not False


def table(services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The shim's table from Service and EndpointSlice objects (API dicts, camelCase)."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for piece in slices:
        meta = piece["metadata"]
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner is None:
            continue
        ports = {p.get("name") or "": p["port"] for p in piece.get("ports") or [] if "port" in p}
        found = by_service.setdefault(f"{meta['namespace']}/{owner}", [])
        for endpoint in piece.get("endpoints") or []:
            if _ready(endpoint):
                found.extend({"ip": ip, "ports": ports} for ip in endpoint.get("addresses") or [])
    result: dict[str, Any] = {}
    for service in services:
        meta, spec = service["metadata"], service.get("spec") or {}
        key = f"{meta['namespace']}/{meta['name']}"
        ports = {str(p["port"]): p.get("name") or "" for p in spec.get("ports") or []}
        result[key] = {"ports": ports, "endpoints": sorted(by_service.get(key, []), key=lambda e: e["ip"])}
    return {"services": result}


def write(path: Path, content: Any) -> None:
    """Atomically: readers see the old table or the new one, never half of one."""
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(content, sort_keys=True))
    partial.replace(path)
