"""Optional API-key authentication and per-key rate limits in front of every proxied request (`--api-keys-file`).
Off unless that file is given: the brief's gateway authenticates and rate-limits, and a router without a mesh or
gateway in front of it is that gateway.

The file (JSON, typically a mounted Secret; re-read when it changes, the last valid one kept when it becomes
invalid) names each key, holds either the key or its SHA-256 (hex; `printf %s KEY | sha256sum`), and optionally
its limit:

    {"keys": [{"name": "team-a", "sha256": "5e88...", "requestsPerSecond": 50, "burst": 100},
              {"name": "batch", "key": "s3cr3t"}]}

A request carries its key as `Authorization: Bearer KEY` or `X-Api-Key: KEY`. Without one, or with one the file
does not hold: 401 (with `WWW-Authenticate: Bearer`). Over its key's limit: 429 with `Retry-After` (seconds until a
token is back). Both headers are removed before the request is forwarded: backends never see the keys. The router's
own endpoints (/healthz, /readyz, /metrics) need no key: probes and Prometheus reach them. Limits are token buckets
per router process (routing.limits): with N replicas a key may send N times its rate, so set it per replica.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from modelserver.routing.limits import TokenBucket

log = logging.getLogger(__name__)

AUTHORIZATION = b"authorization"
API_KEY = b"x-api-key"
KEY_HEADERS = frozenset({AUTHORIZATION, API_KEY})
_BEARER = re.compile(rb"bearer[ \t]+", re.IGNORECASE)
APPLIED, UNCHANGED, INVALID = "applied", "unchanged", "invalid"


class KeysFileError(ValueError):
    """An API keys file that cannot be used, with the reason."""


class ApiKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$", description="Who holds it: a metric label.")
    key: SecretStr | None = Field(default=None, min_length=16, description="The key itself (at least 16 characters).")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="Or its SHA-256, hex.")
    requests_per_second: float | None = Field(default=None, gt=0, le=1e6, description="The key's rate, per replica.")
    burst: int | None = Field(default=None, ge=1, le=1_000_000, description="Requests at once (default: the rate).")

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKey:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError(f"key {self.name!r}: give exactly one of key or sha256")
        if self.burst is not None and self.requests_per_second is None:
            raise ValueError(f"key {self.name!r}: burst needs requestsPerSecond")
        return self

    @property
    def digest(self) -> str:
        if self.sha256 is not None:
            return self.sha256
        assert self.key is not None
        return hashlib.sha256(self.key.get_secret_value().encode()).hexdigest()


class KeysFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: list[ApiKey] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _distinct(self) -> KeysFile:
        names, digests = set(), set()
        for key in self.keys:
            if key.name in names:
                raise ValueError(f"two keys are named {key.name!r}")
            if key.digest in digests:
                raise ValueError(f"key {key.name!r} is the same key as another")
            names.add(key.name)
            digests.add(key.digest)
        return self


def parse_keys(text: str | bytes) -> KeysFile:
    try:
        return KeysFile.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise KeysFileError(f"the API keys file is invalid: {where or 'document'}: {first['msg']}") from None


@dataclass(slots=True)
class Holder:
    name: str
    bucket: TokenBucket | None  # None: no limit


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 401 or 429
    message: str
    key: str | None  # the key's name (429)
    retry_after_s: float = 0.0


UNAUTHORIZED = 401
TOO_MANY_REQUESTS = 429


class Gate:
    """The keys in force and their buckets; a Sink of routing.sources.FileSource, so the file is re-read on change.
    Made from the file's text at start: KeysFileError says why it cannot be used (and the router does not start)."""

    def __init__(self, text: bytes, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._text = text
        self._holders: dict[str, Holder] = {}
        self._install(parse_keys(text))

    def _install(self, keys: KeysFile) -> None:
        previous = {holder.name: holder.bucket for holder in self._holders.values()}
        holders: dict[str, Holder] = {}
        for key in keys.keys:
            bucket = None
            rate = key.requests_per_second
            if rate is not None:
                burst = key.burst if key.burst is not None else max(1, round(rate))
                old = previous.get(key.name)
                # A reload that keeps a key's limit keeps its bucket: rewriting the file refills nobody's.
                bucket = old if old is not None and (old.rate, old.burst) == (rate, burst) else None
                bucket = bucket or TokenBucket.full(rate, burst, self._clock())
            holders[key.digest] = Holder(key.name, bucket)
        self._holders = holders

    def apply(self, text: str | bytes, *, origin: str) -> str:
        raw = text.encode() if isinstance(text, str) else text
        if raw == self._text:
            return UNCHANGED
        try:
            keys = parse_keys(raw)
        except KeysFileError as exc:
            log.error("%s (from %s); the last valid keys stay in force", exc, origin)
            return INVALID
        self._install(keys)
        self._text = raw
        log.info("API keys applied from %s: %d keys", origin, len(keys.keys))
        return APPLIED

    def missing(self, reason: str, *, origin: str) -> None:
        log.error("API keys file %s: %s; the last valid keys stay in force", origin, reason)

    def admit(self, headers: Sequence[tuple[bytes, bytes]]) -> Holder | Refusal:
        """The holder of the request's key (its token taken), or why the request is refused."""
        presented = presented_key(headers)
        if presented is None:
            return Refusal(UNAUTHORIZED, "an API key is required: send Authorization: Bearer KEY or X-Api-Key", None)
        holder = self._holders.get(hashlib.sha256(presented).hexdigest())
        if holder is None:
            return Refusal(UNAUTHORIZED, "the API key is not valid", None)
        if holder.bucket is not None:
            wait_s = holder.bucket.take(self._clock())
            if wait_s > 0:
                message = f"API key {holder.name!r} is over its limit of {holder.bucket.rate:g} requests a second"
                return Refusal(TOO_MANY_REQUESTS, message, holder.name, wait_s)
        return holder


def presented_key(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The key in `Authorization: Bearer KEY` or `X-Api-Key: KEY` (the first non-empty one)."""
    for name, value in headers:
        key = b""
        if name == API_KEY:
            key = value.strip()
        elif name == AUTHORIZATION:
            bearer = _BEARER.match(value)
            if bearer is not None:
                key = value[bearer.end() :].strip()
        if key:
            return key
    return None
