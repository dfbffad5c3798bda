"""The share document (schemaVersion 1) the operator writes into the ConfigMap `<name>-stream`, key `stream.json`,
and every consumer of a stream rollout (`modelserver stream --share-configmap`) reads; and the cutover records the
consumers pass each other in their committed offsets' metadata.

    {"schemaVersion": 1, "epoch": 3,
     "leader": {"revision": "7f3c9a1b", "group": "shop.churn"},
     "follower": {"revision": "a81d44e0", "group": "shop.churn-a81d44e0"},
     "percent": 50, "final": false}

Both revisions' consumer groups read every partition. The follower (the candidate) scores the records whose
bucket (`sticky.message_bucket`) is below percent x 100, the leader (the serving revision) the others: raising the
percent only moves keys to the candidate. A change of the document takes effect at a **cutover** per partition,
an offset chosen by the leader alone: the first offset it processes after reading the new epoch. It commits the
cutover with its offsets, in the same transaction (the offset's metadata), so a cutover is never visible without
the leader's records before it being committed. The follower reads the leader group's committed offsets and their
cutovers and scores a record only once it knows which cutover governs that record's offset: below the leader's
committed offset every cutover at or before it is known; past it, a later cutover could still land before it,
so the follower waits, unless the governing cutover is final (the document said no further epoch will change the
pair's shares: a promotion at 100, a rollback at 0). So each record is scored by exactly one revision across every
weight change, by offsets, which are monotonic per partition (record timestamps are not).

Ordering per key: each revision scores its records in offset order, and the output keeps the input's key (so its
partition). A key that moves to the candidate (the percent rising, a promotion) keeps its order in the output: the
follower scores a record past a cutover only after the leader committed every record before it. A key that moves
back (a rollback, a lower percent) may not: the leader goes on at once while the follower may still be scoring
that key's records before the cutover; a reader that needs input order then orders by the input-offset header.

A reader refuses a schemaVersion it does not know rather than guess at its meaning."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

SCHEMA_VERSION: Literal[1] = 1
CONFIG_KEY = "stream.json"
# A consumer's exit code when it stops on a fault outside itself that its restart fixes (EX_TEMPFAIL): a
# transactional call hung after a broker restart. A pod crash-looping on it says nothing about its model, so the
# operator does not judge the revision failed by it (its analysis still sees what the outage costs).
TRANSIENT_EXIT = 75
# A revision's name in a cutover record (the operator's revision names are 8 hex digits).
REVISION = r"^[a-z0-9][a-z0-9-]{0,62}$"


class ShareDocumentError(ValueError):
    """A share document that cannot be used, with the reason."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Member(_Model):
    revision: str = Field(pattern=REVISION, description="The revision whose consumers these are.")
    group: str = Field(min_length=1, max_length=255, description="Their consumer group.")


class ShareDocument(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    epoch: int = Field(ge=0, description="Raised by one at every change of the shares; cutovers carry it.")
    leader: Member = Field(description="The serving revision: it chooses every cutover.")
    follower: Member | None = Field(default=None, description="The candidate, while one is rolled out.")
    percent: int = Field(default=0, ge=0, le=100, description="The follower's share of the buckets.")
    final: bool = Field(default=False, description="No further epoch changes this leader and follower's shares.")

    @model_validator(mode="after")
    def _consistent(self) -> ShareDocument:
        if self.follower is None:
            if self.percent or self.final:
                raise ValueError("percent and final need a follower")
        elif self.follower.revision == self.leader.revision or self.follower.group == self.leader.group:
            raise ValueError("the follower needs a revision and a consumer group of its own")
        if self.final and self.percent not in (0, 100):
            raise ValueError("a final epoch gives the follower all records (100, promoted) or none (0, rolled back)")
        return self

    def role_of(self, revision: str) -> Literal["leader", "follower"] | None:
        if revision == self.leader.revision:
            return "leader"
        if self.follower is not None and revision == self.follower.revision:
            return "follower"
        return None


def parse_document(text: str | bytes) -> ShareDocument:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ShareDocumentError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ShareDocumentError("a share document is a JSON object")
    if raw.get("schemaVersion") != SCHEMA_VERSION:
        raise ShareDocumentError(f"schemaVersion {raw.get('schemaVersion')!r} is not one this reader knows (1)")
    try:
        return ShareDocument.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors())
        raise ShareDocumentError(problems) from exc


def to_document(document: ShareDocument) -> str:
    return document.model_dump_json(by_alias=True)
