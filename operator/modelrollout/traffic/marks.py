"""Which ModelDeployment changed a user's routing object, and what the object said before it did.

The gatewayAPI and istio routers edit objects the user owns (an HTTPRoute, a VirtualService, a DestinationRule);
Kubernetes' garbage collector never touches those, and the operator puts no finalizer on a ModelDeployment (a
finalizer would hang its deletion, and its namespace's, whenever the operator is down). So whoever removes our
additions after a ModelDeployment is gone must find them without having seen it: each write of a router also
writes, in the same conditional patch, one annotation per ModelDeployment,

    routing.modelrollout.dev/<ModelDeployment name>: <JSON record>

whose record says which Services our additions name and what each part we took over held before our first write
(a rule's backendRefs, a route's destinations and mirror, a subset's labels). A ModelDeployment name is at most
40 characters (`api.resource.NAME_MAX_LENGTH`), so it always fits an annotation key's 63-character name part.
The record is a boundary (a later operator version reads what an earlier one wrote): pydantic models, unknown
fields ignored, a record that does not parse treated as absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

Object = dict[str, Any]
MARK_PREFIX = "routing.modelrollout.dev/"


class Record(BaseModel):
    # Ignore what a later version may add: the parts this version knows how to give back are still right.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class RuleRecord(Record):
    """One HTTPRoute rule whose backendRefs we took over, as it was before."""

    rule: str | None = None  # the rule's name; None: an unnamed rule (the route's first, as the router chose it)
    backend_refs: list[dict[str, Any]] | None = None  # None: the rule had no backendRefs


class HTTPRouteMark(Record):
    stable: str  # the Services our backendRefs, mirror filter and header rule name
    canary: str
    rules: list[RuleRecord] = []


class RouteRecord(Record):
    """One VirtualService HTTP route whose destinations (and mirror) we took over, as it was before."""

    name: str | None = None  # None: an unnamed route (matched by order among the unnamed routes we manage)
    route: list[dict[str, Any]] | None = None
    mirror: dict[str, Any] | None = None
    mirror_percentage: dict[str, Any] | None = None


class VirtualServiceMark(Record):
    stable: str  # our Services
    canary: str
    host: str | None = None  # the DestinationRule's host when destinations are host + subset
    routes: list[RouteRecord] = []


class SubsetRecord(Record):
    labels: dict[str, str] | None = None  # None: the subset had no labels


class DestinationRuleMark(Record):
    # `stable`/`canary` -> the subset as it was before; None: there was no such subset (we added it).
    subsets: dict[str, SubsetRecord | None] = {}


M = TypeVar("M", bound=Record)


def mark_key(owner: str) -> str:
    return MARK_PREFIX + owner


def marks(obj: Object) -> dict[str, str]:
    """Every ModelDeployment name that marked `obj`, with its raw record."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return {key.removeprefix(MARK_PREFIX): value for key, value in annotations.items() if key.startswith(MARK_PREFIX)}


def read_mark(obj: Object, owner: str, model: type[M]) -> M | None:
    """`owner`'s record on `obj`; None when there is none, or it does not parse (then nothing is known of what
    the object said before)."""
    raw = marks(obj).get(owner)
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None


def mark_patch(obj: Object, owner: str, model: type[M], update: Callable[[M | None], M]) -> Object:
    """The metadata part of a router's merge patch: `owner`'s record after `update(current record)`. The stored
    text is kept when the record is unchanged, so a pass that changes nothing writes nothing."""
    current = read_mark(obj, owner, model)
    wanted = update(current)
    raw = marks(obj).get(owner) if wanted == current else wanted.to_json()
    return {"metadata": {"annotations": {mark_key(owner): raw}}}


def unmark_patch(owners: list[str]) -> Object:
    return {"metadata": {"annotations": {mark_key(owner): None for owner in owners}}}
