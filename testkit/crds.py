"""Installs CustomResourceDefinitions into the cluster under test, waiting until they are really served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

from testkit.waiting import eventually

CRD_DIR = Path(__file__).resolve().parents[1] / "crds"
APPLY = {"_content_type": "application/apply-patch+yaml", "field_manager": "modelrollout-tests", "force": True}


async def apply_crd(api: client.ApiClient, crd: dict[str, Any]) -> str:
    """Server-side apply one CRD; return once it is Established and its storage answers a list."""
    ext = client.ApiextensionsV1Api(api)
    name: str = crd["metadata"]["name"]
    await ext.patch_custom_resource_definition(name, crd, **APPLY)

    async def established() -> bool | None:
        conditions = (await ext.read_custom_resource_definition(name)).status.conditions or []
        return True if any(c.type == "Established" and c.status == "True" for c in conditions) else None

    await eventually(established, within=30, what=f"CRD {name} to be established")

    # A just-established CRD still answers 429 "storage is (re)initializing" for a moment.
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    version = next(v["name"] for v in crd["spec"]["versions"] if v.get("served"))
    custom = client.CustomObjectsApi(api)

    async def served() -> bool:
        await custom.list_cluster_custom_object(group, version, plural, limit=1)
        return True

    await eventually(served, within=30, what=f"{plural}.{group} to be served")
    return name


async def install_crds(api: client.ApiClient) -> list[str]:
    """Every CRD the project ships in crds/."""
    return [await apply_crd(api, yaml.safe_load(p.read_text())) for p in sorted(CRD_DIR.glob("*.yaml"))]
