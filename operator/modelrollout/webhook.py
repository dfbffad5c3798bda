"""One JSON POST to a `WebhookTarget`: its URL and token resolved from Secrets, the answer classified (accepted,
refused, or worth retrying and after how long). Notifications and confirmation gates both call out through it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from modelrollout.api.base import duration_seconds
from modelrollout.api.webhooks import WebhookTarget

logger = logging.getLogger(__name__)

# A Secret's key, or None when the Secret or the key does not exist.
ReadSecret = Callable[[str, str], Awaitable[str | None]]
# What a refusal or an error shows of the receiver's answer (status, CLI, events): enough to read, never a page.
DETAIL_CHARS = 200


class WebhookConfigError(Exception):
    """The target cannot be called as configured (a Secret or key missing): said with the field to fix."""


@dataclass(frozen=True, slots=True)
class Resolved:
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 5.0

    def where(self) -> str:
        """The URL without its path and query: what logs and status may show of a URL that can be a secret."""
        parsed = httpx.URL(self.url)
        return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")


@dataclass(frozen=True, slots=True)
class Answer:
    """`ok`: a 2xx. `retryable`: no answer (connection refused, timeout), a 5xx or a 429; `retry_after_s` is the
    receiver's Retry-After when it sent one. `detail` is the start of the body or the error."""

    ok: bool
    status: int | None
    detail: str
    retryable: bool
    retry_after_s: float | None = None


async def resolve(target: WebhookTarget, read_secret: ReadSecret, *, at: str) -> Resolved:
    """`at` is the target's path in the spec (e.g. `spec.notifications.webhooks[0]`), named in any error."""
    url = target.url
    if target.url_secret is not None:
        ref = target.url_secret
        url = await read_secret(ref.name, ref.key)
        if not url:
            raise WebhookConfigError(f"{at}.urlSecret: Secret {ref.name!r} has no key {ref.key!r}; create it")
        if not url.startswith(("http://", "https://")):
            raise WebhookConfigError(f"{at}.urlSecret: the value of {ref.name}/{ref.key} is not an http(s) URL")
    headers = {"Content-Type": "application/json"}
    if target.bearer_token_secret is not None:
        ref = target.bearer_token_secret
        token = await read_secret(ref.name, ref.key)
        if not token:
            raise WebhookConfigError(f"{at}.bearerTokenSecret: Secret {ref.name!r} has no key {ref.key!r}; create it")
        headers["Authorization"] = f"Bearer {token}"
    assert url is not None  # the model requires url or urlSecret
    return Resolved(url=url, headers=headers, timeout_s=duration_seconds(target.timeout))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the caller's own backoff applies


async def post_json(
    client: httpx.AsyncClient, target: Resolved, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
) -> Answer:
    """POST `body`; never raises for what the network or the receiver does."""
    try:
        response = await client.post(
            target.url, json=body, headers={**target.headers, **(headers or {})}, timeout=target.timeout_s
        )
    except httpx.TimeoutException:
        return Answer(ok=False, status=None, detail=f"no answer within {target.timeout_s:g}s", retryable=True)
    except httpx.HTTPError as exc:
        return Answer(ok=False, status=None, detail=f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS], retryable=True)
    code = response.status_code
    detail = response.text.strip()[:DETAIL_CHARS]
    return Answer(
        ok=200 <= code < 300,
        status=code,
        detail=detail,
        retryable=code >= 500 or code == 429,
        retry_after_s=_retry_after(response.headers.get("Retry-After")),
    )
