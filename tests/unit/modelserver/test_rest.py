from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from modelserver.errors import MalformedRequest
from modelserver.inference_http import PATHS, split_binary
from modelserver.openapi import openapi_document
from modelserver.rest import create_app
from modelserver.settings import ServerSettings


def test_split_binary() -> None:
    assert split_binary(b'{"a":1}xyz', b"7") == (b'{"a":1}', b"xyz")
    assert split_binary(b"{}", None) == (b"{}", b"")
    for bad in [b"9", b"-1", b"x"]:
        with pytest.raises(MalformedRequest, match="Inference-Header-Content-Length"):
            split_binary(b"{}", bad)


def test_openapi_documents_every_route() -> None:
    app = create_app(ServerSettings(model_uri="/unused.joblib")).other
    assert isinstance(app, Starlette)
    served = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route) for m in r.methods or () if m != "HEAD"}
    served |= {(path, "post") for path in PATHS}
    paths = openapi_document()["paths"]
    documented = {(path, method) for path, item in paths.items() for method in item if method != "parameters"}
    assert served - {("/openapi.json", "get")} == documented
