from __future__ import annotations

import random

import pytest

from modelrollout.api.resource import KIND
from modelrollout.handlers import bearer_token, resync_delays, triggers_pass
from modelrollout.kube.index import Change


@pytest.mark.parametrize(
    ("api_key", "token"),
    [
        ({"BearerToken": "Bearer abc.def"}, "abc.def"),
        ({"authorization": "Bearer xyz"}, "xyz"),
        ({}, None),
        ({"BearerToken": ""}, None),
    ],
)
def test_bearer_token_from_any_client_version(api_key: dict[str, str], token: str | None) -> None:
    assert bearer_token(api_key) == token


def change(type_: str, *, owner: str | None = "iris", status_only: bool = False, name: str = "x") -> Change:
    before = {"metadata": {"name": name, "resourceVersion": "1"}, "spec": {"a": 1}, "status": {"s": 1}}
    after = {"metadata": {"name": name, "resourceVersion": "2"}, "spec": {"a": 1 if status_only else 2},
             "status": {"s": 2}}  # fmt: skip
    return Change(type_, "ns", name, owner, None if type_ == "added" else before,  # type: ignore[arg-type]
                  None if type_ == "deleted" else after)  # fmt: skip


@pytest.mark.parametrize(("kind", "the_change", "initial", "expected"), [
    # A ModelDeployment: any change but its status (ours), the first list included (a resume); not its deletion.
    (KIND, change("added", name="iris"), True, ("ns", "iris")),
    (KIND, change("modified", name="iris"), False, ("ns", "iris")),
    (KIND, change("modified", name="iris", status_only=True), False, None),
    (KIND, change("deleted", name="iris"), False, None),
    # A watched child (Deployment): any change, its status too (pods turning ready).
    ("Deployment", change("modified", status_only=True), False, ("ns", "iris")),
    ("Deployment", change("added"), True, None),  # the first list: the ModelDeployments' resume covers it
    # Another child: deletions and edits, not reports.
    ("ConfigMap", change("deleted"), False, ("ns", "iris")),
    ("ConfigMap", change("modified"), False, ("ns", "iris")),
    ("HorizontalPodAutoscaler", change("modified", status_only=True), False, None),
    ("Pod", change("modified"), False, None),
    ("Service", change("deleted", owner=None), False, None),
])  # fmt: skip
def test_which_changes_start_a_pass(kind: str, the_change: Change, initial: bool, expected: object) -> None:
    assert triggers_pass(kind, the_change, initial) == expected


def test_resync_spreads_a_round_over_its_interval_with_jitter() -> None:
    delays = resync_delays(1000, 300.0, random.Random(3))
    assert len(delays) == 1000
    assert all(0.8 * 0.3 <= d <= 1.2 * 0.3 for d in delays)
    assert 0.95 * 300 <= sum(delays) <= 1.05 * 300  # a round still takes about one interval
    assert resync_delays(0, 300.0, random.Random(3)) == []
