"""deploy/rbac.yaml is generated from the operator's table of kinds and the modes: never stale, never wider."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelrollout import rbac
from modelrollout.kube.kinds import DEPLOYMENT, Grant

CHECKED_IN = Path(__file__).resolve().parents[3] / "deploy" / "rbac.yaml"


def test_checked_in_rbac_is_what_the_code_generates() -> None:
    assert CHECKED_IN.read_text() == rbac.render(), "deploy/rbac.yaml is stale: run `make rbac` and commit the result"


def test_rules_name_resources_and_verbs_without_wildcards() -> None:
    role = next(d for d in yaml.safe_load_all(rbac.render()) if d["kind"] == "ClusterRole")
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
    resources = [(r["apiGroups"][0], r["resources"][0]) for r in role["rules"]]
    assert len(resources) == len(set(resources)), "one rule per resource"


def test_grants_of_one_resource_merge_into_one_rule_in_a_fixed_verb_order() -> None:
    merged = rbac.rules([Grant(DEPLOYMENT, ("patch", "get"), "a"), Grant(DEPLOYMENT, ("get", "delete"), "b")])
    assert [(r.resource, sorted(r.verbs, key=rbac.VERB_ORDER.index), r.why) for r in merged] == [
        ("deployments", ["get", "patch", "delete"], ["a", "b"])
    ]


def test_an_unknown_verb_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ValueError, match="escalate"):
        rbac.rules([Grant(DEPLOYMENT, ("escalate",), "no")])
