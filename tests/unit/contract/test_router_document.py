"""The routing document of the contract: what its fields mean once parsed (contract/vectors: which documents
both sides accept and refuse, tests/unit/contract/test_vectors.py)."""

from __future__ import annotations

import json
from typing import Any

from testkit.vectors import FULL
from testkit.vectors import full_document as vector

from modelrollout_contract.router import RouterConfig, parse_document, route_of, to_document


def test_the_shared_test_vector_parses() -> None:
    config = parse_document(FULL.read_bytes())
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


def test_a_document_is_written_as_the_same_bytes_every_time() -> None:
    config = parse_document(FULL.read_bytes())
    text = to_document(config)
    assert text == to_document(RouterConfig.model_validate(json.loads(text)))
    assert json.loads(text) == json.loads(FULL.read_text())
    assert ", " not in text
    assert list(json.loads(text)) == sorted(json.loads(text))
