"""examples/router: every routing document and the API keys file, as users would write them, loaded by the real
router in front of real model servers and doing what each says (the version 2 routing document's features one by
one; their rules in depth: test_routing_v2, test_ensembles, test_api_keys)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from testkit.ports import free_port

from tests.integration.router.conftest import Fleet, StartRouter, v2_body
from tests.integration.router.test_routing_v2 import FALLBACK, INFER, ROLE, VERSION

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "router"
DEMO_KEY = "demo-key-of-the-web-frontend"  # the key whose SHA-256 examples/router/api-keys.json holds


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return loaded


def test_every_router_example_is_exercised_here() -> None:
    exercised = {"abn-three-variants.json", "fallback-chain.json", "ensemble.json", "conditional-routes.json",
                 "api-keys.json"}  # fmt: skip
    assert {p.name for p in EXAMPLES.glob("*.json")} == exercised


def test_the_abn_example_splits_users_three_ways(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(example("abn-three-variants.json"), upstreams=fleet.upstreams("clf"))
    with httpx.Client(base_url=router.url, timeout=30) as client:
        users = [uuid.UUID(int=i * 7919 + 1, version=4).hex for i in range(300)]
        roles = [client.post(INFER, json=v2_body(fleet.x[0]), headers={"x-user-id": u}).headers[ROLE] for u in users]
        again = [client.post(INFER, json=v2_body(fleet.x[0]), headers={"x-user-id": u}).headers[ROLE] for u in users]
    assert set(roles) == {"control", "b", "c"}
    assert roles == again  # sticky


def test_the_fallback_example_answers_when_the_primary_is_gone(fleet: Fleet, start_router: StartRouter) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    router = start_router(example("fallback-chain.json"), upstreams=fleet.upstreams("clf", **{"3": gone}))
    answer = router.client.post(INFER, json=v2_body(fleet.x[0]))
    assert (answer.status_code, answer.headers[ROLE], answer.headers[VERSION]) == (200, "previous", "2")
    assert answer.headers[FALLBACK] == "primary=unreachable"


def test_the_ensemble_example_combines_three_models(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(example("ensemble.json"), upstreams=fleet.upstreams("clf"))
    answer = router.client.post(INFER, json=v2_body(fleet.x[0]))
    assert (answer.status_code, answer.headers[ROLE]) == (200, "trio")
    assert answer.headers["x-modelrollout-ensemble"] == "logreg, forest, boosted"


def test_the_conditional_routes_example_routes_by_header_and_feature(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(example("conditional-routes.json"), upstreams=fleet.upstreams("clf"))
    row = fleet.x[0].copy()
    with httpx.Client(base_url=router.url, timeout=30) as client:
        assert client.post(INFER, json=v2_body(row)).headers[ROLE] == "global"
        assert client.post(INFER, json=v2_body(row), headers={"x-beta-tester": "yes"}).headers[ROLE] == "beta"
        row[0] = 7
        assert client.post(INFER, json=v2_body(row)).headers[ROLE] == "europe"


def test_the_api_keys_example_admits_its_key(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(
        example("abn-three-variants.json"),
        upstreams=fleet.upstreams("clf"),
        args=("--api-keys-file", str(EXAMPLES / "api-keys.json")),
    )
    body = v2_body(fleet.x[0])
    assert router.client.post(INFER, json=body).status_code == 401
    assert router.client.post(INFER, json=body, headers={"authorization": f"Bearer {DEMO_KEY}"}).status_code == 200
