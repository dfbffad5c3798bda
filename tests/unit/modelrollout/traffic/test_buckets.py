"""The A/B sticky assignment as a header match: which keys the regular expressions send to the canary (checked
with Python's `re` under full-match and search semantics, and with RE2 itself when google-re2 is installed),
and that reading a match back gives exactly the assignment and percent it was rendered from."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from modelrollout.traffic.base import HeaderMatch, StickyBy
from modelrollout.traffic.buckets import (
    BUCKETS,
    bucket_count,
    in_canary,
    sticky_from_match,
    sticky_match,
)

try:  # google-re2: the engine Envoy (Istio, most Gateway API implementations) uses
    import re2
except ImportError:  # pragma: no cover - depends on the machine
    re2 = None

BY_HEADER = StickyBy(header="x-user-id")
BY_COOKIE = StickyBy(cookie="uid")
PERCENTS = (1, 5, 10, 25, 33, 50, 67, 90, 99)
SUFFIXES = [f"{value:02x}" for value in range(BUCKETS)]

Matcher = Callable[[str, str], bool]


def _full(regex: str, value: str) -> bool:
    return re.fullmatch(regex, value) is not None


def _search(regex: str, value: str) -> bool:
    return re.search(regex, value) is not None


MATCHERS: list[Any] = [pytest.param(_full, id="fullmatch"), pytest.param(_search, id="search")]
if re2 is not None:  # pragma: no branch

    def _re2_full(regex: str, value: str) -> bool:
        return re2.compile(regex).fullmatch(value) is not None

    def _re2_search(regex: str, value: str) -> bool:
        return re2.compile(regex).search(value) is not None

    MATCHERS += [pytest.param(_re2_full, id="re2-fullmatch"), pytest.param(_re2_search, id="re2-search")]


def _value(by: StickyBy, key: str) -> str:
    """The header value carrying `key`: the header itself, or a Cookie header among other cookies."""
    return key if by.header is not None else f"theme=dark; uid={key}; lang=en"


def test_bucket_counts() -> None:
    assert [bucket_count(p) for p in (1, 10, 25, 50, 75, 99)] == [3, 26, 64, 128, 192, 253]
    counts = [bucket_count(p) for p in range(1, 100)]
    assert len(set(counts)) == 99, "injective: every percent has its own bucket count"
    assert all(abs(k / BUCKETS * 100 - p) <= 0.2 for p, k in zip(range(1, 100), counts, strict=True))
    for percent in (0, 100, -1, 101):
        with pytest.raises(ValueError, match=r"within 1\.\.99"):
            sticky_match(BY_HEADER, percent)


@pytest.mark.parametrize("matches", MATCHERS)
@pytest.mark.parametrize("by", [BY_HEADER, BY_COOKIE], ids=["header", "cookie"])
@pytest.mark.parametrize("percent", PERCENTS)
def test_exact_bucket_sets(matches: Matcher, by: StickyBy, percent: int) -> None:
    regex = sticky_match(by, percent).regex
    assert regex is not None
    k = bucket_count(percent)
    for prefix in ("", "user-", "3f2a9c"):
        for case in (str.lower, str.upper):
            canary = {s for s in SUFFIXES if matches(regex, _value(by, case(prefix + s)))}
            assert canary == set(SUFFIXES[:k]), (prefix, case)
            assert all(in_canary(prefix + s, percent) == (s in canary) for s in SUFFIXES)


@pytest.mark.parametrize("by", [BY_HEADER, BY_COOKIE], ids=["header", "cookie"])
@pytest.mark.parametrize("percent", [1, 10, 50, 90])
def test_uuids_split_at_the_percent(by: StickyBy, percent: int) -> None:
    regex = sticky_match(by, percent).regex
    assert regex is not None
    compiled = re.compile(regex)
    keys = [uuid.uuid4().hex for _ in range(10_000)]
    share = 100 * sum(compiled.fullmatch(_value(by, key)) is not None for key in keys) / len(keys)
    assert abs(share - percent) <= 2, share
    # Sticky: the same key always gets the same answer, dashed UUIDs (hex at the end too) likewise.
    dashed = str(uuid.UUID(keys[0]))
    assert (compiled.fullmatch(_value(by, dashed)) is None) == (compiled.fullmatch(_value(by, keys[0])) is None)


@pytest.mark.parametrize("matches", MATCHERS)
@pytest.mark.parametrize("by", [BY_HEADER, BY_COOKIE], ids=["header", "cookie"])
def test_keys_not_ending_in_two_hex_digits_stay_on_stable(matches: Matcher, by: StickyBy) -> None:
    regex = sticky_match(by, 99).regex  # 253 of 256 buckets: anything matching would be in one
    assert regex is not None
    assert matches(regex, _value(by, "user-00"))
    for key in ("", "0", "a", "user-0g", "user-g0", "00-", "00 x", "alice-z", "bob", "00\u00e9", "0x"):
        assert not matches(regex, _value(by, key)), key


@pytest.mark.parametrize("matches", MATCHERS)
def test_the_cookie_is_found_among_others(matches: Matcher) -> None:
    regex = sticky_match(BY_COOKIE, 50).regex  # canary: keys ending in 00..7f
    assert regex is not None
    canary = [
        "uid=abc00",
        "uid=00",
        "uid=abc00;",
        "uid=abc00 ",
        "uid=abc7F; theme=dark",
        "theme=dark; uid=abc00",
        "theme=dark;uid=abc00",
        "theme=dark;   uid=abc00  ;  lang=en",
        "a=ff; uid=1200; b=ff",
        "xuid=ff; uid=12",
    ]
    stable = [
        "",
        "uid=abcff",
        "uid=",
        "uid=abc80; theme=00",
        "theme=00; uid=ff",
        "xuid=abc00",  # a cookie whose name ends in the name is another cookie
        "theme=dark; xuid=abc00; uid=ff",
        "uid2=abc00",
        "uidx=00",
        "x=uid=00",
        "other=dark uid=00",
        "UID=abc00",  # cookie names are case-sensitive
        "uid=00x",
        'uid="abc00"',  # a quoted value does not end in hex digits
    ]
    for value in canary:
        assert matches(regex, value), value
    for value in stable:
        assert not matches(regex, value), value


@pytest.mark.parametrize("matches", MATCHERS)
def test_cookie_names_are_escaped(matches: Matcher) -> None:
    by = StickyBy(cookie="s.id+v1")
    match = sticky_match(by, 50)
    assert match.header == "cookie"
    assert match.regex is not None
    assert matches(match.regex, "s.id+v1=ab00")
    assert not matches(match.regex, "sxid+v1=ab00"), "the dot is literal"
    assert not matches(match.regex, "s.iddv1=ab00")
    with pytest.raises(ValueError, match="not a cookie name"):
        sticky_match(StickyBy(cookie="a=b"), 50)
    with pytest.raises(ValueError, match="not a cookie name"):
        sticky_match(StickyBy(cookie="a;b"), 50)


def test_only_the_re2_subset_is_used() -> None:
    names = [BY_HEADER, BY_COOKIE, StickyBy(cookie="a.b*c+d^e$f|g"), StickyBy(header="X-Session")]
    for by in names:
        for percent in range(1, 100):
            regex = sticky_match(by, percent).regex
            assert regex is not None
            assert len(regex) <= 1024, "HeaderMatch.regex's limit"
            for construct in ("(?=", "(?!", "(?<", "(?P", r"\Z", r"\z", "(?i"):
                assert construct not in regex
            assert not re.search(r"\\[1-9]", regex), "no backreferences"
            assert regex.startswith("^"), "anchored: full match and search agree"
            assert regex.endswith("$")
            if re2 is not None:  # pragma: no branch
                re2.compile(regex)


@pytest.mark.parametrize("by", [BY_HEADER, BY_COOKIE, StickyBy(header="X-User"), StickyBy(cookie="s.id+v1")])
def test_round_trip_for_every_percent(by: StickyBy) -> None:
    for percent in range(1, 100):
        assert sticky_from_match(sticky_match(by, percent)) == (by, percent)


@pytest.mark.parametrize(
    "match",
    [
        HeaderMatch(header="x-user-id"),
        HeaderMatch(header="x-user-id", exact="abc"),
        HeaderMatch(header="x-user-id", regex="^b.*"),
        HeaderMatch(header="x-user-id", regex="^.*([0-7][0-9a-f])$"),  # not our bucket spelling
        HeaderMatch(header="x-user-id", regex="^.*(0[0-9a-fA-F])$"),  # 16 buckets: no percent renders it
        HeaderMatch(header="x-other", regex=r"^(.*;\s*)?uid=[^;]*?([0-7][0-9a-fA-F])\s*(;.*)?$"),
        HeaderMatch(header="cookie", regex=r"^(.*;\s*)?u.id=[^;]*?([0-7][0-9a-fA-F])\s*(;.*)?$"),  # unescaped
        HeaderMatch(header="cookie", regex=r"^(.*;\s*)?=[^;]*?([0-7][0-9a-fA-F])\s*(;.*)?$"),
    ],
)
def test_other_matches_are_no_assignment(match: HeaderMatch) -> None:
    assert sticky_from_match(match) is None


def test_a_header_named_cookie_is_still_a_header() -> None:
    by = StickyBy(header="cookie")
    assert sticky_from_match(sticky_match(by, 30)) == (by, 30)
    assert sticky_match(by, 30) != sticky_match(StickyBy(cookie="cookie"), 30)
