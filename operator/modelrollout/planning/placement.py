"""`spec.pod` on a pod template (pure): where the pods run (node selector, tolerations, affinity, priority), the
Secrets their images are pulled with, extra labels and annotations, and, for the model's own pods, the spread
constraints and the ServiceAccount. The operator's labels and annotations stay (the API refuses a user key that
would replace them)."""

from __future__ import annotations

import copy
from typing import Any

from modelrollout.api.placement import PodSettings


def place(template: dict[str, Any], settings: PodSettings | None, *, model_pods: bool) -> dict[str, Any]:
    """`template` (metadata + spec of a pod) with `settings` applied. `model_pods`: the model's own pods (the
    router keeps its own ServiceAccount, and the model's spread constraints select the model's pods)."""
    if settings is None:
        return template
    placed = copy.deepcopy(template)
    meta, spec = placed["metadata"], placed["spec"]
    meta["labels"] = {**(settings.labels or {}), **meta.get("labels", {})}
    meta["annotations"] = {**(settings.annotations or {}), **meta.get("annotations", {})}
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [t.to_wire() for t in settings.tolerations]
    if settings.affinity:
        spec["affinity"] = copy.deepcopy(settings.affinity)
    if settings.priority_class_name:
        spec["priorityClassName"] = settings.priority_class_name
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    if model_pods:
        if settings.topology_spread_constraints:
            spec["topologySpreadConstraints"] = copy.deepcopy(settings.topology_spread_constraints)
        if settings.service_account_name:
            spec["serviceAccountName"] = settings.service_account_name
    return placed
