"""Traffic routing settings: which provider moves traffic between stable and canary."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from modelrollout.api.base import (
    ApiModel,
    Duration,
    SecretKeyRef,
    cel,
    cel_rules,
)

Provider = Literal["service", "router", "gatewayAPI", "istio"]


class HttpRouteRef(ApiModel):
    """The user's Gateway API HTTPRoute whose backendRefs we weight."""

    http_route: str = Field(min_length=1, max_length=253, description="HTTPRoute name, same namespace.")
    rule_name: str | None = Field(
        default=None,
        max_length=253,
        description="The rule we manage (its `name`); the first rule when unset.",
    )


class IstioRef(ApiModel):
    """The user's Istio VirtualService (and optional DestinationRule) we weight."""

    virtual_service: str = Field(min_length=1, max_length=253, description="VirtualService name, same namespace.")
    routes: list[str] | None = Field(
        default=None,
        max_length=20,
        description="HTTP route names we manage; all routes to our host when unset.",
    )
    destination_rule: str | None = Field(
        default=None, max_length=253, description="DestinationRule whose stable/canary subsets we manage."
    )


class RouterSettings(ApiModel):
    """How our router (`modelserver route`) calls the revisions; changes apply without a restart."""

    timeout: Duration = Field(
        default="10s", description="Longest wait for one upstream answer (stable, canary or shadow)."
    )
    retry_on_stable: bool = Field(
        default=False,
        description="When the canary fails (error, 5xx or timeout) answer the request from stable instead, so "
        "clients never see the candidate's failures; the failure still counts against the canary.",
    )
    api_keys: SecretKeyRef | None = Field(
        default=None,
        description="A Secret key holding the router's API keys file (JSON: each key or its SHA-256, with an optional "
        "requestsPerSecond and burst): requests then need `Authorization: Bearer KEY` or `X-Api-Key` (401 without, "
        "429 over a key's rate, per router pod). Changes to the Secret apply without a restart.",
    )


class TrafficRouting(ApiModel):
    """Who moves the traffic between stable and canary."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.provider != 'gatewayAPI' || has(self.gatewayAPI)",
                "trafficRouting.provider is gatewayAPI: set trafficRouting.gatewayAPI.httpRoute",
                field_path=".gatewayAPI",
                reason="FieldValueRequired",
            ),
            cel(
                "self.provider != 'istio' || has(self.istio)",
                "trafficRouting.provider is istio: set trafficRouting.istio.virtualService",
                field_path=".istio",
                reason="FieldValueRequired",
            ),
        )
    )

    provider: Provider = Field(
        default="router",
        description="service: replica ratio (coarse); router: our router, exact weights and mirroring; "
        "gatewayAPI: an HTTPRoute; istio: a VirtualService.",
    )
    router: RouterSettings | None = Field(default=None, description="For provider router.")
    gateway_api: HttpRouteRef | None = Field(default=None, alias="gatewayAPI", description="For provider gatewayAPI.")
    istio: IstioRef | None = Field(default=None, description="For provider istio.")

    @model_validator(mode="after")
    def _provider_settings(self) -> TrafficRouting:
        if self.provider == "gatewayAPI" and self.gateway_api is None:
            raise ValueError("trafficRouting.provider is gatewayAPI: set trafficRouting.gatewayAPI.httpRoute")
        if self.provider == "istio" and self.istio is None:
            raise ValueError("trafficRouting.provider is istio: set trafficRouting.istio.virtualService")
        return self
