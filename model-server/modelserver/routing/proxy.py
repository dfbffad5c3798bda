"""Forwarding one request: call the chosen backend through the pooled upstream client, follow its fallback chain
when it fails, and send mirrored requests to the mirror's target as shadow calls.

Bodies go both ways unchanged (no decompression, no re-encoding); hop-by-hop headers are dropped as RFC 9110
requires, and the client library (upstream.py) sets the backend's Host and the Content-Length.

Errors: a backend that cannot be reached answers 502, one that does not answer within timeoutSeconds 504,
both with a JSON body `{"error": ..., "role": ..., "version": ...}`; 4xx and 5xx answers pass through as they
are.

Ensembles (routing.ensemble) are answered for like a backend: chosen by the split or a route, failing into their
fallback chain, named in one.

Fallbacks: when the chosen backend has a chain and fails a request (FALLBACK_REASONS: a 5xx, no answer, timeoutSeconds
passed, or the chain's latency budget passed), the chain's backends are called in order with the same request until
one does not fail; the client gets that answer (or the last failure), with `x-modelrollout-fallback` listing every
failed attempt as `role=reason`. Every attempt is counted under its own backend (a failing canary's calls stay the
canary's, which its analysis must see) and every step in modelrouter_fallbacks_total. A 4xx is the request's fault:
any backend would refuse it, so it is answered as it is. A backend waited for up to the budget is abandoned
when it passes (its connection closed, as for any late answer); the last backend of a chain gets the whole timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time

from modelrollout_contract.metrics import ERROR, FALLBACK_ERROR, FALLBACK_LATENCY_BUDGET, FALLBACK_TIMEOUT, UNREACHABLE
from modelserver.asgi import HEADER_LENGTH
from modelserver.routing.ensemble import Ensembles
from modelserver.routing.messages import (
    BAD_GATEWAY,
    DROPPED_FROM_ANSWERS,
    FALLBACK_HEADER,
    GATEWAY_TIMEOUT,
    SERVER_ERROR,
    RawHeaders,
    Reply,
    Request,
    error_reply,
)
from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.shadow import compare
from modelserver.routing.snapshot import SHADOW, Backend, EnsembleBackend, Snapshot, Target
from modelserver.routing.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)


class Proxy:
    def __init__(self, *, client: UpstreamClient, metrics: RouterMetrics, max_shadows: int) -> None:
        self._client = client
        self._metrics = metrics
        self._max_shadows = max_shadows
        self._shadows: set[asyncio.Task[None]] = set()
        self._ensembles = Ensembles(self._member_call, metrics)

    async def call(
        self,
        snapshot: Snapshot,
        backend: Backend,
        request: Request,
        *,
        role: str | None = None,
        timeout_s: float | None = None,
    ) -> Reply:
        """One upstream call, counted under `role` (default: the backend's), waited for `timeout_s` (default: the
        document's timeoutSeconds)."""
        metrics = self._metrics.backend(snapshot.route, backend.version, role or backend.role)
        wait_s = snapshot.timeout_s if timeout_s is None else timeout_s
        started = time.perf_counter()
        try:
            response = await self._client.request(
                backend.origin, request.method, request.target, request.headers, request.body, timeout_s=wait_s
            )
        except TimeoutError:
            metrics.observe(GATEWAY_TIMEOUT, time.perf_counter() - started)
            message = f"{backend.role} (version {backend.version}) did not answer within {wait_s:g}s"
            return error_reply(GATEWAY_TIMEOUT, message, backend)
        except UpstreamError as exc:
            metrics.observe(BAD_GATEWAY, time.perf_counter() - started)
            return error_reply(BAD_GATEWAY, f"{backend.role} (version {backend.version}): {exc}", backend)
        metrics.observe(response.status, time.perf_counter() - started)
        headers = [(k, v) for k, v in response.headers if k.lower() not in DROPPED_FROM_ANSWERS]
        if request.method == b"HEAD":  # the length of the body a GET would have had, which HEAD answers report
            headers.extend((k, v) for k, v in response.headers if k.lower() == b"content-length")
        headers.extend(backend.response_headers)
        return Reply(response.status, headers, response.body, backend, answered=True)

    async def _member_call(self, snapshot: Snapshot, member: Backend, request: Request, timeout_s: float) -> Reply:
        return await self.call(snapshot, member, request, timeout_s=timeout_s)

    async def answer(
        self, snapshot: Snapshot, target: Target, request: Request, timeout_s: float | None = None
    ) -> Reply:
        """`target`'s answer: one call to a backend, or an ensemble's members asked and their answers combined."""
        if isinstance(target, EnsembleBackend):
            return await self._ensembles.ask(snapshot, target, request, timeout_s)
        return await self.call(snapshot, target, request, timeout_s=timeout_s)

    async def forward(self, snapshot: Snapshot, backend: Target, request: Request) -> Reply:
        """The client's answer: from `backend`, or, when it fails and has a fallback chain, from the first backend
        of the chain that does not fail (else the last failure)."""
        chain = snapshot.fallbacks.get(backend.role)
        if chain is None:  # the common path: one call
            return await self.answer(snapshot, backend, request)
        budget = chain.budget_s
        attempts = (backend, *chain.then)
        failed: list[bytes] = []
        for i, attempt in enumerate(attempts):
            last = i == len(attempts) - 1
            timeout_s = None if last or budget is None else budget
            reply = await self.answer(snapshot, attempt, request, timeout_s)
            reason = failure(reply, budgeted=timeout_s is not None)
            if reason is None:
                break
            if not last:
                self._metrics.fell_back(snapshot.route, attempt.role, attempts[i + 1].role, reason)
                log.debug("%s failed (%s, %s); trying %s", attempt.role, reason, reply.status, attempts[i + 1].role)
            failed.append(attempt.role.encode() + b"=" + reason.encode())
        if failed and reply.backend is not backend:
            reply.headers.append((FALLBACK_HEADER, b", ".join(failed)))
        return reply

    # --- mirroring ------------------------------------------------------------------------------------------

    @property
    def shadows_in_flight(self) -> int:
        return len(self._shadows)

    def mirror(self, snapshot: Snapshot, target: Backend, request: Request, answered: Reply) -> None:
        """Start a shadow call of `request` to `target` in the background, to compare with the reply the client
        got. Never waits and never raises: over the bound of calls in flight the request is dropped and counted."""
        if len(self._shadows) >= self._max_shadows:
            self._metrics.shadow_dropped.labels(snapshot.route).inc()
            return
        task = asyncio.get_running_loop().create_task(self._shadow(snapshot, target, request, answered))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(self, snapshot: Snapshot, target: Backend, request: Request, stable: Reply) -> None:
        try:
            shadow = await self.call(snapshot, target, request, role=SHADOW)
            if shadow.answered and 200 <= shadow.status < 300:
                comparison = compare(
                    stable.body,
                    _header(stable.headers, HEADER_LENGTH),
                    shadow.body,
                    _header(shadow.headers, HEADER_LENGTH),
                )
                self._metrics.comparison(snapshot.route, comparison.result, comparison.abs_diff)
            else:
                self._metrics.comparison(snapshot.route, ERROR, None)
        except Exception:
            log.exception("shadow call failed unexpectedly")
            self._metrics.comparison(snapshot.route, ERROR, None)

    async def drain(self, timeout_s: float) -> None:
        """Let shadow calls in flight finish (up to `timeout_s`), then cancel the rest."""
        pending = set(self._shadows)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def failure(reply: Reply, *, budgeted: bool) -> str | None:
    """Why `reply` is a failure a fallback answers for (FALLBACK_REASONS), or None when it is an answer to pass on."""
    if reply.answered:
        return FALLBACK_ERROR if reply.status >= SERVER_ERROR else None
    if reply.status == GATEWAY_TIMEOUT:
        return FALLBACK_LATENCY_BUDGET if budgeted else FALLBACK_TIMEOUT
    return UNREACHABLE


def _header(headers: RawHeaders, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
