"""User verbs (CLI `kubectl modelrollout <verb>`, delivered to the operator as an annotation)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

VerbName = Literal["promote", "abort", "retry", "pause", "resume", "undo"]


class Verb(BaseModel):
    """One user command. `id` makes it apply once: a tick that sees the id of the last verb it applied again
    (the handler crashed before clearing the annotation) ignores it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: VerbName = Field(description="promote, abort, retry, pause, resume or undo.")
    full: bool = Field(default=False, description="promote only: skip every remaining step.")
    id: str | None = Field(default=None, min_length=1, max_length=128, description="Unique per command.")

    @model_validator(mode="after")
    def _full_only_for_promote(self) -> Verb:
        if self.full and self.name != "promote":
            raise ValueError("full applies only to promote")
        return self
