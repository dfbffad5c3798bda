"""Answering for an ensemble (routing document version 2, `ensembles`): ask every member at once, wait for each up to
the member timeout, and combine the answers of those that gave one (routing.combine).

- An inference request (POST) goes to every member concurrently, each waited for `memberTimeoutSeconds` (default:
  timeoutSeconds; within a fallback chain's latency budget, at most that), so the ensemble answers within the
  slowest member's answer or its timeout, whichever is sooner. A member that fails (a 5xx, no answer, its timeout),
  refuses (4xx), or answers something that is not JSON is left out; with at least `quorum` answers left, their
  combination is the answer (200, JSON), and `x-modelrollout-ensemble` lists the members: a combined member by name,
  a member left out as `name=reason`. With fewer, the ensemble fails: a member's 4xx is passed on (the request is at
  fault: every member would refuse it), else 502 naming each member's failure, which the ensemble's fallback chain
  answers for, if it has one. An answer with binary tensor data cannot be combined: 400, asking for JSON outputs.
- Any other request (model metadata, readiness) is answered by the first member, in order, that does not fail.

Every member's call is counted under its own role, as any call; the ensemble's answer under the ensemble's name, and
its outcome and the members left out in modelrouter_ensemble_*.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson

from modelrollout_contract.metrics import (
    ENSEMBLE_COMPLETE,
    ENSEMBLE_FAILED,
    ENSEMBLE_QUORUM,
    FALLBACK_ERROR,
    FALLBACK_TIMEOUT,
    MEMBER_REJECTED,
    MEMBER_UNREADABLE,
    UNREACHABLE,
)
from modelserver.asgi import HEADER_LENGTH
from modelserver.routing.combine import Answer, BinaryAnswer, Mismatch, combine
from modelserver.routing.messages import (
    BAD_GATEWAY,
    ENSEMBLE_HEADER,
    GATEWAY_TIMEOUT,
    JSON_HEADERS,
    SERVER_ERROR,
    Reply,
    Request,
    error_reply,
)
from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.snapshot import Backend, EnsembleBackend, Snapshot

BAD_REQUEST = 400
OK = 200

# Proxy.call: one upstream call to a backend, waited for `timeout_s`.
Call = Callable[[Snapshot, Backend, Request, float], Awaitable[Reply]]


class Ensembles:
    def __init__(self, call: Call, metrics: RouterMetrics) -> None:
        self._call = call
        self._metrics = metrics

    async def ask(
        self, snapshot: Snapshot, ensemble: EnsembleBackend, request: Request, limit_s: float | None
    ) -> Reply:
        """The ensemble's answer to `request`, its members waited for at most `limit_s` (None: no limit beyond the
        member timeout)."""
        wait_s = ensemble.member_timeout_s or snapshot.timeout_s
        if limit_s is not None:
            wait_s = min(wait_s, limit_s)
        started = time.perf_counter()
        if request.method != b"POST":
            reply = await self._first(snapshot, ensemble, request, wait_s)
        else:
            reply = await self._combined(snapshot, ensemble, request, wait_s)
        metrics = self._metrics.backend(snapshot.route, ensemble.version, ensemble.role)
        metrics.observe(reply.status, time.perf_counter() - started)
        return reply

    async def _first(self, snapshot: Snapshot, ensemble: EnsembleBackend, request: Request, wait_s: float) -> Reply:
        for member in ensemble.members:
            reply = await self._call(snapshot, member, request, wait_s)
            if not reply.failed:
                break
        return reply

    async def _combined(self, snapshot: Snapshot, ensemble: EnsembleBackend, request: Request, wait_s: float) -> Reply:
        replies = await asyncio.gather(*(self._call(snapshot, member, request, wait_s) for member in ensemble.members))
        answers: list[Answer] = []
        missing: dict[str, str] = {}
        refusal: Reply | None = None
        binary = False
        for member, weight, reply in zip(ensemble.members, ensemble.weights, replies, strict=True):
            reason = _left_out(reply)
            if reason is None and any(name.lower() == HEADER_LENGTH for name, _ in reply.headers):
                binary = True
                reason = MEMBER_UNREADABLE
            if reason is None:
                try:
                    answers.append(Answer(member.role, weight, orjson.loads(reply.body)))
                except orjson.JSONDecodeError:
                    reason = MEMBER_UNREADABLE
            if reason is not None:
                missing[member.role] = reason
                if reason == MEMBER_REJECTED and refusal is None:
                    refusal = reply
        names = ", ".join([*(a.member for a in answers), *(f"{m}={r}" for m, r in missing.items())]).encode()
        if binary:
            self._metrics.ensemble(snapshot.route, ensemble.role, ENSEMBLE_FAILED, missing)
            message = (
                f"ensemble {ensemble.role} combines JSON answers: ask for the outputs without binary_data "
                "(the binary tensor extension)"
            )
            return _tagged(error_reply(BAD_REQUEST, message, ensemble, answered=True), names)
        if len(answers) < ensemble.quorum:
            self._metrics.ensemble(snapshot.route, ensemble.role, ENSEMBLE_FAILED, missing)
            if refusal is not None:  # the request's fault: passed on as the member gave it
                return _tagged(refusal, names)
            timed_out = all(reason == FALLBACK_TIMEOUT for reason in missing.values())
            message = (
                f"ensemble {ensemble.role}: {len(answers)} of {len(ensemble.members)} members answered, "
                f"{ensemble.quorum} needed ({', '.join(f'{m}={r}' for m, r in missing.items())})"
            )
            status = GATEWAY_TIMEOUT if timed_out else BAD_GATEWAY
            return _tagged(error_reply(status, message, ensemble, answered=True), names)
        try:
            body = orjson.dumps(combine(answers, ensemble.combine, ensemble.version))
        except (Mismatch, BinaryAnswer) as exc:
            self._metrics.ensemble(snapshot.route, ensemble.role, ENSEMBLE_FAILED, missing)
            status = BAD_REQUEST if isinstance(exc, BinaryAnswer) else BAD_GATEWAY
            return _tagged(error_reply(status, f"ensemble {ensemble.role}: {exc}", ensemble, answered=True), names)
        outcome = ENSEMBLE_QUORUM if missing else ENSEMBLE_COMPLETE
        self._metrics.ensemble(snapshot.route, ensemble.role, outcome, missing)
        headers = [*JSON_HEADERS, *ensemble.response_headers, (ENSEMBLE_HEADER, names)]
        return Reply(OK, headers, body, ensemble, answered=True)


def _left_out(reply: Reply) -> str | None:
    """Why a member's reply is not combined (None: it is an answer)."""
    if not reply.answered:
        return FALLBACK_TIMEOUT if reply.status == GATEWAY_TIMEOUT else UNREACHABLE
    if reply.status >= SERVER_ERROR:
        return FALLBACK_ERROR
    if reply.status >= BAD_REQUEST:
        return MEMBER_REJECTED
    return None


def _tagged(reply: Reply, names: bytes) -> Reply:
    reply.headers.append((ENSEMBLE_HEADER, names))
    return reply
