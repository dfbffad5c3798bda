"""Settings of `modelserver serve` and `modelserver batch`: environment (prefix MODELSERVER_) and CLI flags,
resolved once. What model to load is the same for both (ModelSettings), so the operator sets the same variables
on an online pod and a batch pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

ModelFormat = Literal["auto", "sklearn", "onnx", "xgboost", "lightgbm", "custom"]
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MODEL_VERSION = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SHA256 = r"^[0-9a-fA-F]{64}$"


def _check_source(model_format: str, model_class: str | None, uri: str, *, where: str = "") -> None:
    if model_format == "custom" and not model_class:
        raise ValueError(f"{where}model_format 'custom' needs model_class ('package.module:Class')")
    if model_format != "custom" and not uri:
        raise ValueError(f"{where}model_uri is required (a custom model class may go without one)")


class ModelEntry(BaseModel):
    """One model of a repository (per-model settings, as MLServer's model-settings.json beside its server
    settings): a `model-settings.json` in a directory of the repository, whose relative `uri` is relative to that
    directory, or an entry of the server's `models` list.

        {"name": "churn", "version": "3", "uri": "model.joblib", "format": "sklearn"}
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, protected_namespaces=()
    )

    name: str = Field(pattern=MODEL_NAME, description="The model's name in URLs and metric labels.")
    version: str = Field("1", pattern=MODEL_VERSION, description="Its version in URLs and metric labels.")
    uri: str = Field("", description="Path (relative: to the model-settings.json), file://, http(s):// or s3://.")
    format: ModelFormat = "auto"
    model_class: str | None = Field(None, description="Custom runtime: 'package.module:Class'.")
    sha256: str | None = Field(None, pattern=SHA256, description="The model file's expected SHA-256.")
    feature_names: list[str] | None = Field(None, description="For models that do not carry them.")

    @model_validator(mode="after")
    def _source(self) -> ModelEntry:
        _check_source(self.format, self.model_class, self.uri, where=f"model {self.name}: ")
        return self

    def relative_to(self, directory: Path) -> ModelEntry:
        """This entry with a relative local `uri` made absolute against `directory`."""
        if not self.uri or urlsplit(self.uri).scheme or Path(self.uri).is_absolute():
            return self
        return self.model_copy(update={"uri": str(directory / self.uri)})

    def settings_update(self) -> dict[str, Any]:
        """The ModelSettings fields this entry sets (every one of them, so none comes from the environment)."""
        return {
            "model_uri": self.uri,
            "model_name": self.name,
            "model_version": self.version,
            "model_format": self.format,
            "model_class": self.model_class,
            "model_sha256": self.sha256,
            "feature_names": self.feature_names,
        }


class ModelSettings(BaseSettings):
    """Which model to load, from where, and how to log; each field is also MODELSERVER_<FIELD> in the env."""

    model_config = SettingsConfigDict(env_prefix="MODELSERVER_", extra="ignore", protected_namespaces=())

    # Name and version label every metric and every batch output, so the operator sets them per revision.
    model_uri: str = Field("", description="path, file://, http(s):// or s3:// URI of the model file")
    model_name: str = Field("model", pattern=MODEL_NAME)
    model_version: str = Field("1", pattern=MODEL_VERSION)
    model_format: ModelFormat = "auto"
    model_class: str | None = Field(None, description="custom runtime: 'package.module:Class'")
    model_sha256: str | None = Field(None, pattern=SHA256)
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
        if not self.serves_a_repository():
            _check_source(self.model_format, self.model_class, self.model_uri)
        return self

    def serves_a_repository(self) -> bool:
        """Whether the models come from a repository rather than these model_* fields (ServerSettings)."""
        return False


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
    # Repository mode: many models in one process (modelserver.repository), instead of model_uri's one.
    model_repository: Path | None = Field(
        None, description="a directory of models: each directory in it holding a model-settings.json is one"
    )
    models: list[ModelEntry] | None = Field(None, description="the models to serve, as a list (JSON in the env)")
    max_memory_bytes: PositiveInt | None = Field(
        None, description="repository mode: a model that would take the models' memory past this is not loaded"
    )

    def serves_a_repository(self) -> bool:
        return self.model_repository is not None or self.models is not None

    @model_validator(mode="after")
    def _one_way_to_name_models(self) -> ServerSettings:
        if self.model_repository is not None and self.models is not None:
            raise ValueError("give model_repository (a directory) or models (a list), not both")
        if self.serves_a_repository():
            if self.model_uri or self.model_class:
                raise ValueError(
                    "model_uri and model_class name one model: leave them out with model_repository or models"
                )
            if self.workers != 1:
                raise ValueError(
                    "model_repository and models need workers=1: loading and unloading reach one process only "
                    "(scale with replicas)"
                )
            if self.models is not None and len({(m.name, m.version) for m in self.models}) != len(self.models):
                raise ValueError("models lists one name and version twice")
        elif self.max_memory_bytes is not None:
            raise ValueError("max_memory_bytes bounds a repository's models: give model_repository or models")
        return self

    @model_validator(mode="after")
    def _ports_apart(self) -> ServerSettings:
        if self.grpc and self.grpc_port == self.port:
            raise ValueError(f"grpc_port and port are both {self.port}: give gRPC a port of its own (or grpc=false)")
        return self
