"""Router settings: environment (prefix MODELSERVER_ROUTER_) and the flags of `modelserver route`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelserver.routing.auth import parse_keys

CONFIGMAP_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class RouterSettings(BaseSettings):
    """Everything `modelserver route` can be told; each field is also MODELSERVER_ROUTER_<FIELD> in the env
    (MODELSERVER_ROUTER_UPSTREAM as JSON: '{"1": "http://127.0.0.1:9001"}')."""

    model_config = SettingsConfigDict(env_prefix="MODELSERVER_ROUTER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    # Where the routing document comes from: exactly one of the two.
    configmap: str | None = Field(None, pattern=CONFIGMAP_PATTERN, description="NAMESPACE/NAME of the ConfigMap")
    kubeconfig: Path | None = Field(None, description="kubeconfig when not in a cluster (default: KUBECONFIG)")
    config_file: Path | None = Field(None, description="a file holding the document, polled for changes")
    upstream: dict[str, str] = Field(
        default_factory=dict, description="model version -> base URL, replacing the document's backend URL"
    )
    poll_interval_s: float = Field(0.2, gt=0, le=60, description="how often --config-file is checked")
    watch_timeout_s: PositiveInt = Field(300, description="server-side timeout of one ConfigMap watch")
    max_shadow_inflight: PositiveInt = Field(64, description="shadow calls in flight; more are dropped")
    max_body_bytes: PositiveInt = 16 * 1024 * 1024
    seed: int | None = Field(None, description="seed of the split's random generator (tests)")
    api_keys_file: Path | None = Field(
        None, description="JSON file of API keys and their rate limits (routing.auth); none: no authentication"
    )
    graceful_timeout_s: float = Field(30.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    access_log: bool = False

    @field_validator("upstream")
    @classmethod
    def _urls(cls, value: dict[str, str]) -> dict[str, str]:
        for version, url in value.items():
            if not version or not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream {version}={url} is not VERSION=http(s)://HOST:PORT")
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _keys(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                parse_keys(value.read_bytes())
            except OSError as exc:
                raise ValueError(f"api_keys_file {value}: cannot read it: {exc.strerror}") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> RouterSettings:
        if (self.configmap is None) == (self.config_file is None):
            raise ValueError("give exactly one of configmap (NAMESPACE/NAME) or config_file")
        if self.kubeconfig is not None and self.configmap is None:
            raise ValueError("kubeconfig only applies with configmap")
        return self


def parse_upstreams(pairs: list[str]) -> dict[str, str]:
    """`VERSION=URL` flags as a mapping; ValueError names the first malformed one."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        version, sep, url = pair.partition("=")
        if not sep or not version or not url:
            raise ValueError(f"--upstream {pair!r} is not VERSION=URL")
        parsed[version] = url
    return parsed
