"""Ensembles through the real router to real model servers: three classifiers asked at once and combined (the mean
of their probabilities, over the Open Inference Protocol and /predict), a member down or slower than its timeout
while the quorum holds, and the whole answered within the member timeout."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from testkit.ports import free_port
from testkit.waiting import wait_until

from tests.integration.router.conftest import SLOW_S, Fleet, StartRouter, records, v2_body
from tests.integration.router.faulty_models import SLOW_MARK
from tests.integration.router.test_routing_v2 import INFER, ROLE, VERSION, routing

pytestmark = pytest.mark.integration

ENSEMBLE = "x-modelrollout-ensemble"
MEMBERS = {"a": "1", "b": "2", "c": "3"}


def trio(**ensemble: Any) -> dict[str, Any]:
    members = {"members": list(MEMBERS), "combine": "mean", "quorum": 2} | ensemble
    return routing(MEMBERS, {"trio": 100}, control="trio", ensembles={"trio": members})


def outputs(response: httpx.Response) -> dict[str, list[Any]]:
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def test_three_members_answer_as_one_with_the_mean_of_their_probabilities(
    fleet: Fleet, start_router: StartRouter
) -> None:
    router = start_router(trio(), upstreams=fleet.upstreams("clf"))
    with httpx.Client(timeout=30) as client:
        for i in range(20):
            body = v2_body(fleet.x[i])
            combined = client.post(router.url + INFER, json=body)
            assert combined.status_code == 200, combined.text
            assert (combined.headers[ROLE], combined.headers[VERSION]) == ("trio", "1+2+3")
            assert combined.headers[ENSEMBLE] == "a, b, c"
            direct = [outputs(client.post(fleet.url("clf", v) + INFER, json=body)) for v in MEMBERS.values()]
            mean = np.mean([d["predict_proba"] for d in direct], axis=0)
            got = outputs(combined)
            assert got["predict_proba"] == pytest.approx(mean.tolist())
            assert got["predict"] == [int(np.argmax(mean))]  # classes 0 and 1: the column is the label
            by_record = client.post(router.url + "/predict", json=records(fleet.x[i]))
            assert by_record.status_code == 200, by_record.text
            assert by_record.json()["predictions"] == got["predict"]
            assert by_record.json()["probabilities"][0]["1"] == pytest.approx(mean[1])
        metadata = client.get(router.url + "/v2/models/clf")
        assert (metadata.status_code, metadata.headers[ROLE]) == (200, "a")  # the first member answers the rest
    assert router.sample("modelrouter_ensemble_answers_total", route="clf", ensemble="trio", outcome="complete") == 40


def test_with_a_member_down_or_too_slow_the_quorum_answers_and_says_so(fleet: Fleet, start_router: StartRouter) -> None:
    member_timeout = SLOW_S / 4
    document = trio(memberTimeoutSeconds=member_timeout)
    upstreams = fleet.upstreams("clf", **{"3": f"http://127.0.0.1:{free_port()}"})  # c: nothing listens
    router = start_router(document, upstreams=upstreams)
    with httpx.Client(base_url=router.url, timeout=30) as client:
        down = client.post(INFER, json=v2_body(fleet.x[0]))
        assert down.status_code == 200, down.text
        assert down.headers[ENSEMBLE] == "a, b, c=unreachable"
        assert outputs(down)["predict"] == [fleet.labels["1"][0]]  # a and b serve one model
    failures = {"route": "clf", "ensemble": "trio", "member": "c", "reason": "unreachable"}
    assert router.sample("modelrouter_ensemble_member_failures_total", **failures) == 1
    assert router.sample("modelrouter_ensemble_answers_total", route="clf", ensemble="trio", outcome="quorum") == 1

    # c now the model that takes a second over a marked row: cut at the member timeout.
    slow = start_router(document, upstreams=fleet.upstreams("clf", **{"3": fleet.url("clf", "8")}))
    row = fleet.x[1].copy()
    row[0] = SLOW_MARK
    with httpx.Client(base_url=slow.url, timeout=30) as client:
        late = client.post(INFER, json=v2_body(row))
    assert late.status_code == 200, late.text
    assert late.headers[ENSEMBLE] == "a, b, c=timeout"
    assert late.elapsed.total_seconds() < member_timeout + 0.2  # the slow member's second was not waited for
    assert slow.sample("modelrouter_requests_total", route="clf", version="3", role="c", code="504") == 1


def test_below_the_quorum_the_fallback_answers(fleet: Fleet, start_router: StartRouter) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    document = trio(quorum=3)
    document["fallbacks"] = {"trio": {"to": ["a"]}}
    router = start_router(document, upstreams=fleet.upstreams("clf", **{"3": nowhere}))
    with httpx.Client(base_url=router.url, timeout=30) as client:
        answer = client.post(INFER, json=v2_body(fleet.x[2]))
        invalid = client.post(INFER, json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": ["?"]}]})
    assert (answer.status_code, answer.headers[ROLE]) == (200, "a")
    assert answer.headers["x-modelrollout-fallback"] == "trio=error"
    assert 400 <= invalid.status_code < 500  # bad input is the client's: refused, not a 5xx


def test_members_calling_each_other_in_a_cycle_cost_one_refused_call_not_a_storm(
    fleet: Fleet, start_router: StartRouter
) -> None:
    # Router "clf" asks a, b and router "back", whose only backend is router "clf" again: a serving graph whose
    # members name each other. The request comes back to "clf" once, is refused there (508) and counted; the quorum
    # of a and b answers.
    a = start_router(trio(), upstreams=fleet.upstreams("clf"))
    back = {"schemaVersion": 2, "route": "back", "control": "clf", "split": [{"backend": "clf", "weight": 100}],
            "backends": {"clf": {"url": a.url, "version": "graph"}}, "timeoutSeconds": 5}  # fmt: skip
    b = start_router(back, upstreams={})
    looped = trio()
    looped["backends"]["c"] = {"url": b.url, "version": "back"}
    a.configure(looped)
    with httpx.Client(base_url=a.url, timeout=30) as client:

        def reloaded() -> bool:
            return "c=" in client.post(INFER, json=v2_body(fleet.x[0])).headers.get(ENSEMBLE, "")

        wait_until(reloaded, within=10, interval=0.05, what="router clf asking router back")
        before = a.sample("modelrouter_rejected_total", route="clf", reason="loop")
        answer = client.post(INFER, json=v2_body(fleet.x[1]))
    assert answer.status_code == 200, answer.text
    assert answer.headers[ENSEMBLE] == "a, b, c=error"
    assert a.sample("modelrouter_rejected_total", route="clf", reason="loop") == before + 1
    assert b.sample("modelrouter_requests_total", route="back", version="graph", role="clf", code="508") >= 1
