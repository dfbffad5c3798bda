from __future__ import annotations

import json
from typing import Any

import pytest

from modelserver.routing.config import RouterConfigError, parse_document, route_of
from tests.conftest import REPO_ROOT

SHARED_VECTOR = REPO_ROOT / "tests" / "fixtures" / "router" / "config-v1.json"


def vector() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SHARED_VECTOR.read_text())
    return document


def test_the_shared_test_vector_parses() -> None:
    config = parse_document(SHARED_VECTOR.read_bytes())
    assert config.route == "churn"
    assert config.backends.stable == "http://churn-stable.prod.svc:80"
    assert config.backends.canary == "http://churn-canary.prod.svc:80"
    assert (config.versions.stable, config.versions.canary) == ("1", "2")
    assert (config.weights.stable, config.weights.canary) == (90, 10)
    assert config.mirror_percent == 5
    assert config.header_route is not None
    route = config.header_route
    assert (route.header, route.exact, route.regex) == ("x-canary", "yes", None)
    assert config.timeout_seconds == 2.5
    assert config.retry_on_stable is True
    assert config.sticky_by is not None
    assert (config.sticky_by.header, config.sticky_by.cookie) == ("x-user-id", None)


def test_a_minimal_document_takes_the_defaults() -> None:
    config = parse_document(
        '{"schemaVersion": 1, "route": "r", "backends": {"stable": "http://s"}, "versions": {"stable": "1"}}'
    )
    assert (config.weights.stable, config.weights.canary, config.mirror_percent) == (100, 0, 0)
    assert config.header_route is None
    assert config.backends.canary is None
    assert config.timeout_seconds == 10.0
    assert config.retry_on_stable is False
    assert config.sticky_by is None


def changed(**fields: Any) -> str:
    document = vector()
    for key, value in fields.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return json.dumps(document)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (changed(schemaVersion=2), "schemaVersion 2; this router reads 1"),
        (changed(schemaVersion=None), "schemaVersion None"),
        (changed(schemaVersion="1"), "schemaVersion '1'"),
        (changed(weights={"stable": 90, "canary": 20}), "add up to 100"),
        (changed(weights={"stable": 110, "canary": -10}), "weights"),
        (changed(mirrorPercent=101), "mirrorPercent"),
        (changed(route=""), "route"),
        (changed(timeoutSeconds=0), "timeoutSeconds"),
        (changed(backends={"stable": "ftp://x"}), "backends.stable"),
        (changed(backends={"stable": "http://s"}), "no backend"),
        (changed(headerRoute={"header": "x", "exact": "a", "regex": "b"}), "at most one of exact or regex"),
        (changed(headerRoute={"header": "x", "regex": "("}), "does not compile"),
        (changed(surprise=True), "surprise"),
        (changed(stickyBy={"header": "x-user-id", "cookie": "uid"}), "stickyBy sets exactly one of header or cookie"),
        (changed(stickyBy={}), "stickyBy sets exactly one of header or cookie"),
        (changed(stickyBy={"cookie": ""}), "stickyBy.cookie"),
        (changed(stickyBy={"cookie": "user id"}), "not a cookie name"),
        (changed(stickyBy={"cookie": "a=b"}), "not a cookie name"),
        (changed(stickyBy={"query": "uid"}), "stickyBy.query"),
        (changed(stickyBy="x-user-id"), "stickyBy"),
        (changed(versions={"stable": "1"}, weights={"stable": 100, "canary": 0}, headerRoute=None), "versions.canary"),
    ],
)
def test_unusable_documents_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(RouterConfigError, match=message):
        parse_document(text)


def test_header_route_of_presence_and_regex() -> None:
    presence = parse_document(changed(headerRoute={"header": "X-Canary"}))
    assert presence.header_route is not None
    assert presence.header_route.exact is None
    assert presence.header_route.regex is None
    regex = parse_document(changed(headerRoute={"header": "x-user", "regex": "user-[0-9]+"}))
    assert regex.header_route is not None
    assert regex.header_route.regex == "user-[0-9]+"


def test_route_of_reads_even_invalid_documents() -> None:
    assert route_of(changed(schemaVersion=9)) == "churn"
    assert route_of("nope") is None
    assert route_of('{"route": 3}') is None


def test_sticky_by_cookie() -> None:
    config = parse_document(changed(stickyBy={"cookie": "uid"}))
    assert config.sticky_by is not None
    assert (config.sticky_by.header, config.sticky_by.cookie) == (None, "uid")
