"""Leader election's RBAC for a test's operator process: the Role `kube.kinds.LEADER_GRANTS` describes, in the
namespace its lease lives in, bound to its ServiceAccount (deploy/'s ClusterRoles do not carry it: the lease rule
is namespaced by design, a Role in the operator's namespace)."""

from __future__ import annotations

from kubernetes_asyncio import client

from modelrollout.kube.kinds import LEADER_GRANTS


async def bind_leader_role(api: client.ApiClient, *, namespace: str, account: str) -> None:
    name = f"{account}-leader"
    rules = [
        client.V1PolicyRule(api_groups=[g.kind.group], resources=[g.resource], verbs=list(g.verbs))
        for g in LEADER_GRANTS
    ]
    rbac = client.RbacAuthorizationV1Api(api)
    await rbac.create_namespaced_role(namespace, client.V1Role(metadata=client.V1ObjectMeta(name=name), rules=rules))
    await rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)],
        ),
    )
