"""Which files a run reads, and reading them in record batches (flat memory whatever the input's size)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs

from modelrollout_contract.batch import FileRef
from modelserver.batch.errors import BatchError
from modelserver.batch.uris import Location

EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
              ".json": "jsonl"}  # fmt: skip
READAHEAD = 2  # batches decoded ahead of the one being scored
_DATASET_FORMATS = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}


@dataclass(frozen=True)
class Input:
    location: Location
    files: tuple[fs.FileInfo, ...]  # this shard's
    data_format: str
    every_file: tuple[fs.FileInfo, ...]  # the whole input's (every shard checks the same schema)

    def refs(self) -> list[FileRef]:
        return [FileRef(path=self.location.uri(f.path), bytes=f.size or 0) for f in self.files]

    def dataset(self, files: tuple[fs.FileInfo, ...]) -> ds.Dataset:
        return ds.dataset(
            [f.path for f in files], format=_DATASET_FORMATS[self.data_format], filesystem=self.location.filesystem
        )

    def schema(self) -> pa.Schema:
        """The schema of the input's first file, for every shard alike."""
        return self.dataset(self.every_file[:1]).schema

    def batches(self, rows: int) -> Iterator[pa.RecordBatch]:
        """Flat memory: one file and a couple of batches read ahead, not the scanner's defaults (4 files, 16
        batches), which held 3.5 GB at 10M rows in 1M-row parquet row groups (bench/results/batch.md). A parquet
        row group is still decoded whole: the largest one bounds what a run holds."""
        if self.files:  # a shard may get no file at all (more shards than files)
            scan = self.dataset(self.files).to_batches(batch_size=rows, batch_readahead=READAHEAD, fragment_readahead=1)
            yield from scan


def _format_of(path: str) -> str | None:
    dot = path.rfind(".")
    return EXTENSIONS.get(path[dot:].lower()) if dot >= 0 else None


def _hidden(path: str, root: str) -> bool:
    """Names starting with _ or . are metadata (ours: _manifest.json, _rejects/; Spark's _SUCCESS)."""
    relative = path[len(root) :].strip("/")
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def open_input(location: Location, data_format: str, *, shard: int = 0, shards: int = 1) -> Input:
    """The input's data files (one file; or every data file under a directory or prefix, sorted), this shard's
    share of them (file i goes to shard i mod shards), and their format."""
    try:
        info = location.filesystem.get_file_info(location.path)
        if info.type == fs.FileType.File:
            found = [info]
        elif info.type == fs.FileType.Directory or location.scheme == "s3":
            selector = fs.FileSelector(location.path, recursive=True, allow_not_found=True)
            found = sorted(
                (f for f in location.filesystem.get_file_info(selector) if f.type == fs.FileType.File),
                key=lambda f: f.path,
            )
            found = [f for f in found if not _hidden(f.path, location.path) and _format_of(f.path) is not None]
        else:
            found = []
    except OSError as exc:
        raise BatchError("StorageError", f"cannot list input {location.uri()}: {exc}") from exc
    if not found:
        raise BatchError("StorageError", f"no input data files at {location.uri()}")
    formats = {_format_of(f.path) for f in found}
    if data_format == "auto":
        if len(formats) != 1 or None in formats:
            raise BatchError(
                "InvalidSettings",
                f"cannot tell the input format of {location.uri()} from its file names ({sorted(map(str, formats))}):"
                " set input_format",
            )
        data_format = str(formats.pop())
    return Input(location, tuple(found[shard::shards]), data_format, tuple(found))
