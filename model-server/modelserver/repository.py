"""The models one `modelserver serve` process serves: one (model_uri), or a repository of them.

A repository is a directory (`model_repository`: every directory in it, or one level further down, that holds a
`model-settings.json` is one model version: settings.ModelEntry) or a list (`models`). Every model in it is loaded
at start; a model that fails to load fails the start, naming it, as a single model does. Afterwards the Open
Inference Protocol's repository extension loads and unloads models by name without a restart: `load` reads the
repository again (a model added to the directory since is found; a model loaded again replaces its running copy
only once the new one is loaded and warmed up), `unload` stops serving every version of the name. With batching,
a copy unloaded or replaced answers the requests already queued for it (up to DRAIN_S); one that reaches it after
that gets 503 (ModelUnloaded) and, sent again, what is served now. Without batching a request that holds a copy is
answered by it.

Versions: `/v2/models/{name}/versions/{version}/...` asks for one; `/v2/models/{name}/...` gets the highest version
(numbers compared as numbers: version 10 is above version 9).

Memory bound (`max_memory_bytes`): before a load, the model's file size must fit in what the loaded models leave of
the bound; after it, the growth of the process's resident memory while loading (or the file size, if larger) must
too, or the new copy is dropped and the load refused (409) with the sizes. The runtime's code is imported before
the measure starts, but the estimate is the process's own: modules the model's unpickling imports for the first
time, and requests served while it loads, add to what the load is charged with.

The lookup of a request's model is one dict access (two with a version): the repository costs the single-model
path nothing measurable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError

from modelserver import storage
from modelserver.dataplane import Batching, DataPlane, Limits
from modelserver.errors import ModelLoadError, ModelNotFound, ServingError
from modelserver.runtimes import LoadOptions, detect_format, import_runtime, load_model, resolve_format
from modelserver.settings import ModelEntry, ServerSettings

log = logging.getLogger(__name__)

SETTINGS_FILE = "model-settings.json"
READY, UNAVAILABLE = "READY", "UNAVAILABLE"
MIB = 1024 * 1024
# How long a model unloaded or replaced under load keeps answering the requests already queued for it.
DRAIN_S = 5.0


class RepositoryRefusal(ServingError):
    """A repository request that cannot be done in the server's state (not the caller's input): 409."""

    status = 409
    reason = "repository"


class NotARepository(ServingError):
    """Load and unload asked of a server started with one model (model_uri)."""

    status = 400
    reason = "repository"


def build_dataplane(settings: ServerSettings) -> DataPlane:
    """Fetch (a no-op for local paths), load and wrap the model of `settings`; raises ModelLoadError with the
    reason."""
    path, model_format = resolve_format(storage.fetch_for(settings), settings.model_format)
    options = LoadOptions(
        feature_names=None if settings.feature_names is None else tuple(settings.feature_names),
        threads=settings.inference_threads,
        model_class=settings.model_class,
    )
    model = load_model(path, model_format, options)
    batching = (
        Batching(max_batch_size=settings.max_batch_size, max_wait_s=settings.max_batch_wait_ms / 1000)
        if settings.batching
        else None
    )
    return DataPlane(
        model,
        name=settings.model_name,
        version=settings.model_version,
        platform=model_format,
        limits=Limits(max_request_records=settings.max_request_records),
        batching=batching,
    )


# --- where the models are named -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """What a repository source holds now: valid entries, and what could not be read (where -> why)."""

    entries: list[ModelEntry]
    problems: dict[str, str]


class EntrySource(Protocol):
    def read(self) -> Listing:
        """The repository as it is now (blocking: run it in a thread)."""
        ...


class ListSource:
    """The server settings' `models`."""

    def __init__(self, entries: list[ModelEntry]) -> None:
        self.entries = entries

    def read(self) -> Listing:
        return Listing(list(self.entries), {})


class DirectorySource:
    """Every `model-settings.json` one or two levels under `root` (`root/churn/` or `root/churn/3/`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self) -> Listing:
        if not self.root.is_dir():
            return Listing([], {str(self.root): "the model repository is not a directory"})
        entries: list[ModelEntry] = []
        problems: dict[str, str] = {}
        seen: dict[tuple[str, str], Path] = {}
        files = sorted([*self.root.glob(f"*/{SETTINGS_FILE}"), *self.root.glob(f"*/*/{SETTINGS_FILE}")])
        for path in files:
            where = str(path.relative_to(self.root).parent)
            try:
                entry = ModelEntry.model_validate_json(path.read_bytes()).relative_to(path.parent)
            except ValidationError as exc:
                problems[where] = _first_error(exc)
                continue
            except OSError as exc:
                problems[where] = f"cannot read {SETTINGS_FILE}: {exc.strerror}"
                continue
            key = (entry.name, entry.version)
            if key in seen:
                other = seen[key].relative_to(self.root).parent
                problems[where] = f"model {entry.name} version {entry.version} is also in {other}"
                continue
            seen[key] = path
            entries.append(entry)
        return Listing(entries, problems)


def source_for(settings: ServerSettings) -> EntrySource | None:
    if settings.model_repository is not None:
        return DirectorySource(settings.model_repository)
    if settings.models is not None:
        return ListSource(settings.models)
    return None


# --- the models served ----------------------------------------------------------------------------------------


@dataclass
class Loaded:
    plane: DataPlane
    entry: ModelEntry | None  # None: the single model of model_uri
    bytes: int  # memory charged to it
    download: Path | None = None  # the directory a remote model was fetched into, removed with the copy


Build = Callable[[ServerSettings], DataPlane]


class Repository:
    def __init__(
        self,
        settings: ServerSettings,
        source: EntrySource | None,
        *,
        build: Build = build_dataplane,
        resident_bytes: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self._build = build
        self._resident = resident_bytes or resident_memory
        self._loaded: dict[str, dict[str, Loaded]] = {}  # name -> version -> model
        self._default: dict[str, DataPlane] = {}  # name -> the highest version's plane
        self._lock = asyncio.Lock()  # one load or unload at a time

    # --- the request path ---------------------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> DataPlane:
        """The plane serving model `name` (at `version`, else its highest); ModelNotFound names what is served."""
        if version is None:
            plane = self._default.get(name)
            if plane is not None:
                return plane
        else:
            found = self._loaded.get(name, {}).get(version)
            if found is not None:
                return found.plane
        raise ModelNotFound(self._not_served(name, version))

    def _not_served(self, name: str, version: str | None) -> str:
        asked = name if version is None else f"{name} version {version}"
        served = ", ".join(f"{p.name} version {p.version}" for p in self.planes()) or "no model"
        return f"model {asked} is not served here (this server serves {_cut(served)})"

    def only(self) -> DataPlane | None:
        """The one model served, when there is exactly one (what /predict answers with)."""
        if len(self._default) == 1 and len(next(iter(self._loaded.values()))) == 1:
            return next(iter(self._default.values()))
        return None

    def planes(self) -> list[DataPlane]:
        return [loaded.plane for versions in self._loaded.values() for loaded in versions.values()]

    @property
    def ready(self) -> bool:
        return bool(self._loaded) and all(plane.ready for plane in self.planes())

    # --- life cycle ---------------------------------------------------------------------------------------

    async def start_single(self, *, warmup: bool) -> DataPlane:
        """Load the model of model_uri (fetched already by the parent process); raises ModelLoadError."""
        plane = self._build(self.settings)
        await plane.start(warmup=warmup)
        self._install(Loaded(plane, None, 0))
        return plane

    async def start_all(self) -> None:
        """Load every model of the repository; the first that fails raises ModelLoadError naming it."""
        assert self.source is not None
        listing = await asyncio.to_thread(self.source.read)
        if listing.problems:
            where, problem = next(iter(listing.problems.items()))
            raise ModelLoadError(f"model repository: {where}: {problem}")
        if not listing.entries:
            raise ModelLoadError("the model repository holds no model (a directory with a model-settings.json)")
        for entry in listing.entries:
            try:
                await self._load_entry(entry)
            except (ServingError, ModelLoadError, ValueError, OSError) as exc:
                message = exc.message if isinstance(exc, ServingError) else str(exc)
                raise ModelLoadError(f"model {entry.name} version {entry.version}: {message}") from exc

    async def stop(self) -> None:
        for plane in self.planes():
            await plane.stop()

    # --- the repository extension -------------------------------------------------------------------------

    async def index(self) -> list[dict[str, Any]]:
        """Every model version in the repository and every one served: name, version, state, reason."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        if self.source is not None:
            listing = await asyncio.to_thread(self.source.read)
            for entry in listing.entries:
                rows[(entry.name, entry.version)] = _row(entry.name, entry.version, UNAVAILABLE, "not loaded")
            for where, problem in listing.problems.items():
                rows[(where, "")] = _row(where, "", UNAVAILABLE, problem)
        for plane in self.planes():
            rows[(plane.name, plane.version)] = _row(plane.name, plane.version, READY if plane.ready else UNAVAILABLE)
        return [rows[key] for key in sorted(rows)]

    async def load(self, name: str) -> list[DataPlane]:
        """(Re)load every version of `name` the repository holds now; ServingError says why not."""
        source = self._source()
        async with self._lock:
            listing = await asyncio.to_thread(source.read)
            entries = [entry for entry in listing.entries if entry.name == name]
            if not entries:
                names = sorted({entry.name for entry in listing.entries})
                problems = "".join(f"; {where}: {why}" for where, why in listing.problems.items())
                held = _cut(", ".join(names)) or "nothing"
                raise ModelNotFound(f"the model repository has no model {name} (it holds {held}){problems}")
            planes = []
            for entry in entries:
                try:
                    planes.append(await self._load_entry(entry))
                except (ModelLoadError, ValueError, OSError) as exc:
                    raise RepositoryRefusal(f"model {name} version {entry.version} cannot be loaded: {exc}") from exc
            return planes

    async def unload(self, name: str) -> None:
        self._source()
        async with self._lock:
            versions = self._loaded.pop(name, None)
            if versions is None:
                raise ModelNotFound(self._not_served(name, None))
            self._default.pop(name, None)
            for loaded in versions.values():
                await loaded.plane.stop(drain_s=DRAIN_S)
                loaded.plane.metrics.forget()
                _remove_download(loaded.download)
            log.info("model unloaded", extra={"model": name, "versions": sorted(versions)})

    def _source(self) -> EntrySource:
        if self.source is None:
            raise NotARepository(
                "this server serves one model (model_uri): start it with model_repository or models to load and "
                "unload models"
            )
        return self.source

    # --- loading ------------------------------------------------------------------------------------------

    async def _load_entry(self, entry: ModelEntry) -> DataPlane:
        settings = self.settings.model_copy(update=entry.settings_update())
        # Fetched first (a remote model is downloaded into a directory of its own, removed when the copy goes),
        # so the bound is checked against the file as it is, wherever it came from.
        local = await asyncio.to_thread(storage.fetch_for, settings)
        download = local if local is not None and storage.is_remote(entry.uri) else None
        try:
            return await self._load_fetched(entry, settings, local, download)
        except BaseException:
            _remove_download(download)
            raise

    async def _load_fetched(
        self, entry: ModelEntry, settings: ServerSettings, local: Path | None, download: Path | None
    ) -> DataPlane:
        resolved = settings.model_copy(update={"model_uri": "" if local is None else str(local), "model_sha256": None})
        size = _file_size(resolved.model_uri)
        replaced = self._loaded.get(entry.name, {}).get(entry.version)
        in_use = self._in_use() - (replaced.bytes if replaced is not None else 0)
        bound = self.settings.max_memory_bytes
        if bound is not None and in_use + size > bound:
            raise RepositoryRefusal(self._too_large(entry, size, "its file", in_use, bound))
        await asyncio.to_thread(_import_runtime_of, entry)  # the runtime's own code is not the model's memory
        before = self._resident()
        plane = await asyncio.to_thread(self._build, resolved)
        charged = max(size, self._resident() - before)
        if bound is not None and in_use + charged > bound:
            raise RepositoryRefusal(self._too_large(entry, charged, "measured while loading", in_use, bound))
        await plane.start(warmup=self.settings.warmup)
        self._install(Loaded(plane, entry, charged, download))
        if replaced is not None:
            await replaced.plane.stop(drain_s=DRAIN_S)
            _remove_download(replaced.download)
        log.info(
            "model loaded",
            extra={"model": entry.name, "version": entry.version, "format": plane.platform, "bytes": charged},
        )
        return plane

    def _install(self, loaded: Loaded) -> None:
        plane = loaded.plane
        versions = self._loaded.setdefault(plane.name, {})
        versions[plane.version] = loaded
        self._default[plane.name] = versions[max(versions, key=version_order)].plane

    def _in_use(self) -> int:
        return sum(loaded.bytes for versions in self._loaded.values() for loaded in versions.values())

    def _too_large(self, entry: ModelEntry, need: int, how: str, in_use: int, bound: int) -> str:
        users = ", ".join(
            f"{name} {version} ({loaded.bytes / MIB:.1f} MiB)"
            for name, versions in self._loaded.items()
            for version, loaded in versions.items()
        )
        return (
            f"model {entry.name} version {entry.version} needs {need / MIB:.1f} MiB ({how}), and the models loaded "
            f"take {in_use / MIB:.1f} MiB of max_memory_bytes {bound / MIB:.1f} MiB"
            f"{f' ({_cut(users)})' if users else ''}: unload a model first, or raise max_memory_bytes"
        )


def version_order(version: str) -> tuple[tuple[int, int | str], ...]:
    """Versions in order, numbers as numbers: 2 < 10, 1.9 < 1.10; a number comes before text in one place."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[._-]", version))


def _remove_download(download: Path | None) -> None:
    """Remove what fetch() downloaded a remote model into (its own fresh directory)."""
    if download is not None:
        shutil.rmtree(download if download.is_dir() else download.parent, ignore_errors=True)


def _import_runtime_of(entry: ModelEntry) -> None:
    """Import the runtime `entry` will load with, when its format is known before fetching it."""
    model_format: str = entry.format
    if model_format == "auto":
        try:
            model_format = detect_format(Path(urlsplit(entry.uri).path))
        except ModelLoadError:
            return  # told once the file is fetched; the load reports it
    import_runtime(model_format)


def resident_memory() -> int:
    """This process's resident set size in bytes (Linux /proc; 0 elsewhere: no measured growth)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _file_size(uri: str) -> int:
    """The size of a local model file or directory (remote ones are measured once fetched: 0 here)."""
    path = Path(uri.removeprefix("file://")) if uri else None
    if path is None or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(child.stat().st_size for child in _files(path))


def _files(directory: Path) -> Iterator[Path]:
    return (child for child in directory.rglob("*") if child.is_file())


def _row(name: str, version: str, state: str, reason: str = "") -> dict[str, Any]:
    return {"name": name, "version": version, "state": state, "reason": reason}


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "json_invalid":
        return f"{SETTINGS_FILE} is not JSON: {first['msg']}"
    return f"{SETTINGS_FILE}: {where + ': ' if where else ''}{first['msg']}"


def _cut(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
