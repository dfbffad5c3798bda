"""Delivering a verb: write the annotation, then (optionally) wait for the operator to apply it.

The contract (modelrollout.rollout.verbs): the CLI merges `modelrollout.dev/verb: {"name", "full", "id"}` into the
ModelDeployment's annotations; the operator applies the verb, sets status.lastVerbId to its id and removes the
annotation. A verb the operator cannot apply in the current state is still marked applied (lastVerbId) and explained
by a Warning event with reason VerbIgnored. The pure helpers decide; `send` and `wait_applied` do the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelrollout.cli.errors import EXIT_NOT_APPLIED, CliError, Conflict
from modelrollout.cli.render import EventInfo
from modelrollout.rollout.verbs import VERB_ANNOTATION, Verb, VerbName, parse_verb_annotation, verb_annotation

if TYPE_CHECKING:
    from modelrollout.cli.kube import Api

IGNORED_REASON = "VerbIgnored"
CONFLICT_RETRIES = 5
# Once status.lastVerbId shows the verb applied, how long to wait for the operator to finish that pass (remove the
# annotation, after its events are recorded); and, when it never does, how often to look for a VerbIgnored warning.
CONSUME_GRACE_S = 5.0
EVENT_GRACE_S = (0.0, 0.5, 1.0)


def new_verb(name: VerbName, *, full: bool = False, at: datetime | None = None) -> Verb:
    return Verb(name=name, full=full, at=at, id=uuid.uuid4().hex)


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str] | None:
    annotations = obj.get("metadata", {}).get("annotations")
    return annotations if isinstance(annotations, Mapping) else None


def pending_verb(obj: Mapping[str, Any]) -> Verb | None:
    """The verb annotated on `obj` that the operator has not applied yet; None when there is none.
    InvalidVerbAnnotation when the annotation is not a verb (the operator cannot apply it either)."""
    verb = parse_verb_annotation(_annotations(obj))
    if verb is None or (verb.id is not None and verb.id == _status(obj).get("lastVerbId")):
        return None
    return verb


def is_applied(obj: Mapping[str, Any], verb: Verb) -> bool:
    return verb.id is not None and _status(obj).get("lastVerbId") == verb.id


def describe(verb: Verb) -> str:
    return f"{verb.name}{' --full' if verb.full else ''} (id {verb.id})"


def pending_message(pending: Verb, namespace: str, name: str) -> str:
    return (
        f"{describe(pending)} is still pending on modeldeployment {namespace}/{name}: the operator has not applied "
        f"it yet. Wait for it (is the operator running?), or send yours anyway with --force, which replaces it."
    )


def timeout_message(verb: Verb, namespace: str, name: str, timeout: str) -> str:
    return (
        f"timed out after {timeout}: the operator did not pick up {describe(verb)} on modeldeployment "
        f"{namespace}/{name}. Is the operator running and watching namespace {namespace}? The verb stays in the "
        f"annotation {VERB_ANNOTATION} and is applied when the operator gets to it (check with "
        f"`kubectl modelrollout status {name} -n {namespace}`)."
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a verb the operator applied."""

    verb: Verb
    phase: str
    message: str
    ignored: EventInfo | None  # the operator's VerbIgnored warning, when it could not do it

    def summary(self, namespace: str, name: str) -> str:
        message = f": {self.message}" if self.message else ""
        return f"{self.verb.name} applied to modeldeployment {namespace}/{name}; phase {self.phase}{message}"

    def why_ignored(self) -> str:
        assert self.ignored is not None
        why = self.ignored.message.removeprefix(f"{self.verb.name}: ")
        return f"the operator ignored {self.verb.name}: {why}"


async def send(
    api: Api, name: str, verb: Verb, *, force: bool, warn: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Annotate `verb` unless another verb is still pending (then CliError exit 1, or replace it when `force`).
    Guarded by resourceVersion, so a verb sent by someone else between our read and our write is never lost
    unnoticed: we read again and decide again."""
    for _ in range(CONFLICT_RETRIES):
        obj = await api.get(name)
        try:
            pending = pending_verb(obj)
        except ValueError as exc:  # an unreadable annotation: the operator cannot apply it, ours replaces it
            if warn is not None:
                warn(f"replacing an invalid verb annotation: {exc}")
            pending = None
        if pending is not None and not force:
            raise CliError(pending_message(pending, api.namespace, name), exit_code=EXIT_NOT_APPLIED)
        try:
            return await api.annotate(
                name, dict(verb_annotation(verb)), resource_version=obj["metadata"]["resourceVersion"]
            )
        except Conflict:
            continue
    raise CliError(f"modeldeployment {api.namespace}/{name} keeps changing; could not annotate it, try again")


async def ignored_event_names(api: Api, name: str, uid: str | None) -> set[str]:
    return {e.name for e in await api.events(name, uid=uid) if e.info.reason == IGNORED_REASON}


async def _find_ignored(
    api: Api, name: str, verb: Verb, *, uid: str | None, before: set[str], grace: tuple[float, ...]
) -> EventInfo | None:
    for delay in grace:
        await asyncio.sleep(delay)
        for event in await api.events(name, uid=uid):
            info = event.info
            if (
                event.name not in before
                and info.reason == IGNORED_REASON
                and info.type == "Warning"
                and info.message.startswith(f"{verb.name}:")
            ):
                return info
    return None


def _holds(obj: Mapping[str, Any], verb: Verb) -> bool:
    """Whether the verb annotation is still this verb (the operator removes it once the pass is done)."""
    try:
        return parse_verb_annotation(_annotations(obj)) == verb
    except ValueError:
        return False


async def wait_applied(
    api: Api, name: str, verb: Verb, *, timeout_s: float, timeout_text: str, before: set[str]
) -> Outcome:
    """Watch the object until the operator has applied the verb (status.lastVerbId is its id) and finished that
    pass (the annotation removed: the operator writes status, then events, then removes it); then report the
    phase, the message, and the VerbIgnored warning it recorded for the verb (events not in `before`)."""
    applied: Mapping[str, Any] | None = None
    consumed = False
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s) as deadline, contextlib.aclosing(api.watch(name)) as changes:
            async for obj in changes:
                if obj is None:
                    raise CliError(f"modeldeployment {api.namespace}/{name} was deleted before {verb.name} applied")
                if is_applied(obj, verb):
                    if applied is None:  # the rest of the pass should follow at once; do not wait long for it
                        limit = deadline.when()
                        soon = loop.time() + CONSUME_GRACE_S
                        deadline.reschedule(soon if limit is None else min(limit, soon))
                    applied = obj
                    if not _holds(obj, verb):
                        consumed = True
                        break
                    continue
                other = _replaced_by(obj, verb)
                if other is not None:
                    raise CliError(
                        f"{describe(verb)} was replaced by {describe(other)} before the operator applied it",
                        exit_code=EXIT_NOT_APPLIED,
                    )
    except TimeoutError:
        if applied is None:
            raise CliError(
                timeout_message(verb, api.namespace, name, timeout_text), exit_code=EXIT_NOT_APPLIED
            ) from None
    assert applied is not None
    status = _status(applied)
    uid = applied.get("metadata", {}).get("uid")
    grace = (0.0,) if consumed else EVENT_GRACE_S
    ignored = await _find_ignored(api, name, verb, uid=uid, before=before, grace=grace)
    return Outcome(
        verb=verb, phase=str(status.get("phase", "Pending")), message=str(status.get("message", "")), ignored=ignored
    )


def _replaced_by(obj: Mapping[str, Any], verb: Verb) -> Verb | None:
    try:
        current = parse_verb_annotation(_annotations(obj))
    except ValueError:
        return None
    return current if current is not None and current.id != verb.id else None
