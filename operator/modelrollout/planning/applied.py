"""Whether an object we want must be sent again (pure). A server-side apply of an unchanged object is still a
request, and a fleet's passes would make thousands of them a minute for nothing; so a pass applies an object only
when what we send changed, or the object in the cluster no longer says what we sent.

- `digest`: a hash of what we send, carried on the object (`ANNOTATION_APPLIED`), so that it survives the
  operator's restart: a field we stop sending (an env var the user removed) changes the digest, and only an apply
  takes it away (server-side apply removes the fields a manager no longer sends).
- `covers`: whether the live object still holds every field we send with the value we send (what the API server
  added, defaulted or another manager owns does not matter, as to server-side apply). A hand edit of one of our
  fields fails it, and the apply that follows restores it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modelrollout.api.resource import GROUP

ANNOTATION_APPLIED = f"{GROUP}/applied"


def digest(obj: dict[str, Any]) -> str:
    """A short, stable hash of the object we send (keys sorted, our own digest annotation left out)."""
    meta = dict(obj.get("metadata", {}))
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION_APPLIED}
    meta["annotations"] = annotations
    canonical = json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def stamped(obj: dict[str, Any], value: str) -> dict[str, Any]:
    """`obj` with its digest annotation set (a copy: the plan stays as planned)."""
    meta = dict(obj["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_APPLIED: value}
    return {**obj, "metadata": meta}


def covers(live: Any, wanted: Any) -> bool:
    """Whether `live` holds everything in `wanted`: maps key by key (extra live keys allowed), lists item by item
    with the same length, scalars equal (a number and its string form are not: the API server keeps either)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(k in live and covers(live[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(covers, live, wanted))
    return bool(live == wanted) and type(live) is type(wanted)


def unchanged(wanted: dict[str, Any], live: dict[str, Any] | None, *, applied_still: bool) -> bool:
    """Whether applying `wanted` (already stamped with its digest) can be skipped. `applied_still`: the index
    says our last apply sent this digest and the object has not changed since (the fast path; without it, e.g.
    after a restart, the live object is compared field by field)."""
    if live is None:
        return False
    ours = (wanted["metadata"].get("annotations") or {}).get(ANNOTATION_APPLIED)
    theirs = (live["metadata"].get("annotations") or {}).get(ANNOTATION_APPLIED)
    if ours is None or ours != theirs:
        return False
    return applied_still or covers(live, {k: v for k, v in wanted.items() if k != "status"})
