"""The commit protocol of a run's output: parts first, the manifest last.

A run's output directory (or prefix) holds part files named `part-<attempt>-<shard>-<n>.<ext>`, rejected
records under `_rejects/`, and `_manifest.json`. Readers trust a run only through its manifest, and only the
parts it lists:
- a run that dies before its manifest is written (a crash, kill -9) made nothing visible: its parts are listed
  nowhere;
- writing the manifest is the commit, and it is atomic: one PUT on S3 (an object is visible whole or not at
  all), a rename on a local filesystem;
- a retried run of the same scheduled time writes parts under its own attempt id, commits, and only then
  deletes the part files of that output that its manifest does not list (earlier attempts' leftovers): it
  replaces its own parts and nothing else. (A reader still reading the previous commit's parts at that moment
  finds them gone, and reads the manifest again.)
Sharded runs (an Indexed Job: shard i reads input files i, i+N, ...): each shard writes its parts, then its
shard record (`_shards/<token>/shard-<i>.json`, atomically) listing them; a shard that then finds the records of
all N shards of its token merges them into the manifest and commits. The last shard to finish commits; if two
finish together, both write the same manifest (the merge is deterministic), so the second commit changes
nothing. One execution of a run at a time (the CronJob's concurrencyPolicy Forbid): a commit deletes the part
files it does not list, which would include a concurrent execution's.
Shards may run different models: a canary by key is two shards, stable scoring keys [w x 100, 10000) and the
candidate [0, w x 100), each reading every input file. The merge then lists each model (`models`) and what each
shard scored (`shares`), and refuses to commit shards whose output schemas differ (SchemaMismatch: one run's parts
have one schema) or two shards that scored the same keys of the same input file (InvalidSettings: those records
would be in the output twice). A shadow run's comparison is merged from the shards' sums (modelserver.batch.compare).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyarrow import fs

from modelrollout_contract.batch import (
    MANIFEST_NAME,
    Column,
    ComparisonSums,
    Counts,
    FileRef,
    KeyRange,
    Manifest,
    ModelRef,
    PredictionSummary,
    ShardRecord,
    Share,
)
from modelrollout_contract.sticky import BUCKETS
from modelserver import __version__
from modelserver.batch.compare import merge_sums, summarise
from modelserver.batch.errors import BatchError
from modelserver.batch.sketch import DDSketch
from modelserver.batch.uris import Location

EXTENSION = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}
REJECTS_DIR = "_rejects"
SHARDS_DIR = "_shards"


class PartWriter:
    """Writes batches into part files of at most `part_rows` rows each, under `directory` of `location`."""

    def __init__(
        self, location: Location, directory: str, *, prefix: str, data_format: str, schema: pa.Schema, part_rows: int
    ) -> None:
        self.location = location
        self.directory = directory
        self.prefix = prefix
        self.data_format = data_format
        self.schema = schema
        self.part_rows = part_rows
        self.parts: list[FileRef] = []
        self._stream: pa.NativeFile | None = None
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self._rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        start = 0
        while start < batch.num_rows:
            if self._stream is None or self._rows >= self.part_rows:
                self._roll()
            take = min(batch.num_rows - start, self.part_rows - self._rows)
            self._write(batch.slice(start, take))
            self._rows += take
            start += take

    def _path(self, n: int) -> str:
        return f"{self.directory}/{self.prefix}-{n:05d}.{EXTENSION[self.data_format]}"

    def _roll(self) -> None:
        self._finish()
        path = self._path(len(self.parts))
        if not self.parts and self.location.scheme != "s3":  # S3 has no directories (pyarrow would add a marker)
            self.location.filesystem.create_dir(self.directory, recursive=True)
        self._stream = self.location.filesystem.open_output_stream(path)
        if self.data_format == "parquet":
            self._writer = pq.ParquetWriter(self._stream, self.schema)
        elif self.data_format == "csv":
            self._writer = pacsv.CSVWriter(self._stream, self.schema)
        self.parts.append(FileRef(path=self.location.uri(path), rows=0))
        self._rows = 0

    def _write(self, batch: pa.RecordBatch) -> None:
        if self._writer is not None:
            self._writer.write_batch(batch)
        elif self._stream is not None:  # jsonl
            self._stream.write(b"".join(orjson.dumps(row) + b"\n" for row in batch.to_pylist()))

    def _finish(self) -> None:
        if self._stream is None:
            return
        if self._writer is not None:
            self._writer.close()
        self._stream.close()
        last = self.parts[-1]
        size = self.location.filesystem.get_file_info(last.path.removeprefix("s3://")).size or 0
        self.parts[-1] = FileRef(path=last.path, rows=self._rows, bytes=size)
        self._stream = self._writer = None

    def close(self) -> list[FileRef]:
        self._finish()
        return self.parts


def manifest_path(location: Location) -> str:
    return location.join(MANIFEST_NAME)


def _write_whole(location: Location, path: str, body: bytes, *, tag: str) -> None:
    """Visible whole or not at all: one PUT on S3, a write aside and a rename on a local filesystem."""
    filesystem = location.filesystem
    try:
        if location.scheme == "s3":
            with filesystem.open_output_stream(path) as out:  # one object, visible whole on close
                out.write(body)
        else:
            filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
            partial = f"{path}.{tag}.tmp"
            with filesystem.open_output_stream(partial) as out:
                out.write(body)
            filesystem.move(partial, path)  # rename: atomic on one filesystem
    except OSError as exc:
        raise BatchError("StorageError", f"cannot write {location.uri(path)}: {exc}") from exc


def commit(location: Location, manifest: Manifest) -> str:
    """Write the manifest (the commit), then delete the part files it does not list; its URI."""
    path = manifest_path(location)
    _write_whole(location, path, manifest.model_dump_json(by_alias=True, indent=2).encode(), tag=manifest.attempt)
    filesystem = location.filesystem
    listed = {ref.path for ref in (*manifest.parts, *manifest.rejects)}
    for stale in _parts(location):
        if location.uri(stale) not in listed:
            filesystem.delete_file(stale)
    return location.uri(path)


def _parts(location: Location) -> Iterable[str]:
    """Part files of the output (and of its rejects), whichever attempt wrote them."""
    for directory in (location.path, location.join(REJECTS_DIR)):
        selector = fs.FileSelector(directory, recursive=False, allow_not_found=True)
        for info in location.filesystem.get_file_info(selector):
            if info.type == fs.FileType.File and info.base_name.startswith("part-"):
                yield info.path


def write_shard_record(location: Location, record: ShardRecord) -> None:
    path = location.join(SHARDS_DIR, record.token, f"shard-{record.shard:05d}.json")
    _write_whole(location, path, record.model_dump_json(by_alias=True).encode(), tag=record.attempt)


def shard_records(location: Location, token: str, shards: int) -> list[ShardRecord] | None:
    """Every shard's record of execution `token`, in shard order, once all `shards` are there; else None."""
    selector = fs.FileSelector(location.join(SHARDS_DIR, token), allow_not_found=True)
    found: dict[int, ShardRecord] = {}
    for info in location.filesystem.get_file_info(selector):
        if info.type == fs.FileType.File and info.base_name.startswith("shard-") and info.base_name.endswith(".json"):
            with location.filesystem.open_input_stream(info.path) as stream:
                record = ShardRecord.model_validate(json.loads(stream.read()))
            found[record.shard] = record
    if sorted(found) != list(range(shards)):
        return None
    return [found[i] for i in range(shards)]


def _model_name(model: ModelRef) -> str:
    return f"{model.name} {model.version}"


def _columns(columns: list[Column]) -> str:
    return ", ".join(f"{c.name} ({c.type})" for c in columns) or "none"


def _check_schemas(records: list[ShardRecord]) -> None:
    """One run, one output schema: shards whose models write different columns cannot share a manifest."""
    first = records[0]
    for record in records[1:]:
        if record.output_schema == first.output_schema:
            continue
        mine, theirs = set(first.output_schema), set(record.output_schema)
        only_first = [c for c in first.output_schema if c not in theirs]
        only_this = [c for c in record.output_schema if c not in mine]
        differing = (
            f"only shard {first.shard} ({_model_name(first.model)}) has {_columns(only_first)}; "
            f"only shard {record.shard} ({_model_name(record.model)}) has {_columns(only_this)}"
            if only_first or only_this
            else "the same columns in another order"
        )
        raise BatchError("SchemaMismatch", f"the shards' output schemas differ, so their parts cannot make one run: "
                         f"{differing}")  # fmt: skip


def _span(keys: KeyRange | None) -> tuple[int, int]:
    return (0, BUCKETS) if keys is None else (keys.start, keys.end)


def _check_disjoint(records: list[ShardRecord]) -> None:
    """No record scored twice: two shards that read one input file must have selected disjoint key ranges."""
    for i, one in enumerate(records):
        files = {ref.path for ref in one.inputs}
        low, high = _span(one.keys)
        for other in records[i + 1 :]:
            shared = files.intersection(ref.path for ref in other.inputs)
            other_low, other_high = _span(other.keys)
            if shared and low < other_high and other_low < high:
                raise BatchError("InvalidSettings", f"shards {one.shard} and {other.shard} both scored keys "
                                 f"[{max(low, other_low)}, {min(high, other_high)}) of {min(shared)}: their records "
                                 "would be in the output twice (set input_shards or disjoint key ranges)")  # fmt: skip


def _comparison(records: list[ShardRecord]) -> ComparisonSums | None:
    pieces = [r.comparison for r in records if r.comparison is not None]
    if not pieces:
        return None
    if len(pieces) != len(records):
        raise BatchError("InvalidSettings", "some shards of the run compare with a reference model and some do not")
    try:
        return merge_sums(pieces)
    except ValueError as exc:
        raise BatchError("InvalidSettings", str(exc)) from exc


def merge(records: list[ShardRecord]) -> Manifest:
    """The run's manifest from its shards' records (one record for an unsharded run). Deterministic: the same
    records always give the same manifest. Raises BatchError when the records cannot make one run."""
    first = records[0]
    _check_schemas(records)
    _check_disjoint(records)
    comparison = _comparison(records)
    models: list[ModelRef] = []
    for record in records:
        if record.model not in models:
            models.append(record.model)
    labels: dict[str, int] = {}
    sketch: DDSketch | None = None
    for record in records:
        for label, n in (record.summary.labels or {}).items():
            labels[label] = labels.get(label, 0) + n
        if record.summary.score is not None:
            piece = DDSketch.from_wire(record.summary.score)
            if sketch is None:
                sketch = piece
            else:
                sketch.merge(piece)
    classifier = any(record.summary.labels is not None for record in records)
    return Manifest(
        run=first.run,
        attempt=first.attempt if len(records) == 1 else first.token,
        model=first.model,
        scorer=__version__,
        # Once each: every model's shard of a canary by key reads every file.
        inputs=sorted({ref.path: ref for r in records for ref in r.inputs}.values(), key=lambda ref: ref.path),
        parts=[ref for r in records for ref in r.parts],
        rejects=[ref for r in records for ref in r.rejects],
        counts=Counts(
            read=sum(r.counts.read for r in records),
            scored=sum(r.counts.scored for r in records),
            rejected=sum(r.counts.rejected for r in records),
        ),
        output_schema=first.output_schema,
        ignored_columns=first.ignored_columns,
        summary=PredictionSummary(
            labels=dict(sorted(labels.items())) if classifier else None,
            score=sketch.to_wire() if sketch is not None else None,
        ),
        started=min(r.started for r in records),
        finished=max(r.finished for r in records),
        shards=first.shards,
        models=models,
        shares=[Share(shard=r.shard, model=r.model, keys=r.keys, counts=r.counts) for r in records],
        comparison=summarise(comparison) if comparison is not None else None,
    )


def read_manifest(location: Location) -> Manifest | None:
    """The committed run at `location`, or None when no run committed there."""
    path = manifest_path(location)
    if location.filesystem.get_file_info(path).type != fs.FileType.File:
        return None
    with location.filesystem.open_input_stream(path) as stream:
        return Manifest.model_validate(json.loads(stream.read()))
