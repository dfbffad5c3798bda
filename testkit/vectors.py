"""The contract's shared test vectors (contract/vectors): documents the operator and the router must both accept,
and documents both must refuse, each with a part of the reason."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROUTER_VECTORS = Path(__file__).resolve().parents[1] / "contract" / "vectors" / "router"
FULL = ROUTER_VECTORS / "valid" / "full.json"  # every field set
ROUTER_V2_VECTORS = ROUTER_VECTORS / "v2"  # version 2: read by our router; the operator writes version 1 so far


@dataclass(frozen=True)
class Refused:
    id: str
    document: str
    error: str


def valid_router_documents() -> list[Path]:
    return sorted((ROUTER_VECTORS / "valid").glob("*.json"))


def invalid_router_documents() -> list[Refused]:
    return [Refused(**case) for case in json.loads((ROUTER_VECTORS / "invalid.json").read_text())]


def valid_router_v2_documents() -> list[Path]:
    return sorted((ROUTER_V2_VECTORS / "valid").glob("*.json"))


def invalid_router_v2_documents() -> list[Refused]:
    return [Refused(**case) for case in json.loads((ROUTER_V2_VECTORS / "invalid.json").read_text())]


def full_v2_document() -> dict[str, Any]:
    """The valid version 2 document with every field set, as a dict to change in a test."""
    document: dict[str, Any] = json.loads((ROUTER_V2_VECTORS / "valid" / "full.json").read_text())
    return document


def full_document() -> dict[str, Any]:
    """The valid document with every field set, as a dict to change in a test."""
    document: dict[str, Any] = json.loads(FULL.read_text())
    return document
