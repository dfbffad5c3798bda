"""The OpenAPI 3.1 document of the REST transport, with schemas generated from the pydantic wire models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from modelserver import __version__
from modelserver.protocol import (
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    ServerMetadata,
)

_REQUESTS: list[type[BaseModel]] = [InferenceRequest, PredictRequest]
_RESPONSES: list[type[BaseModel]] = [
    InferenceResponse,
    PredictResponse,
    ModelMetadata,
    ServerMetadata,
    ReadyResponse,
    LiveResponse,
    ErrorResponse,
]
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
_JSON_ARRAY = {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}


@cache
def openapi_document() -> dict[str, Any]:
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in _REQUESTS]
    pairs += [(m, "serialization") for m in _RESPONSES]
    refs, definitions = models_json_schema(pairs, ref_template="#/components/schemas/{model}")

    def ref(model: type[BaseModel], mode: JsonSchemaMode = "serialization") -> dict[str, Any]:
        return dict(refs[(model, mode)])

    def reply(model: type[BaseModel], description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(model)}}}

    error = reply(ErrorResponse, "the request was refused; `error` says why")
    errors = {"400": error, "404": error, "413": error, "415": error}

    def get(model: type[BaseModel], summary: str, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"get": {"summary": summary, "responses": {"200": reply(model, summary), **(extra or {})}}}

    def with_params(item: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
        return {"parameters": list(params), **item}

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": ref(model, "validation")}}}

    infer = {
        "post": {
            "summary": "run inference (Open Inference Protocol v2; binary tensor extension supported)",
            "requestBody": body(InferenceRequest),
            "responses": {"200": reply(InferenceResponse, "model outputs"), **errors},
        }
    }
    not_ready = {"503": reply(ReadyResponse, "not ready")}
    done = {"description": "done", "content": {"application/json": {"schema": {"type": "object"}}}}
    # 400: a single-model server; 404: no such model; 409: it does not load, or does not fit max_memory_bytes.
    repository = {"200": done, "400": error, "404": error, "409": error}
    metadata = get(ModelMetadata, "model metadata: inputs, outputs, feature names", extra={"404": error})
    model_ready = get(ReadyResponse, "whether the model is ready", extra={"404": error, **not_ready})
    paths: dict[str, Any] = {
        "/v2/health/live": get(LiveResponse, "liveness"),
        "/v2/health/ready": get(ReadyResponse, "readiness: the model is loaded and warmed up", extra=not_ready),
        "/v2": get(ServerMetadata, "server metadata"),
        "/v2/models/{name}": with_params(metadata, _NAME),
        "/v2/models/{name}/versions/{version}": with_params(metadata, _NAME, _VERSION),
        "/v2/models/{name}/ready": with_params(model_ready, _NAME),
        "/v2/models/{name}/versions/{version}/ready": with_params(model_ready, _NAME, _VERSION),
        "/v2/models/{name}/infer": with_params(infer, _NAME),
        "/v2/models/{name}/versions/{version}/infer": with_params(infer, _NAME, _VERSION),
        "/predict": {
            "post": {
                "summary": "predict from named features: one record or a list of records",
                "parameters": [
                    {
                        "name": "threshold",
                        "in": "query",
                        "required": False,
                        "description": "decision threshold on the positive class (binary classifiers)",
                        "schema": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    {
                        "name": "model",
                        "in": "query",
                        "required": False,
                        "description": "the model, when the server serves several (a repository)",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "version",
                        "in": "query",
                        "required": False,
                        "description": "with `model`: its version (default: the highest served)",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": body(PredictRequest),
                "responses": {"200": reply(PredictResponse, "one prediction per record"), **errors},
            }
        },
        "/v2/repository/index": {
            "post": {
                "summary": "the repository's models: name, version, state (READY or UNAVAILABLE), reason",
                "responses": {"200": {"description": "one entry per model version", "content": _JSON_ARRAY}},
            }
        },
        "/v2/repository/models/{name}/load": with_params(
            {"post": {"summary": "load (or load again) every version of the model", "responses": repository}}, _NAME
        ),
        "/v2/repository/models/{name}/unload": with_params(
            {"post": {"summary": "stop serving every version of the model", "responses": repository}}, _NAME
        ),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "exposition text", "content": {"text/plain": {}}}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelserver", "version": __version__},
        "paths": paths,
        "components": {"schemas": definitions.get("$defs", {})},
    }
