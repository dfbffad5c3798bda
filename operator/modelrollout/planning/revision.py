"""Revisions: a short hash of what the pods run. A new revision is what starts a rollout."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modelrollout.api.spec import ModelDeploymentSpec

REVISION_LENGTH = 8


def pod_inputs(spec: ModelDeploymentSpec, *, default_image: str) -> dict[str, Any]:
    """Exactly the parts of the spec that change what runs inside a pod (and nothing that only scales it)."""
    model = spec.model.to_wire()
    model["image"] = spec.model.image or default_image
    batching = spec.online.batching.to_wire() if spec.online and spec.online.batching else None
    return {"model": model, "batching": batching}


def revision_of(spec: ModelDeploymentSpec, *, default_image: str) -> str:
    """Same pod inputs -> same revision, on any machine and Python version (canonical JSON, sorted keys)."""
    canonical = json.dumps(pod_inputs(spec, default_image=default_image), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]
