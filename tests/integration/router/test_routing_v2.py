"""Routing document version 2 through the real router to real model servers: an A/B/n test of three variants by
users, fallback chains answering for a primary that fails, is unreachable or is slower than its budget, and routes by
a feature's value in the request."""

from __future__ import annotations

import os
import random
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from testkit.ports import free_port

from tests.integration.modelserver.conftest import Server, launch
from tests.integration.router.conftest import (
    HERE,
    SLOW_S,
    Fleet,
    StartRouter,
    post_concurrently,
    records,
    v2_body,
)
from tests.integration.router.faulty_models import SLOW_MARK

pytestmark = pytest.mark.integration

INFER = "/v2/models/clf/infer"
USER = "x-user-id"
FAIL_SHARE = 0.3
ROLE, VERSION, FALLBACK = "x-modelrollout-role", "x-modelrollout-version", "x-modelrollout-fallback"


def routing(backends: dict[str, str], split: dict[str, int], **fields: Any) -> dict[str, Any]:
    """A version 2 document: `backends` maps a name to its model version (Service URLs as the operator would write
    them; --upstream makes each version local)."""
    return {
        "schemaVersion": 2,
        "route": "clf",
        "control": next(iter(split)),
        "backends": {name: {"url": f"http://clf-{name}.test.svc:80", "version": v} for name, v in backends.items()},
        "split": [{"backend": name, "weight": weight} for name, weight in split.items()],
        "timeoutSeconds": 5,
    } | fields


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """clf version 9: faulty_models.Flaky, failing 30% of its calls (500)."""
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "MODELSERVER_WARMUP": "false",
        "FAIL_SHARE": str(FAIL_SHARE),
    }
    directory: Path = tmp_path_factory.mktemp("flaky")
    server = launch(directory, "--format", "custom", "--model-class", "faulty_models:Flaky", "--model-name", "clf",
                    "--model-version", "9", "--log-level", "warning", env=env)  # fmt: skip
    yield server
    server.stop()


def post_all(url: str, fleet: Fleet, headers: list[dict[str, str]]) -> list[httpx.Response]:
    """Every request (a row of the data set each, with these headers) from 8 client threads, in order."""
    bodies = [v2_body(fleet.x[i % len(fleet.x)]) for i in range(len(headers))]
    return post_concurrently(url, INFER, bodies, headers)


def test_a_primary_failing_30_percent_behind_a_fallback_gives_no_client_errors(
    fleet: Fleet, flaky: Server, start_router: StartRouter
) -> None:
    document = routing({"primary": "9", "backup": "1"}, {"primary": 100, "backup": 0},
                       fallbacks={"primary": {"to": ["backup"]}})  # fmt: skip
    router = start_router(document, upstreams=fleet.upstreams("clf", **{"9": flaky.url}))
    n = 600
    answers = post_all(router.url, fleet, [{} for _ in range(n)])
    assert Counter(r.status_code for r in answers) == {200: n}  # not one client error
    by_backup = [r for r in answers if r.headers[ROLE] == "backup"]
    assert all(r.headers[VERSION] == "1" and r.headers[FALLBACK] == "primary=error" for r in by_backup)
    assert all(FALLBACK not in r.headers for r in answers if r.headers[ROLE] == "primary")
    failed = router.sample("modelrouter_requests_total", route="clf", version="9", role="primary", code="500")
    assert failed == len(by_backup)  # every failure of the primary, and only those, answered by the backup
    assert abs(failed / n - FAIL_SHARE) <= 0.06, failed  # 30% +- 3.2 sigma of a binomial on 600
    counted = router.sample(
        "modelrouter_fallbacks_total", route="clf", to="backup", reason="error", **{"from": "primary"}
    )
    assert counted == failed
    backup_row = next(i for i, r in enumerate(answers) if r.headers[ROLE] == "backup")
    assert answers[backup_row].json()["outputs"][0]["data"] == [fleet.labels["1"][backup_row % len(fleet.x)]]


def test_an_unreachable_primary_and_one_past_its_budget_are_answered_by_the_next(
    fleet: Fleet, start_router: StartRouter
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    budget = SLOW_S / 5
    document = routing({"slow": "8", "gone": "7", "stable": "1"}, {"slow": 100, "gone": 0, "stable": 0},
                       fallbacks={"slow": {"to": ["gone", "stable"], "latencyBudgetSeconds": budget}},
                       timeoutSeconds=SLOW_S * 3)  # fmt: skip
    router = start_router(document, upstreams=fleet.upstreams("clf", **{"7": nowhere}))
    slow_row = fleet.x[0].copy()
    slow_row[0] = SLOW_MARK
    with httpx.Client(base_url=router.url, timeout=30) as client:
        response = client.post(INFER, json=v2_body(slow_row))
    assert response.status_code == 200
    assert (response.headers[ROLE], response.headers[VERSION]) == ("stable", "1")
    assert response.headers[FALLBACK] == "slow=latency_budget, gone=unreachable"
    assert response.elapsed.total_seconds() < SLOW_S  # the slow model's second was not waited for
    for failed, to, reason in [("slow", "gone", "latency_budget"), ("gone", "stable", "unreachable")]:
        labels = {"route": "clf", "to": to, "reason": reason, "from": failed}
        assert router.sample("modelrouter_fallbacks_total", **labels) == 1
    assert router.sample("modelrouter_requests_total", route="clf", version="8", role="slow", code="504") == 1


def test_three_variants_get_their_share_of_users_and_every_user_sticks(fleet: Fleet, start_router: StartRouter) -> None:
    weights = {"control": 50, "b": 30, "c": 20}
    document = routing({"control": "1", "b": "2", "c": "3"}, weights, stickyBy={"header": USER})
    router = start_router(document, upstreams=fleet.upstreams("clf"))
    # User ids as a product has them (random UUIDs): CRC-32 spreads those evenly, while sequential strings such as
    # "user-00001".. are structured input to a linear code and their buckets are measurably uneven.
    rng = random.Random(2026)
    users = [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(6_000)]
    answers = post_all(router.url, fleet, [{USER: user} for _ in range(2) for user in users])
    assert all(r.status_code == 200 for r in answers)
    first, second = answers[: len(users)], answers[len(users) :]
    assert [r.headers[ROLE] for r in first] == [r.headers[ROLE] for r in second]  # every user sticks
    shares = Counter(r.headers[ROLE] for r in first)
    for name, weight in weights.items():
        assert abs(100 * shares[name] / len(users) - weight) <= 2, shares
    # Exactly the rule, computed here: the bucket's cumulative range in the split's order.
    bounds = [("control", 5_000), ("b", 8_000), ("c", 10_000)]
    for user, answer in zip(users, first, strict=True):
        bucket = zlib.crc32(user.encode()) % 10_000
        assert answer.headers[ROLE] == next(name for name, bound in bounds if bucket < bound)
    ready = router.client.get("/readyz").json()
    assert ready["weights"] == weights
    assert router.sample("modelrouter_weight", route="clf", role="c") == 20
    keyless = router.client.post(INFER, json=v2_body(fleet.x[0]))
    assert keyless.headers[ROLE] == "control"  # no key: the control group


def test_a_route_by_a_features_value_sends_those_requests_to_another_model(
    fleet: Fleet, start_router: StartRouter
) -> None:
    marked = 7.0  # a value no row of the data set has in column 0
    routes = [{"feature": "f0", "index": 0, "equals": marked, "to": "regional"},  # Open Inference Protocol: a column
              {"feature": "f0", "equals": marked, "to": "regional"}]  # /predict: a record's key  # fmt: skip
    document = routing({"global": "1", "regional": "3"}, {"global": 100, "regional": 0}, routes=routes)
    router = start_router(document, upstreams=fleet.upstreams("clf"))
    with httpx.Client(base_url=router.url, timeout=30) as client:
        for i in range(20):
            row = fleet.x[i].copy()
            plain = client.post(INFER, json=v2_body(row))
            assert (plain.status_code, plain.headers[ROLE]) == (200, "global")
            row[0] = marked
            routed = client.post(INFER, json=v2_body(row))
            assert (routed.status_code, routed.headers[ROLE], routed.headers[VERSION]) == (200, "regional", "3")
            by_record = client.post("/predict", json=records(row))
            assert (by_record.status_code, by_record.headers[ROLE]) == (200, "regional")
        # Two rows, one of them marked: the request is not split between models, and the route needs every row.
        two = {"inputs": [{"name": "input-0", "shape": [2, len(row)], "datatype": "FP64",
                           "data": [row.tolist(), fleet.x[0].tolist()]}]}  # fmt: skip
        assert client.post(INFER, json=two).headers[ROLE] == "global"
