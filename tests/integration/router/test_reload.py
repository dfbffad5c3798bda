"""Hot reload from the file: new routing applies at once, no request is dropped, a bad document changes nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from testkit.waiting import wait_until

from tests.integration.router.conftest import SLOW_S, Fleet, StartRouter, document, v2_body
from tests.integration.router.faulty_models import SLOW_MARK

pytestmark = pytest.mark.integration

INFER = "/v2/models/clf/infer"


def test_changes_apply_under_load_without_dropping_a_request(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(canary="3", weights=(100, 0)), upstreams=fleet.upstreams("clf"))
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def load(worker: int) -> None:
        with httpx.Client(base_url=router.url, timeout=30) as client:
            i = worker
            while not stop.is_set():
                try:
                    response = client.post(INFER, json=v2_body(fleet.x[i % len(fleet.x)]))
                    outcome = f"{response.status_code}:{response.headers.get('x-modelrollout-version')}"
                except httpx.TransportError as exc:
                    outcome = f"transport error {type(exc).__name__}"
                with lock:
                    outcomes[outcome] += 1
                i += 4

    workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    try:
        for weights in [(0, 100), (50, 50), (100, 0), (0, 100), (90, 10), (0, 100)] * 2:
            router.configure(document(canary="3", weights=weights))
            router.wait_weights(*weights)
            time.sleep(0.1)
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    assert set(outcomes) <= {"200:1", "200:3"}, outcomes
    assert sum(outcomes.values()) > 200
    # The first document and 11 changes; the 12th write repeats the routing before it. Its weights were already
    # serving, so wait_weights cannot tell it was read: wait for the count it makes (a cold clean-clone run asserted
    # before the router's next read of the file and saw 0).
    wait_until(
        lambda: router.sample("modelrouter_config_reloads_total", route="clf", result="unchanged") >= 1,
        within=10,
        what=router.log,
    )
    assert router.sample("modelrouter_config_reloads_total", route="clf", result="applied") == 12
    assert router.sample("modelrouter_config_reloads_total", route="clf", result="unchanged") == 1
    # The last document (all canary) is the one serving.
    assert router.client.post(INFER, json=v2_body(fleet.x[0])).headers["x-modelrollout-version"] == "3"


def test_an_unusable_document_keeps_the_last_good_one(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(weights=(0, 100)), upstreams=fleet.upstreams("clf"))
    bad_documents = [
        "{ not json",
        document(weights=(0, 100)) | {"schemaVersion": 2},
        document(weights=(60, 60)),
        document() | {"backends": {"stable": "gopher://x"}},
    ]
    for count, bad in enumerate(bad_documents, start=1):
        router.configure(bad)
        wait_until(
            lambda seen=count: router.sample("modelrouter_config_reloads_total", route="clf", result="invalid") >= seen,
            within=10,
            what=router.log,
        )
        assert router.client.get("/readyz").status_code == 200
        response = router.client.post(INFER, json=v2_body(fleet.x[0]))
        assert response.headers["x-modelrollout-version"] == "2"
    assert router.sample("modelrouter_config_stale", route="clf") == 1
    assert "refused routing document" in router.log()
    router.configure(document(weights=(100, 0)))
    router.wait_weights(100, 0)
    assert router.sample("modelrouter_config_stale", route="clf") == 0


def test_a_request_in_flight_finishes_on_the_routing_it_started_with(fleet: Fleet, start_router: StartRouter) -> None:
    slow_row = fleet.x[0].copy()
    slow_row[0] = SLOW_MARK
    router = start_router(document(canary="8", weights=(0, 100), timeout=SLOW_S * 5), upstreams=fleet.upstreams("clf"))
    outcome: dict[str, httpx.Response] = {}

    def call() -> None:
        with httpx.Client(base_url=router.url, timeout=30) as client:
            outcome["response"] = client.post(INFER, json=v2_body(slow_row))

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(SLOW_S / 4)
    # Everything to stable, and a timeout the slow canary would miss: neither applies to the call in flight.
    router.configure(document(canary="8", weights=(100, 0), timeout=SLOW_S / 4))
    router.wait_weights(100, 0)
    assert router.client.post(INFER, json=v2_body(slow_row)).headers["x-modelrollout-version"] == "1"
    caller.join(30)
    response = outcome["response"]
    assert response.status_code == 200
    assert response.headers["x-modelrollout-version"] == "8"
