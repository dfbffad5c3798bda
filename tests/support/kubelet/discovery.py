"""Scrape targets of the pods this kubelet runs, as Prometheus file_sd target groups.

Debian's Prometheus is built without kubernetes_sd, so the kubelet publishes what a cluster's Prometheus would
find through the API server and keep with the usual relabelling: pods annotated prometheus.io/scrape=true, at
<podIP>:<prometheus.io/port>, path prometheus.io/path, labelled `namespace` and `pod`. One file per namespace,
so a test's Prometheus reads its own namespace's pods only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SCRAPE = "prometheus.io/scrape"
PORT = "prometheus.io/port"
PATH = "prometheus.io/path"


def target_groups(pods: Iterable[tuple[Mapping[str, Any], str]]) -> dict[str, list[dict[str, Any]]]:
    """(pod, address) of running pods -> namespace -> file_sd groups (one per pod), in a stable order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for pod, ip in sorted(pods, key=lambda p: (p[0]["metadata"]["namespace"], p[0]["metadata"]["name"])):
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        if annotations.get(SCRAPE) != "true" or not annotations.get(PORT, "").isdigit():
            continue
        labels = {
            "namespace": meta["namespace"],
            "pod": meta["name"],
            "__metrics_path__": annotations.get(PATH) or "/metrics",
        }
        groups.setdefault(meta["namespace"], []).append({"targets": [f"{ip}:{annotations[PORT]}"], "labels": labels})
    return groups
