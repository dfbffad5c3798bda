"""How a user's key (a header or cookie value) picks a variant in our router, the same in every replica, and the
names a cookie may have. A batch run selecting a canary's share of records by a key column uses the same rule
(`buckets_of`), so a user's record goes to the model their requests go to; so does a stream consumer selecting its
share of a topic's messages by their Kafka key (`message_bucket`), whose keyless messages spread over the buckets
by their place in the topic instead."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

# A key falls in bucket crc32(key) % BUCKETS; it goes to the candidate when its bucket is below weight x 100, so a
# weight of 30 sends 30.00% of keys, and raising the weight only moves keys from stable to the candidate.
BUCKETS = 10_000
# Where a record without a key falls (buckets_of): the last bucket, stable's at any canary weight below 100.
MISSING_KEY_BUCKET = BUCKETS - 1
# RFC 6265 cookie-name = token: a name outside it can be neither read from a Cookie header nor set.
COOKIE_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
_COOKIE_NAME = re.compile(COOKIE_NAME)


def bucket(key: str | bytes) -> int:
    return zlib.crc32(key.encode() if isinstance(key, str) else key) % BUCKETS


def buckets_of(keys: Iterable[str | bytes | int | None]) -> list[int]:
    """`bucket` of each key of a column: an integer is its decimal text (42 is "42", what a header carrying it
    says), and a missing key (None) falls in the last bucket, so it stays with stable like a request without a
    key. Booleans and other types are refused: their text is no key a router would see."""
    found: list[int] = []
    append, crc32 = found.append, zlib.crc32  # bound once: this runs per record of a batch
    for key in keys:
        if isinstance(key, str):
            append(crc32(key.encode()) % BUCKETS)
        elif isinstance(key, int) and not isinstance(key, bool):
            append(crc32(str(key).encode()) % BUCKETS)
        elif isinstance(key, bytes):
            append(crc32(key) % BUCKETS)
        elif key is None:
            append(MISSING_KEY_BUCKET)
        else:
            raise TypeError(f"a key is text or an integer, not {type(key).__name__}")
    return found


def keyless_bucket(partition: int, offset: int) -> int:
    """Where a Kafka message without a key falls: the bucket of "<partition>:<offset>", so keyless messages spread
    evenly over every share (a canary by message share) and each falls in exactly one, the same for every consumer
    group that reads it (unlike a batch record without a key, which stays with stable: it has no place to hash)."""
    return zlib.crc32(f"{partition}:{offset}".encode()) % BUCKETS


def message_bucket(key: bytes | None, partition: int, offset: int) -> int:
    """A Kafka message's bucket: its key's (the same as a request carrying that key as text), else keyless_bucket.
    An empty key is a key like any other (b"" is not None)."""
    return zlib.crc32(key) % BUCKETS if key is not None else keyless_bucket(partition, offset)


def to_candidate(key: str | bytes, weight: int) -> bool:
    """Whether the user with `key` is assigned to the candidate at `weight` percent."""
    return bucket(key) < weight * (BUCKETS // 100)


def is_cookie_name(name: str) -> bool:
    return _COOKIE_NAME.match(name) is not None
