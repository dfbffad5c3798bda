"""Both sides agree on every routing document: the operator's reader (the router provider's ConfigMap) and our
router's (a reload) accept every valid vector and refuse every invalid one, with the reason; and what the
operator writes, the router reads back as the same routing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from testkit.vectors import Refused, invalid_router_documents, valid_router_documents

from modelrollout.traffic.router import RouterConfigError, parse_configmap_data, to_configmap_data
from modelrollout_contract.router import CONFIG_KEY
from modelrollout_contract.router_v2 import upgrade
from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.reload import APPLIED, INVALID, Routing


def router() -> Routing:
    return Routing(metrics=RouterMetrics(CollectorRegistry()))


@pytest.mark.parametrize("path", valid_router_documents(), ids=lambda p: p.stem)
def test_both_sides_accept_every_valid_document_alike(path: Path) -> None:
    text = path.read_text()
    operator_view = parse_configmap_data({CONFIG_KEY: text})
    routing = router()
    assert routing.apply(text, origin="vector") == APPLIED
    assert routing.snapshot is not None
    assert routing.snapshot.config == upgrade(operator_view)
    # What the operator writes from it is read back by the router as the same routing.
    again = router()
    assert again.apply(to_configmap_data(operator_view)[CONFIG_KEY], origin="operator") == APPLIED
    assert again.snapshot is not None
    assert again.snapshot.config == upgrade(operator_view)


@pytest.mark.parametrize("case", invalid_router_documents(), ids=lambda c: c.id)
def test_both_sides_refuse_every_invalid_document_with_the_reason(
    case: Refused, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(RouterConfigError, match=case.error):
        parse_configmap_data({CONFIG_KEY: case.document})
    with caplog.at_level(logging.ERROR, logger="modelserver.routing.reload"):
        assert router().apply(case.document, origin="vector") == INVALID
    assert any(case.error in record.getMessage() for record in caplog.records), caplog.text


def test_the_vectors_cover_each_side_of_every_rule() -> None:
    assert len(valid_router_documents()) >= 4
    assert len({c.id for c in invalid_router_documents()}) == len(invalid_router_documents()) >= 20
