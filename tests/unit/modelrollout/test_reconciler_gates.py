"""Asking a confirm gate's webhook (through an in-memory HTTP transport: the real receiver is in tests/e2e/test_gates):
what it is asked, what counts as a yes, and how a failure reads in status."""

from __future__ import annotations

import json
from typing import Any

import httpx
from testkit.manifests import load_example

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import RevisionRef
from modelrollout.reconciler_gates import confirm
from modelrollout.rollout.actions import RequestConfirmation

CANDIDATE = RevisionRef(revision="bbbb2222", version="2")


def md(gate: dict[str, Any]) -> ModelDeployment:
    body = load_example("online-canary-router.yaml")
    body["metadata"] = {"name": "churn", "namespace": "ml", "uid": "u-1"}
    body["spec"]["rollout"]["gates"] = {"confirmPromotion": gate}
    body["status"] = {"phase": "Progressing", "stable": {"revision": "aaaa1111", "version": "1"}, "currentStep": 4}
    return ModelDeployment.model_validate(body)


def client(answer: httpx.Response | Exception, seen: list[httpx.Request]) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


async def secrets(name: str, key: str) -> str | None:
    return {("board", "url"): "https://board.example/hook?token=s3cret", ("board", "token"): "t0k"}.get((name, key))


async def test_the_webhook_is_asked_about_the_candidate_and_a_2xx_is_yes() -> None:
    seen: list[httpx.Request] = []
    gate = {"urlSecret": {"name": "board", "key": "url"}, "bearerTokenSecret": {"name": "board", "key": "token"}}
    async with client(httpx.Response(202, text="ok"), seen) as http:
        answer = await confirm(md(gate), RequestConfirmation(gate="confirmPromotion", revision=CANDIDATE),
                               http=http, read_secret=secrets)  # fmt: skip
    assert answer.ok
    assert answer.detail == "202: ok"
    assert (answer.gate, answer.revision) == ("confirmPromotion", "bbbb2222")
    request = seen[0]
    assert str(request.url) == "https://board.example/hook?token=s3cret"
    assert request.headers["Authorization"] == "Bearer t0k"
    body = json.loads(request.content)
    assert body["gate"] == "confirmPromotion"
    assert body["candidate"] == {"revision": "bbbb2222", "version": "2"}
    assert body["stable"]["version"] == "1"
    assert body["modelDeployment"] == {"namespace": "ml", "name": "churn", "uid": "u-1"}
    assert body["step"] == 4


async def test_a_refusal_or_no_answer_is_not_yet_with_what_was_said() -> None:
    request = RequestConfirmation(gate="confirmPromotion", revision=CANDIDATE)
    gate = {"url": "http://gate.ci/approve", "timeout": "1s"}
    async with client(httpx.Response(403, text="change freeze until Monday"), []) as http:
        refused = await confirm(md(gate), request, http=http, read_secret=secrets)
    async with client(httpx.ReadTimeout("slow"), []) as http:
        silent = await confirm(md(gate), request, http=http, read_secret=secrets)
    async with client(httpx.ConnectError("refused"), []) as http:
        down = await confirm(md(gate), request, http=http, read_secret=secrets)
    assert not refused.ok
    assert refused.detail == "403: change freeze until Monday"
    assert not silent.ok
    assert silent.detail == "no answer within 1s"
    assert not down.ok
    assert "ConnectError" in down.detail


async def test_a_missing_secret_is_not_yet_and_names_the_field_to_fix() -> None:
    seen: list[httpx.Request] = []
    gate = {"urlSecret": {"name": "missing", "key": "url"}}
    async with client(httpx.Response(200), seen) as http:
        answer = await confirm(md(gate), RequestConfirmation(gate="confirmPromotion", revision=CANDIDATE),
                               http=http, read_secret=secrets)  # fmt: skip
    assert not answer.ok
    assert "spec.rollout.gates.confirmPromotion.urlSecret" in answer.detail
    assert "'missing'" in answer.detail
    assert seen == []
