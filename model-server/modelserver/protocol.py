"""Wire shapes: Open Inference Protocol v2 and the simple /predict API (pydantic, also the OpenAPI schemas).

Requests are validated by these models straight from the raw body (pydantic's Rust JSON parser), so a wrong
type, a non-finite number or malformed JSON is rejected before any numpy work. Responses are built as plain
dicts on the hot path; tests check they conform to the response models below.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, NonNegativeInt, RootModel, Strict

from modelrollout_contract.datatypes import Datatype

# JSON numbers only: no booleans, strings or nulls sneaking in through lax coercion, no NaN/Infinity.
Number = Annotated[float, Strict(), AllowInfNan(False)] | Annotated[int, Strict()]
TensorData = list[Number] | list[list[Number]] | list[list[list[Number]]]

Parameters = dict[str, Any]


class _Open(BaseModel):
    # The protocol allows extension fields (tritonclient sends some); ignore what we do not use.
    model_config = ConfigDict(extra="ignore")


class RequestInput(_Open):
    name: str = Field(max_length=256)
    shape: list[NonNegativeInt] = Field(max_length=8)
    datatype: Datatype
    parameters: Parameters | None = None
    data: TensorData | None = Field(None, description="row-major, flat or nested; absent when sent as binary")


class RequestOutput(_Open):
    name: str = Field(max_length=256)
    parameters: Parameters | None = None


class InferenceRequest(_Open):
    id: str | None = Field(None, max_length=256)
    parameters: Parameters | None = Field(None, description="'threshold': decision threshold (binary classifiers)")
    inputs: list[RequestInput] = Field(min_length=1, max_length=4096)
    outputs: list[RequestOutput] | None = Field(None, max_length=16)


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: Parameters | None = None


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


Record = dict[str, Number]


class PredictRequest(RootModel[Record | list[Record]]):
    """One record (feature name -> number) or a list of records."""


class PredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_name: str
    model_version: str
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = Field(None, description="per record: class -> probability")


class ErrorResponse(BaseModel):
    error: str


class ReadyResponse(BaseModel):
    name: str | None = None
    ready: bool


class LiveResponse(BaseModel):
    live: bool
