"""A/B sticky assignment as a header match, for routers that cannot hash a header value (Gateway API, Istio).

A user's key (the value of a header, or of a cookie) is assigned by its LAST TWO HEX DIGITS: the 256 buckets
`00`..`ff` (case-insensitive), of which the canary gets the first `k = round(percent * 256 / 100)`, those whose
value `16 * d1 + d2` is below `k`; every other key, including one that does not end in two hex digits, stays on
stable. User and session ids are typically UUIDs or hex tokens, whose trailing digits are uniform, so the canary
gets `k / 256` of the users (within 0.2 points of `percent`), and one key always lands in the same bucket.

The match is a regular expression in the common subset of RE2 (Envoy, hence Istio and most Gateway API
implementations) and Python/PCRE: no lookarounds, no backreferences, no `\\z`. It is anchored at both ends, so it
means the same under full-match semantics (Envoy) and search semantics (some Gateway implementations).

`sticky_from_match` is the exact inverse of `sticky_match`: `percent -> k` is injective on 1..99 (2.56 > 1), so a
router reading its object back recovers the assignment and the percent it wrote.
"""

from __future__ import annotations

import functools

from modelrollout.traffic.base import HeaderMatch, StickyBy, is_cookie_name

BUCKETS = 256
COOKIE_HEADER = "cookie"
_ANY_HEX = "[0-9a-fA-F]"
# Characters of a token that are special in a regular expression.
_SPECIAL = frozenset(r"\.^$|?*+()[]{}")
_HEADER_PREFIX, _HEADER_SUFFIX = "^.*(", ")$"
_COOKIE_PREFIX, _COOKIE_VALUE, _COOKIE_SUFFIX = r"^(.*;\s*)?", "=[^;]*?(", r")\s*(;.*)?$"


def bucket_count(percent: int) -> int:
    """How many of the 256 buckets go to the canary for `percent` (1..99): `round(percent * 2.56)`, never a tie."""
    if not 1 <= percent <= 99:
        # 0 and 100 need no assignment (everyone on one variant): callers route those by weights alone.
        raise ValueError(f"a sticky assignment splits users for a canary share within 1..99, got {percent}")
    return (percent * BUCKETS + 50) // 100


def in_canary(key: str, percent: int) -> bool:
    """The reference assignment the regular expressions implement: `key`'s last two characters, read as hex,
    fall in one of the canary's buckets."""
    k = bucket_count(percent)
    tail = key[-2:]
    if len(tail) != 2 or any(c not in "0123456789abcdefABCDEF" for c in tail):
        return False
    return int(tail, 16) < k


def _hex_class(lo: int, hi: int) -> str:
    """A character class for the hex digits of value lo..hi (both cases); a lone decimal digit stands alone."""
    if lo == hi and lo < 10:
        return str(lo)
    parts = []
    if lo <= 9:
        top = min(hi, 9)
        parts.append(str(lo) if lo == top else f"{lo}-{top}")
    if hi >= 10:
        first, last = max(lo, 10), hi
        for letters in ("abcdef", "ABCDEF"):
            a, b = letters[first - 10], letters[last - 10]
            parts.append(a if a == b else f"{a}-{b}")
    return f"[{''.join(parts)}]"


@functools.cache
def bucket_pattern(percent: int) -> str:
    """An alternation matching exactly the two-hex-digit strings of the canary's buckets for `percent`."""
    k = bucket_count(percent)
    high, low = divmod(k, 16)
    alternatives = []
    if high > 0:
        alternatives.append(_hex_class(0, high - 1) + _ANY_HEX)
    if low > 0:
        alternatives.append(_hex_class(high, high) + _hex_class(0, low - 1))
    return "|".join(alternatives)


@functools.cache
def _percent_of_pattern() -> dict[str, int]:
    return {bucket_pattern(percent): percent for percent in range(1, 100)}


def _escape(name: str) -> str:
    return "".join(f"\\{c}" if c in _SPECIAL else c for c in name)


def _unescape(escaped: str) -> str | None:
    out, chars = [], iter(escaped)
    for c in chars:
        char = next(chars, "") if c == "\\" else c
        if (char in _SPECIAL) != (c == "\\"):
            return None  # an unescaped special character, or an escaped ordinary one: not ours
        out.append(char)
    return "".join(out)


def sticky_match(by: StickyBy, percent: int) -> HeaderMatch:
    """The header match sending to the canary the users `by` assigns to it at `percent` (1..99).

    By header: the header's value ends in a canary bucket. By cookie: the `Cookie` header holds the cookie
    (anywhere among the others, `; ` separated, spaces allowed), and the cookie's value ends in a canary bucket;
    a cookie whose name merely ends in the name (`xuid` for `uid`) does not count."""
    buckets = bucket_pattern(percent)
    if by.header is not None:
        return HeaderMatch(header=by.header, regex=f"{_HEADER_PREFIX}{buckets}{_HEADER_SUFFIX}")
    assert by.cookie is not None  # StickyBy holds exactly one, and only a cookie name (an RFC 6265 token)
    regex = f"{_COOKIE_PREFIX}{_escape(by.cookie)}{_COOKIE_VALUE}{buckets}{_COOKIE_SUFFIX}"
    return HeaderMatch(header=COOKIE_HEADER, regex=regex)


def sticky_from_match(match: HeaderMatch) -> tuple[StickyBy, int] | None:
    """The assignment and percent `match` was rendered from by `sticky_match`; None for any other match."""
    regex = match.regex
    if regex is None:
        return None
    found: tuple[StickyBy, int] | None = None
    if match.header.lower() == COOKIE_HEADER and regex.startswith(_COOKIE_PREFIX) and regex.endswith(_COOKIE_SUFFIX):
        escaped, sep, buckets = regex[len(_COOKIE_PREFIX) : -len(_COOKIE_SUFFIX)].partition(_COOKIE_VALUE)
        name = _unescape(escaped) if sep else None
        percent = _percent_of_pattern().get(buckets)
        if name and percent is not None and is_cookie_name(name):
            found = StickyBy(cookie=name), percent
    elif regex.startswith(_HEADER_PREFIX) and regex.endswith(_HEADER_SUFFIX):
        percent = _percent_of_pattern().get(regex[len(_HEADER_PREFIX) : -len(_HEADER_SUFFIX)])
        if percent is not None:
            found = StickyBy(header=match.header), percent
    # Exact inverse: only what sticky_match renders (the same header spelling) is read as an assignment.
    if found is None or sticky_match(*found) != match:
        return None
    return found
