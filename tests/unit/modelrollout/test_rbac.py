"""The operator's RBAC rules come from its table of kinds and the modes: never wider than what it does, and each
rule in the scope the chart binds it in (tests/unit/modelrollout/chart checks the chart's copies are fresh)."""

from __future__ import annotations

import pytest

from modelrollout import rbac
from modelrollout.kube.kinds import DEPLOYMENT, Grant


def test_rules_name_resources_and_verbs_without_wildcards() -> None:
    for scope, rules in rbac.scoped_rules().items():
        for rule in rules:
            assert "*" not in (rule.group, rule.resource, *rule.verbs), (scope, rule)
        resources = [(r.group, r.resource) for r in rules]
        assert len(resources) == len(set(resources)), f"one rule per resource in {scope}"


def test_each_scope_holds_only_its_kinds() -> None:
    scoped = rbac.scoped_rules()
    assert {(r.group, r.resource) for r in scoped["cluster"]} == rbac.CLUSTER_SCOPED
    assert {(r.group, r.resource, frozenset(r.verbs)) for r in scoped["secrets"]} == {
        ("", "secrets", frozenset({"get"}))
    }, "Secrets: read one by name, never listed or watched"
    assert [(r.group, r.resource) for r in scoped["leader"]] == [("coordination.k8s.io", "leases")]
    namespaced = {(r.group, r.resource) for r in scoped["namespaced"]}
    assert ("apps", "deployments") in namespaced
    assert ("modelrollout.dev", "modeldeployments/status") in namespaced
    assert not namespaced & (rbac.CLUSTER_SCOPED | {("", "secrets"), ("coordination.k8s.io", "leases")})


def test_every_rule_says_why_it_exists() -> None:
    rendered = rbac.render_rules(rbac.scoped_rules()["namespaced"])
    assert rendered.count("- apiGroups:") == len(rbac.scoped_rules()["namespaced"])
    assert all(rule.why for rules in rbac.scoped_rules().values() for rule in rules)


def test_grants_of_one_resource_merge_into_one_rule_in_a_fixed_verb_order() -> None:
    merged = rbac.rules([Grant(DEPLOYMENT, ("patch", "get"), "a"), Grant(DEPLOYMENT, ("get", "delete"), "b")])
    assert [(r.resource, sorted(r.verbs, key=rbac.VERB_ORDER.index), r.why) for r in merged] == [
        ("deployments", ["get", "patch", "delete"], ["a", "b"])
    ]


def test_an_unknown_verb_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ValueError, match="escalate"):
        rbac.rules([Grant(DEPLOYMENT, ("escalate",), "no")])
