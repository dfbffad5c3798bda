"""schemathesis generates requests from our OpenAPI document, valid and invalid; none may get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.integration.modelserver.conftest import Server, launch
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fuzz")
    built = builders.sklearn_logistic(tmp)
    # A small record limit, so generated large requests also exercise the 413 path.
    server = launch(tmp, "--model-uri", str(built.path), env={"MODELSERVER_MAX_REQUEST_RECORDS": "100"})
    yield server
    server.stop()


def test_no_input_gets_a_server_error(fuzzed_server: Server) -> None:
    # Driven by hand rather than with schemathesis' pytest plugin, which does not run under pytest 9.
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 14  # every documented route (the document itself is not in it)
    for operation in operations:
        # Random path names mostly hit 404; pinning the served name and version reaches the data plane.
        served = {k: v for k, v in {"name": "model", "version": "1"}.items() if f"{{{k}}}" in operation.path}
        for mode in GenerationMode:
            for path_parameters in ({}, served):
                strategy = operation.as_strategy(mode, path_parameters=path_parameters or None)
                try:
                    _fuzz(strategy)
                except Unsatisfiable:
                    # Only a negative run of an operation with nothing left to make invalid gets here.
                    assert mode is GenerationMode.NEGATIVE, operation.label
    # The generated requests got through to the data plane's validation (not only 404s on random names).
    metrics = fuzzed_server.client.get("/metrics").text
    for protocol in ("v2", "predict"):
        assert f'code="400",model="model",protocol="{protocol}"' in metrics


def _fuzz(strategy: SearchStrategy[schemathesis.Case]) -> None:
    @given(case=strategy)
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    run()


def test_document_is_served(fuzzed_server: Server) -> None:
    document = fuzzed_server.client.get("/openapi.json").json()
    assert "/v2/models/{name}/infer" in document["paths"]
