"""deploy/modelrollout.yaml is the chart rendered with its defaults (`make manifests`), never a copy that drifted."""

from __future__ import annotations

import subprocess

import pytest
from testkit.chart import DEPLOY, deployed

from tests.conftest import HACK

pytestmark = [pytest.mark.integration]


def test_deploy_is_what_the_chart_renders() -> None:
    rendered = subprocess.run(
        [str(HACK / "render-manifests.sh"), "stdout"], check=True, capture_output=True, text=True
    ).stdout
    assert DEPLOY.read_text() == rendered, "deploy/modelrollout.yaml is stale: run `make manifests` and commit it"


def test_deploy_holds_the_namespace_first_and_enforces_restricted_pods() -> None:
    first = deployed()[0]
    assert (first["kind"], first["metadata"]["name"]) == ("Namespace", "modelrollout-system")
    assert first["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    kinds = {doc["kind"] for doc in deployed()}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole", "Role", "Service"} <= kinds
