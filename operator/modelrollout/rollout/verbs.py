"""User verbs (CLI `kubectl modelrollout <verb>`, delivered to the operator as an annotation)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

VerbName = Literal["promote", "abort", "retry", "pause", "resume", "undo", "run"]


class Verb(BaseModel):
    """One user command. `id` makes it apply once: a tick that sees the id of the last verb it applied again
    (the handler crashed before clearing the annotation) ignores it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: VerbName = Field(description="promote, abort, retry, pause, resume, undo or run (batch: a run now).")
    full: bool = Field(default=False, description="promote only: skip every remaining step.")
    at: datetime | None = Field(
        default=None, description="run only: the scheduled time to score (a backfill of that date's data)."
    )
    id: str | None = Field(default=None, min_length=1, max_length=128, description="Unique per command.")

    @model_validator(mode="after")
    def _full_only_for_promote(self) -> Verb:
        if self.full and self.name != "promote":
            raise ValueError("full applies only to promote")
        if self.at is not None and self.name != "run":
            raise ValueError("at applies only to run")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("at needs a time zone (e.g. 2026-12-01T02:00:00Z)")
        return self


# --- delivery: the annotation the CLI writes and the operator consumes ---------------------------------------------
# The operator applies the verb, writes status.lastVerbId = verb.id and removes the annotation; a verb whose id is
# already status.lastVerbId was applied (the annotation is just not cleared yet) and is not applied again.

VERB_ANNOTATION = "modelrollout.dev/verb"
_EXAMPLE = '{"name": "promote", "full": false, "id": "3f2a9c"}'


class InvalidVerbAnnotation(ValueError):
    """The verb annotation is present but is not a Verb; the message says what is wrong and what is expected."""


def verb_annotation(verb: Verb) -> dict[str, str]:
    """The annotations that deliver `verb` (merge them into metadata.annotations)."""
    return {VERB_ANNOTATION: verb.model_dump_json(exclude_none=True)}


def parse_verb_annotation(annotations: Mapping[str, str] | None) -> Verb | None:
    """The Verb in `annotations`, None when there is none; InvalidVerbAnnotation when the value is not one."""
    raw = (annotations or {}).get(VERB_ANNOTATION)
    if raw is None:
        return None
    try:
        return Verb.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise InvalidVerbAnnotation(
            f"annotation {VERB_ANNOTATION}={raw[:200]!r} is not a verb ({problems}); expected JSON like {_EXAMPLE}"
        ) from None
