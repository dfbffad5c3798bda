"""The operator works with nothing but the permissions deploy/ (the chart rendered) grants: a ServiceAccount token,
not admin; its ClusterRoles' rules bound cluster-wide, and leader election's Role in its own namespace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.chart import deployed_rules
from testkit.crds import install_crds
from testkit.manifests import load_example
from testkit.operator import OperatorProcess
from testkit.rbac import bind_leader_role
from testkit.waiting import eventually

from modelrollout.api import GROUP, PLURAL, VERSION
from tests.conftest import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_roles_have_no_wildcards() -> None:
    for rule in deployed_rules():
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule


async def test_operator_reconciles_with_only_its_rbac(
    cluster: Cluster, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    await install_crds(kube_api)
    account = "modelrollout"
    role_name = f"modelrollout-{namespace}"
    rbac_api = client.RbacAuthorizationV1Api(kube_api)
    await client.CoreV1Api(kube_api).create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    await rbac_api.create_cluster_role({"metadata": {"name": role_name}, "rules": deployed_rules()})
    try:
        # Bound as deploy/ binds it: cluster-wide (Kopf reads CRDs and namespaces).
        await rbac_api.create_cluster_role_binding(
            {
                "metadata": {"name": role_name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
            },
        )
        # The lease lives in the namespace the operator runs in (here: the one it watches), and only there.
        await bind_leader_role(kube_api, namespace=namespace, account=account)
        kubeconfig = cluster.service_account_kubeconfig(namespace, account, tmp_path / "sa.kubeconfig")
        assert (
            "Forbidden"
            in cluster.kubectl("--kubeconfig", str(kubeconfig), "get", "secrets", "-n", namespace, check=False).stderr
        ), "the token really is the restricted ServiceAccount"

        process = OperatorProcess(kubeconfig=kubeconfig, namespace=namespace, log_dir=tmp_path)
        process.start()
        try:
            custom = client.CustomObjectsApi(kube_api)
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, load_example("online-canary-router.yaml")
            )

            async def healthy() -> dict[str, Any] | None:
                obj: dict[str, Any] = await custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, "churn"
                )
                return obj if (obj.get("status") or {}).get("phase") == "Healthy" else None

            await eventually(healthy, within=60, what="Healthy under the operator's own RBAC")
            # Drift correction (watch + delete + patch) also works under the role.
            await client.AppsV1Api(kube_api).patch_namespaced_deployment_scale(
                f"churn-{(await healthy() or {})['status']['stable']['revision']}", namespace, {"spec": {"replicas": 9}}
            )
            await eventually(healthy, within=30, what="drift corrected")
        finally:
            process.stop()
        log = process.log()
        assert "leading: operator holds the lease" in log, "it ran as the elected leader"
        # Match the API's refusal, not the digits: log timestamps carry milliseconds such as ",403".
        refusals = re.findall(r".*(?:\(403\)|\b403 Forbidden|[Ff]orbidden|APIForbiddenError).*", log)
        assert not refusals, "\n".join(refusals[:20])
    finally:
        await rbac_api.delete_cluster_role(role_name)
        await rbac_api.delete_cluster_role_binding(role_name)
