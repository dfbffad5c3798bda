"""The operator's in-memory copy of the objects it reads, fed by watch events (`kube.informer`) and by the answers
to its own writes. Pure: no I/O; the informer and the reconciler tell it what they saw.

What it keeps of an object is only what a pass reads, as compact JSON bytes (a parsed Deployment costs several
times its text in Python objects; a pass decodes the handful it needs): no managedFields, no client-side apply
annotation, and of a pod nothing of its spec. Entries are looked up by name and by the ModelDeployment that
labels them (`modelrollout.io/name`).

Freshness: a watch delivers every change in order, but the answer to our own write arrives before the watch
event of that same change, and an event of an older change may still be in flight. An entry is replaced only by
a newer resourceVersion (compared as the etcd revision numbers they are; an unparsable one is taken as newer), so
our write's answer is never rolled back by a stale event, and the event of our own write, arriving after its
answer, changes nothing (no pass is triggered by an echo of what we did; when the event wins the race against the
answer, it is the one change, and the pass it starts finds nothing to do)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from modelrollout.planning.names import LABEL_NAME

ChangeType = Literal["added", "modified", "deleted"]
Key = tuple[str, str]  # namespace, name
# Set by `kubectl apply` (client-side): a copy of the whole object, read by nothing here.
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True, slots=True)
class Applied:
    """What our last apply of an object left: the hash of what we sent, and the object's generation after it
    (its resourceVersion for kinds without a generation). While both still hold, nobody changed the object's
    spec since: the next pass need not send it again."""

    digest: str
    generation: int | None
    resource_version: str


@dataclass(slots=True)
class Entry:
    raw: bytes
    uid: str
    resource_version: str
    generation: int | None
    owner: str | None  # the modelrollout.io/name label
    labels: dict[str, str]
    applied: Applied | None = None

    def object(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.raw)
        return decoded

    def applied_still(self, digest: str) -> bool:
        """Our last apply sent `digest`, and the object has not changed since (same uid implied by the entry)."""
        mark = self.applied
        if mark is None or mark.digest != digest:
            return False
        if mark.generation is not None:
            return self.generation == mark.generation
        return self.resource_version == mark.resource_version


@dataclass(frozen=True, slots=True)
class Change:
    type: ChangeType
    namespace: str
    name: str
    owner: str | None
    before: dict[str, Any] | None  # the previous content (None when added)
    after: dict[str, Any] | None  # None when deleted

    def only_status(self) -> bool:
        """Whether only status (or bookkeeping metadata) changed: the controller's report, not an edit."""
        if self.before is None or self.after is None:
            return False
        return _content(self.before) == _content(self.after)


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "generation")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def slim(obj: dict[str, Any], *, keep_spec: bool = True) -> dict[str, Any]:
    """What the index keeps of `obj`: everything a pass may read."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and _LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
    kept = {k: v for k, v in obj.items() if keep_spec or k != "spec"}
    kept["metadata"] = meta
    return kept


def newer(candidate: str, current: str) -> bool:
    """Whether resourceVersion `candidate` is later than `current`. The API server's are etcd revisions (integers
    that only grow); anything else is taken as newer, as a watch's next event always is."""
    if candidate.isdigit() and current.isdigit():
        return int(candidate) > int(current)
    return candidate != current


class ObjectIndex:
    """One kind's objects (in the namespaces watched), by name and by the ModelDeployment that labels them."""

    def __init__(self, kind: str, *, keep_spec: bool = True) -> None:
        self.kind = kind
        self._keep_spec = keep_spec
        self._entries: dict[Key, Entry] = {}
        self._owned: dict[Key, set[str]] = {}  # (namespace, owner) -> names

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> Iterator[Key]:
        return iter(list(self._entries))

    def entry(self, namespace: str, name: str) -> Entry | None:
        return self._entries.get((namespace, name))

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._entries.get((namespace, name))
        return found.object() if found is not None else None

    def labelled_by(self, namespace: str, owner: str) -> list[dict[str, Any]]:
        """The objects labelled `modelrollout.io/name: <owner>` in `namespace`, in name order."""
        names = sorted(self._owned.get((namespace, owner), ()))
        return [self._entries[(namespace, name)].object() for name in names]

    def matching(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The objects carrying all of `labels` (which name their owner, as every selector of ours does)."""
        owner = labels.get(LABEL_NAME)
        if owner is None:
            raise ValueError(f"a {self.kind} lookup needs the {LABEL_NAME} label; got {labels}")
        names = sorted(self._owned.get((namespace, owner), ()))
        found = (self._entries[(namespace, name)] for name in names)
        return [entry.object() for entry in found if labels.items() <= entry.labels.items()]

    # --- what the watch and our writes tell it --------------------------------------------------------------

    def upsert(self, obj: dict[str, Any]) -> Change | None:
        """An object as read (a list, a watch event, our write's answer). None when it is not newer than what
        the index has (an echo of our own write, a stale event)."""
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        rv = str(meta.get("resourceVersion", ""))
        current = self._entries.get(key)
        if current is not None and not newer(rv, current.resource_version):
            return None
        before = current.object() if current is not None else None
        kept = slim(obj, keep_spec=self._keep_spec)
        labels = dict(meta.get("labels") or {})
        entry = Entry(
            raw=json.dumps(kept, separators=(",", ":")).encode(),
            uid=str(meta.get("uid", "")),
            resource_version=rv,
            generation=meta.get("generation"),
            owner=labels.get(LABEL_NAME),
            labels=labels,
            applied=current.applied if current is not None and current.uid == meta.get("uid") else None,
        )
        self._remove(key)
        self._entries[key] = entry
        if entry.owner is not None:
            self._owned.setdefault((key[0], entry.owner), set()).add(key[1])
        return Change("added" if before is None else "modified", key[0], key[1], entry.owner, before, kept)

    def delete(self, obj: dict[str, Any]) -> Change | None:
        """A DELETED event (or our own delete): the entry goes, unless it is already a newer object of that name."""
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        current = self._entries.get(key)
        if current is None or (meta.get("uid") and current.uid != meta.get("uid")):
            return None
        before = current.object()
        self._remove(key)
        return Change("deleted", key[0], key[1], current.owner, before, None)

    def record_applied(self, answer: dict[str, Any], digest: str) -> Change | None:
        """Our apply's answer: the object as it is now, and that `digest` is what we sent."""
        change = self.upsert(answer)
        meta = answer["metadata"]
        entry = self._entries.get((meta.get("namespace", ""), meta["name"]))
        if entry is not None and entry.uid == meta.get("uid"):
            entry.applied = Applied(digest, meta.get("generation"), str(meta.get("resourceVersion", "")))
        return change

    def replace(self, objs: Iterable[dict[str, Any]], *, namespace: str | None = None) -> list[Change]:
        """A fresh LIST (the first, or after a watch could not resume): what changed since the index last knew,
        including what went while nobody watched. `namespace`: the list covered that namespace only."""
        changes: list[Change] = []
        listed: set[Key] = set()
        for obj in objs:
            meta = obj.get("metadata", {})
            listed.add((meta.get("namespace", ""), meta["name"]))
            change = self.upsert(obj)
            if change is not None:
                changes.append(change)
        for key in [k for k in self._entries if k not in listed and (namespace is None or k[0] == namespace)]:
            gone = self.delete({"metadata": {"namespace": key[0], "name": key[1]}})
            if gone is not None:
                changes.append(gone)
        return changes

    def _remove(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry.owner is not None:
            names = self._owned.get((key[0], entry.owner))
            if names is not None:
                names.discard(key[1])
                if not names:
                    del self._owned[(key[0], entry.owner)]
