"""Version 2 of the routing document: our router reads every valid vector as the routing it means and refuses every
invalid one with the reason; a version 1 document is read as the version 2 routing it means; the operator's
version 1 reader refuses version 2 by its schemaVersion (it writes version 1 so far, which a router of the previous
release still reads)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from testkit.vectors import (
    Refused,
    full_document,
    invalid_router_v2_documents,
    valid_router_documents,
    valid_router_v2_documents,
)

from modelrollout_contract.router import RouterConfigError, parse_document
from modelrollout_contract.router_v2 import (
    BackendV2,
    Fallback,
    Mirror,
    Route,
    RouterConfigV2,
    Share,
    downgrade,
    parse_any,
    to_document_v2,
    upgrade,
    with_fallback,
)
from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.reload import APPLIED, INVALID, Routing


def router() -> Routing:
    return Routing(metrics=RouterMetrics(CollectorRegistry()))


@pytest.mark.parametrize("path", valid_router_v2_documents(), ids=lambda p: p.stem)
def test_every_valid_v2_document_is_read_and_written_back_as_the_same_routing(path: Path) -> None:
    config = parse_any(path.read_text())
    assert parse_any(to_document_v2(config)) == config
    written, vector = json.loads(to_document_v2(config)), json.loads(path.read_text())
    assert {key: written[key] for key in vector} == vector  # nothing lost (defaults are written out)
    routing = router()
    assert routing.apply(path.read_text(), origin="vector") == APPLIED
    assert routing.snapshot is not None
    assert routing.snapshot.config == config


@pytest.mark.parametrize("case", invalid_router_v2_documents(), ids=lambda c: c.id)
def test_every_invalid_v2_document_is_refused_with_the_reason(case: Refused, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(RouterConfigError) as refused:
        parse_any(case.document)
    assert case.error in str(refused.value)
    with caplog.at_level(logging.ERROR, logger="modelserver.routing.reload"):
        assert router().apply(case.document, origin="vector") == INVALID
    assert any(case.error in record.getMessage() for record in caplog.records), caplog.text


def test_the_v2_vectors_cover_each_rule() -> None:
    assert len(valid_router_v2_documents()) >= 4
    assert len({c.id for c in invalid_router_v2_documents()}) == len(invalid_router_v2_documents()) >= 25


def test_a_v1_document_means_its_v2_routing() -> None:
    full = parse_document(json.dumps(full_document()))
    assert upgrade(full) == RouterConfigV2(
        route="churn",
        control="stable",
        backends={
            "stable": BackendV2(url="http://churn-stable.prod.svc:80", version="1"),
            "canary": BackendV2(url="http://churn-canary.prod.svc:80", version="2"),
        },
        # The canary first: a user's bucket below its weight x 100 is the canary's, as in version 1.
        split=[Share(backend="canary", weight=10), Share(backend="stable", weight=90)],
        sticky_by=full.sticky_by,
        routes=[Route(header="x-canary", exact="yes", to="canary")],
        mirror=Mirror(source="stable", to="canary", percent=5),
        fallbacks={"canary": Fallback(to=["stable"])},  # retryOnStable
        timeout_seconds=2.5,
    )
    for path in valid_router_documents():
        assert parse_any(path.read_text()) == upgrade(parse_document(path.read_text()))


def test_a_v1_document_without_a_canary_or_its_extras_has_only_stable() -> None:
    plain = upgrade(parse_document(json.dumps(full_document() | {"retryOnStable": False, "mirrorPercent": 0})))
    assert (plain.mirror, plain.fallbacks) == (None, {})
    minimal = {"schemaVersion": 1, "route": "r", "backends": {"stable": "http://s"}, "versions": {"stable": "1"}}
    only = parse_any(json.dumps(minimal))
    assert (list(only.backends), only.split, only.routes) == (["stable"], [Share(backend="stable", weight=100)], [])


def test_the_operators_v1_reader_refuses_v2_by_its_version() -> None:
    for path in valid_router_v2_documents():
        with pytest.raises(RouterConfigError, match="schemaVersion 2; this reader knows 1"):
            parse_document(path.read_text())


def test_a_v1_document_upgraded_and_given_a_fallback_downgrades_to_itself() -> None:
    rules = BackendV2(url="http://churn-fallback.prod.svc:80", version="rules-1")
    for path in valid_router_documents():
        v1 = parse_document(path.read_text())
        assert downgrade(upgrade(v1)) == v1
        assert downgrade(with_fallback(upgrade(v1), rules, budget_seconds=None)) == v1
    with pytest.raises(RouterConfigError, match="has no 'stable' backend"):
        downgrade(parse_any((valid_router_v2_documents()[0]).read_text().replace('"stable"', '"primary"')))
