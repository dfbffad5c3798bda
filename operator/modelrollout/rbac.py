"""The operator's RBAC rules, generated from what it does (`kube.kinds.CORE_GRANTS` and every mode's kinds and
grants), so the chart's Roles cannot drift from the code: `make chart` writes them into charts/modelrollout/files/rbac/
(and `make manifests` renders deploy/ from the chart); a unit test fails when they are stale. No wildcards: each
rule names its resources and verbs."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from modelrollout.kube.kinds import CORE_GRANTS, CRD, LEADER_GRANTS, NAMESPACE, SECRET, Grant
from modelrollout.modes import mode_grants

CLUSTER_SCOPED = {(kind.group, kind.plural) for kind in (CRD, NAMESPACE)}
VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete")
WIDTH = 116


@dataclass
class Rule:
    group: str
    resource: str
    verbs: set[str] = field(default_factory=set)
    why: list[str] = field(default_factory=list)


def rules(grants: list[Grant] | None = None) -> list[Rule]:
    """One rule per (group, resource): the union of the verbs every grant of it asks for, in a fixed order."""
    merged: dict[tuple[str, str], Rule] = {}
    for grant in grants if grants is not None else [*CORE_GRANTS, *mode_grants()]:
        key = (grant.kind.group, grant.resource)
        rule = merged.setdefault(key, Rule(*key))
        rule.verbs |= set(grant.verbs)
        if grant.why not in rule.why:
            rule.why.append(grant.why)
    unknown = {v for rule in merged.values() for v in rule.verbs} - set(VERB_ORDER)
    if unknown:
        raise ValueError(f"unknown verbs {sorted(unknown)}: add them to VERB_ORDER")
    return list(merged.values())


def _flow(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def scoped_rules(grants: list[Grant] | None = None) -> dict[str, list[Rule]]:
    """The rules by how the chart binds them:

    - cluster: reads of cluster-scoped kinds (Kopf's view of CRDs and namespaces), always a ClusterRole;
    - namespaced: what the operator does in a watched namespace, a ClusterRole bound cluster-wide, or by a
      RoleBinding in each of `watchNamespaces`;
    - secrets: reading Secrets, never granted cluster-wide for every Secret: bound in the watched namespaces, or
      cluster-wide for the Secrets the chart's `rbac.secretNames` names (resourceNames), or not at all;
    - leader: the leader-election Lease (`LEADER_GRANTS`), a Role in the operator's own namespace.
    """
    scoped: dict[str, list[Rule]] = {"cluster": [], "namespaced": [], "secrets": []}
    for rule in rules(grants):
        if (rule.group, rule.resource) in CLUSTER_SCOPED:
            scoped["cluster"].append(rule)
        elif (rule.group, rule.resource) == (SECRET.group, SECRET.plural):
            scoped["secrets"].append(rule)
        else:
            scoped["namespaced"].append(rule)
    scoped["leader"] = rules(list(LEADER_GRANTS))
    return scoped


def render_rules(rules: list[Rule]) -> str:
    """A YAML list of PolicyRules, each under the reasons it exists (comments)."""
    lines: list[str] = []
    for rule in rules:
        for why in rule.why:
            lines += textwrap.wrap(why, WIDTH, initial_indent="# ", subsequent_indent="# ")
        group = rule.group or '""'
        lines += [
            f"- apiGroups: [{group}]",
            f"  resources: [{rule.resource}]",
            f"  verbs: {_flow([v for v in VERB_ORDER if v in rule.verbs])}",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for scope, scoped in scoped_rules().items():
        print(f"# {scope}")
        print(render_rules(scoped), end="")
