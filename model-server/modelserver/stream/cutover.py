"""Which revision scores which record across the weight changes of a stream rollout (the protocol is told in
modelrollout_contract.stream): the cutovers of each partition, how the leader chooses them, how any other
consumer decides a record only once the cutover governing its offset is known, and the cutovers carried in a
committed offset's metadata. Pure: the consumer's loop does the I/O (modelserver.stream.coordination)."""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from modelrollout_contract.sticky import BUCKETS
from modelrollout_contract.stream import ShareDocument

log = logging.getLogger(__name__)

METADATA_PREFIX = "mr1:"
# Kafka refuses an offset commit whose metadata is longer than offset.metadata.max.bytes (4096 by default).
METADATA_MAX_CHARS = 3800
STEP = BUCKETS // 100

Partition = tuple[str, int]


@dataclass(frozen=True, slots=True, order=True)
class Cutover:
    """From `offset` on (until the next cutover) `follower` scores the buckets below percent x 100 and `leader` the
    others; `final`: the pair's shares change no more."""

    offset: int
    epoch: int
    percent: int
    leader: str
    follower: str | None
    final: bool

    def scores(self, revision: str, bucket: int) -> bool:
        if revision == self.leader:
            return bucket >= self.percent * STEP
        if revision == self.follower:
            return bucket < self.percent * STEP
        return False

    @classmethod
    def of(cls, document: ShareDocument, offset: int) -> Cutover:
        follower = document.follower.revision if document.follower is not None else None
        return cls(offset, document.epoch, document.percent, document.leader.revision, follower, document.final)

    def row(self) -> list[object]:
        return [self.epoch, self.offset, self.percent, self.leader, self.follower or "", int(self.final)]


def encode(cutovers: Sequence[Cutover]) -> str:
    """The metadata of a committed offset: the newest cutovers that fit (the oldest is dropped first)."""
    rows = [c.row() for c in cutovers]
    while True:
        text = METADATA_PREFIX + json.dumps(rows, separators=(",", ":"))
        if len(text) <= METADATA_MAX_CHARS or len(rows) <= 1:
            return text
        rows = rows[1:]


def decode(text: str | None) -> list[Cutover]:
    """The cutovers in a committed offset's metadata; none for metadata that is not ours (another tool committed
    the offset) or is malformed, which is logged."""
    if not text or not text.startswith(METADATA_PREFIX):
        return []
    try:
        rows = json.loads(text[len(METADATA_PREFIX) :])
        return sorted(
            Cutover(
                int(offset), int(epoch), int(percent), str(leader), str(follower) if follower else None, bool(final)
            )
            for epoch, offset, percent, leader, follower, final in rows
        )
    except (ValueError, TypeError) as exc:
        log.warning("ignoring malformed cutovers in an offset's metadata (%s): %.200s", exc, text)
        return []


@dataclass
class History:
    """One partition's cutovers, by offset. At one offset the later epoch governs."""

    cutovers: list[Cutover] = field(default_factory=list)

    @property
    def last(self) -> Cutover | None:
        return self.cutovers[-1] if self.cutovers else None

    def at(self, offset: int) -> Cutover | None:
        """The cutover governing `offset`: the last one at or before it."""
        index = bisect.bisect_right(self.cutovers, (offset, float("inf")), key=lambda c: (c.offset, c.epoch))
        return self.cutovers[index - 1] if index else None

    def add(self, cutover: Cutover) -> None:
        last = self.last
        if last is not None and (cutover.offset, cutover.epoch) <= (last.offset, last.epoch):
            raise ValueError(f"cutover {cutover} is not after {last}")
        self.cutovers.append(cutover)

    def merge(self, cutovers: Iterable[Cutover]) -> None:
        """Add committed cutovers (the leader's, or this group's own after a restart): one per epoch."""
        by_epoch = {c.epoch: c for c in self.cutovers}
        by_epoch.update((c.epoch, c) for c in cutovers)
        self.cutovers = sorted(by_epoch.values(), key=lambda c: (c.offset, c.epoch))

    def drop_from(self, offset: int) -> None:
        """Forget cutovers at or after `offset`: chosen for a batch whose transaction was aborted."""
        self.cutovers = [c for c in self.cutovers if c.offset < offset]


@dataclass(frozen=True, slots=True)
class Placed:
    partition: Partition
    offset: int
    bucket: int


@dataclass
class Decision:
    """Of a batch: per record whether it is decided and, if so, whether this revision scores it; per partition
    the offset to seek back to (its first undecided record), and the cutovers this batch chose (the leader's)."""

    decided: list[bool] = field(default_factory=list)
    mine: list[bool] = field(default_factory=list)
    seek: dict[Partition, int] = field(default_factory=dict)
    chosen: dict[Partition, Cutover] = field(default_factory=dict)
    waiting: str | None = None


class Shares:
    """A consumer's view of one stream rollout: the share document in force, every owned partition's cutovers,
    and, unless it leads, the leader group's committed offsets (which the loop refreshes)."""

    def __init__(self, revision: str) -> None:
        self.revision = revision
        self.document: ShareDocument | None = None
        self.histories: dict[Partition, History] = {}
        self.leader_committed: dict[Partition, int] = {}
        self._refused: set[int] = set()

    def history(self, partition: Partition) -> History:
        return self.histories.setdefault(partition, History())

    @property
    def leads(self) -> bool:
        return self.document is not None and self.document.leader.revision == self.revision

    def use(self, document: ShareDocument) -> bool:
        """Take a newer document; an older epoch (a stale read) is ignored. True when it changed."""
        if self.document is not None and document.epoch < self.document.epoch:
            log.warning("ignoring share document epoch %d: epoch %d is in force", document.epoch,
                        self.document.epoch)  # fmt: skip
            return False
        changed = document != self.document
        self.document = document
        return changed

    def learn_leader(self, partition: Partition, committed: int | None, metadata: str | None) -> None:
        """The leader group's committed offset of `partition` and its cutovers."""
        if committed is None or committed < 0:
            self.leader_committed.pop(partition, None)
        else:
            self.leader_committed[partition] = committed
        self.history(partition).merge(decode(metadata))

    def decide(self, records: Sequence[Placed]) -> Decision:
        """Per record, in order: decided or not (a partition stops at its first undecided record, the rest of it
        is read again), and whether it is this revision's."""
        done = Decision()
        stopped: set[Partition] = set()
        for record in records:
            where = record.partition
            governing = None if where in stopped else self._governing(record, done)
            if governing is None:
                if where not in stopped:
                    stopped.add(where)
                    done.seek[where] = record.offset
                done.decided.append(False)
                done.mine.append(False)
                continue
            done.decided.append(True)
            done.mine.append(governing.scores(self.revision, record.bucket))
        return done

    def _governing(self, record: Placed, done: Decision) -> Cutover | None:
        """The cutover this consumer may act on for the record, None while it must wait; a leader chooses a
        cutover for the document's epoch at the first record it processes after reading it."""
        document = self.document
        if document is None:
            done.waiting = "no share document yet"
            return None
        history = self.history(record.partition)
        if self.leads:
            chosen = self._cut(history, document, record.offset)
            if chosen is not None:
                done.chosen[record.partition] = chosen
            governing = history.at(record.offset)
            if governing is None or not self._own_era(history, governing, record.offset):
                done.waiting = "the previous leader's final cutover is not known"
                return None
            return governing
        governing = history.at(record.offset)
        if record.offset < self.leader_committed.get(record.partition, 0):
            return governing or _NOBODY
        if governing is not None and governing.final:
            return governing
        done.waiting = "the leader has not committed this far"
        return None

    def _own_era(self, history: History, governing: Cutover, offset: int) -> bool:
        """A leader acts on its own cutovers; on records past the final cutover that made it the serving revision
        (it was the follower, promoted); and on records before such a cutover, whose cutovers are all known (the
        previous leader committed them before it)."""
        if governing.leader == self.revision or self._promoted(governing):
            return True
        return any(self._promoted(c) and c.offset > offset for c in history.cutovers)

    def _promoted(self, cutover: Cutover) -> bool:
        return cutover.final and cutover.percent == 100 and cutover.follower == self.revision

    def _cut(self, history: History, document: ShareDocument, offset: int) -> Cutover | None:
        """The leader's cutover for the document's epoch at `offset`, if the partition has none yet."""
        last = history.last
        if last is not None and last.epoch >= document.epoch:
            return None
        if last is not None and last.leader != self.revision and not self._promoted(last):
            return None  # a promoted leader takes over only past its predecessor's final cutover
        if last is not None and last.leader == self.revision and last.final and last.percent == 100:
            self._refuse(document, f"its leader gave every record to its follower for good at epoch {last.epoch}")
            return None
        if last is not None and last.offset > offset:
            return None  # behind a cutover already chosen (a promoted leader catching up to its final one)
        cutover = Cutover.of(document, offset)
        if last is not None and last.final and last.leader == cutover.leader and last.follower == cutover.follower:
            self._refuse(document, f"{last.leader} and {last.follower}'s shares are final since epoch {last.epoch}")
            return None
        history.add(cutover)
        return cutover

    def _refuse(self, document: ShareDocument, why: str) -> None:
        """A document that would score records twice: logged once per epoch, and not acted on."""
        if document.epoch not in self._refused:
            self._refused.add(document.epoch)
            log.error("share document epoch %d is not acted on: %s", document.epoch, why)

    def pending_cuts(self, positions: dict[Partition, int]) -> dict[Partition, Cutover]:
        """A leader's cutovers for idle partitions (no record to process) at their positions, so that a follower
        and the operator see the epoch reach every partition."""
        if not self.leads or self.document is None:
            return {}
        chosen = {}
        for partition, position in positions.items():
            cutover = self._cut(self.history(partition), self.document, position)
            if cutover is not None:
                chosen[partition] = cutover
        return chosen

    def forget(self, chosen: dict[Partition, Cutover]) -> None:
        """Cutovers of an aborted batch: chosen again when it is read again."""
        for partition, cutover in chosen.items():
            self.history(partition).drop_from(cutover.offset)

    def metadata(self, partition: Partition) -> str:
        """Every cutover of the partition that fits: a follower far behind the leader needs the old ones."""
        return encode(self.history(partition).cutovers)

    def epoch_at(self, partition: Partition, position: int) -> int | None:
        """The epoch of the cutover governing `position` (this consumer has processed every record before it)."""
        governing = self.history(partition).at(position)
        return None if governing is None else governing.epoch


# Below the leader's committed offset with no cutover at all: records before the rollout's first cutover, which
# the leader scored alone; nobody else scores them.
_NOBODY = Cutover(0, -1, 0, "", None, False)
