"""Installs the project's generated CRDs into the cluster under test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

from tests.support.waiting import eventually

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
APPLY = {
    "_content_type": "application/apply-patch+yaml",
    "field_manager": "modelrollout-tests",
    "force": True,
}


async def install_crds(api: client.ApiClient) -> list[str]:
    """Server-side apply every CRD in crds/ and wait until each is Established. Returns their names."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd: dict[str, Any] = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        await ext.patch_custom_resource_definition(name, crd, **APPLY)
        names.append(name)

        async def established(name: str = name) -> bool | None:
            conditions = (await ext.read_custom_resource_definition(name)).status.conditions or []
            return True if any(c.type == "Established" and c.status == "True" for c in conditions) else None

        await eventually(established, within=30, what=f"CRD {name} to be established")
    return names
