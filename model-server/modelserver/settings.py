"""Settings of `modelserver serve` and `modelserver batch`: environment (prefix MODELSERVER_) and CLI flags,
resolved once. What model to load is the same for both (ModelSettings), so the operator sets the same variables
on an online pod and a batch pod."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ModelFormat = Literal["auto", "sklearn", "onnx", "xgboost", "lightgbm", "custom"]


class ModelSettings(BaseSettings):
    """Which model to load, from where, and how to log; each field is also MODELSERVER_<FIELD> in the env."""

    model_config = SettingsConfigDict(env_prefix="MODELSERVER_", extra="ignore", protected_namespaces=())

    # Name and version label every metric and every batch output, so the operator sets them per revision.
    model_uri: str = Field("", description="path, file://, http(s):// or s3:// URI of the model file")
    model_name: str = Field("model", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    model_version: str = Field("1", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    model_format: ModelFormat = "auto"
    model_class: str | None = Field(None, description="custom runtime: 'package.module:Class'")
    model_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    feature_names: list[str] | None = Field(
        None, description="feature names for models that do not carry them (default f0..fN-1)"
    )
    download_dir: Path | None = Field(None, description="where remote models are fetched to (default: a temp dir)")
    s3_endpoint_url: str | None = Field(None, description="any S3-compatible endpoint; credentials: AWS_* env")
    s3_region: str | None = None
    http_timeout_s: float = Field(60.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True

    @model_validator(mode="after")
    def _uri_or_class(self) -> ModelSettings:
        if self.model_format == "custom" and not self.model_class:
            raise ValueError("model_format 'custom' needs model_class ('package.module:Class')")
        if self.model_format != "custom" and not self.model_uri:
            raise ValueError("model_uri is required (a custom model class may go without one)")
        return self


class ServerSettings(ModelSettings):
    """Everything `modelserver serve` can be told; each field is also MODELSERVER_<FIELD> in the env."""

    # How to serve it.
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    # gRPC on by default, on 8081 beside REST's 8080, as MLServer does: a client picks its protocol without the
    # server being told.
    grpc: bool = Field(True, description="serve the Open Inference Protocol over gRPC too, on grpc_port")
    grpc_port: int = Field(8081, ge=1, le=65535)
    grpc_max_message_bytes: PositiveInt = Field(
        8 * 1024 * 1024, description="largest gRPC request or response; larger ones get RESOURCE_EXHAUSTED"
    )
    workers: PositiveInt = 1
    inference_threads: PositiveInt = Field(1, description="threads per model call; workers scale across cores")
    max_body_bytes: PositiveInt = 8 * 1024 * 1024
    max_request_records: PositiveInt = 10_000
    batching: bool = False
    max_batch_size: PositiveInt = 32
    max_batch_wait_ms: float = Field(2.0, ge=0, le=1000)
    warmup: bool = True
    graceful_timeout_s: float = Field(30.0, ge=0)
    access_log: bool = False

    @model_validator(mode="after")
    def _ports_apart(self) -> ServerSettings:
        if self.grpc and self.grpc_port == self.port:
            raise ValueError(f"grpc_port and port are both {self.port}: give gRPC a port of its own (or grpc=false)")
        return self
