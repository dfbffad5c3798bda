"""How a user's key (a header or cookie value) picks a variant in our router, the same in every replica, and the
names a cookie may have."""

from __future__ import annotations

import re
import zlib

# A key falls in bucket crc32(key) % BUCKETS; it goes to the candidate when its bucket is below weight x 100, so a
# weight of 30 sends 30.00% of keys, and raising the weight only moves keys from stable to the candidate.
BUCKETS = 10_000
# RFC 6265 cookie-name = token: a name outside it can be neither read from a Cookie header nor set.
COOKIE_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
_COOKIE_NAME = re.compile(COOKIE_NAME)


def bucket(key: str | bytes) -> int:
    return zlib.crc32(key.encode() if isinstance(key, str) else key) % BUCKETS


def to_candidate(key: str | bytes, weight: int) -> bool:
    """Whether the user with `key` is assigned to the candidate at `weight` percent."""
    return bucket(key) < weight * (BUCKETS // 100)


def is_cookie_name(name: str) -> bool:
    return _COOKIE_NAME.match(name) is not None
