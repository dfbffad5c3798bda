"""One batch run, start to end: load the model (and a shadow run's reference model), check the input's schema
before anything is written, score in record batches into part files, commit with the manifest, push metrics, and
tell the operator how it ended (the container's termination message) and the shell (the exit code,
modelserver.batch.errors).

The run's time (settings.run_time) is an explicit one, else the one its CronJob's Job name carries, else now; the
URI templates' dates are that time in the run's time_zone. A run with a key range scores only the records whose key
falls in it (a canary by key: each model of the run is one shard). A run with a reference model has both models
answer every batch it reads once, writes the run's model's output only, and records the comparison in the manifest
and the termination message; the reference failing to load, or to find its features, fails the run."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from modelrollout_contract.batch import (
    TERMINATION_MESSAGE_LIMIT,
    Column,
    ComparisonSums,
    Counts,
    FileRef,
    KeyRange,
    Manifest,
    ModelRef,
    RunResult,
    ShardRecord,
)
from modelserver import storage
from modelserver.batch import metrics
from modelserver.batch.commit import REJECTS_DIR, PartWriter, commit, merge, shard_records, write_shard_record
from modelserver.batch.compare import Answers, Comparator
from modelserver.batch.errors import EXIT_CODES, BatchError
from modelserver.batch.keys import select
from modelserver.batch.scoring import Predictor, Scorer, Tally
from modelserver.batch.settings import BatchSettings
from modelserver.batch.sketch import DDSketch
from modelserver.batch.sources import Input, open_input
from modelserver.batch.uris import Location, fill, locate
from modelserver.batch.validate import check_schema
from modelserver.errors import ModelLoadError
from modelserver.runtimes import load_model, resolve_format
from modelserver.runtimes.base import LoadOptions, Model
from modelserver.settings import ModelSettings

log = logging.getLogger(__name__)


def _sha256(path: Path | None) -> str:
    """The artifact's digest for the manifest; '' for a custom class without a file, or a model directory."""
    return storage.sha256_of(path) if path is not None and path.is_file() else ""


def load(settings: ModelSettings, *, revision: str = "", what: str = "model") -> tuple[Model, ModelRef]:
    try:
        path, model_format = resolve_format(storage.fetch_for(settings), settings.model_format)
        names = None if settings.feature_names is None else tuple(settings.feature_names)
        model = load_model(path, model_format, LoadOptions(feature_names=names, model_class=settings.model_class))
    except ModelLoadError as exc:
        message = str(exc) if what == "model" else f"the {what}: {exc}"
        raise BatchError("ModelLoadFailed", message) from exc
    ref = ModelRef(
        name=settings.model_name,
        version=settings.model_version,
        revision=revision,
        sha256=_sha256(path),
        format=model_format,
    )
    return model, ref


def _attempt(settings: BatchSettings, started: datetime) -> str:
    return settings.attempt or f"{started.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


@dataclass
class _Shadow:
    """A shadow run's reference model answering the batches the run's model answers, and the comparison so far."""

    predictor: Predictor
    comparator: Comparator

    @classmethod
    def on(cls, model: Model, ref: ModelRef, schema: pa.Schema) -> _Shadow:
        """The reference model on this input; its features missing from the input fail the run, naming it."""
        try:
            checked = check_schema(schema, model.signature.feature_names, ())
        except BatchError as exc:
            raise BatchError(exc.reason, f"the reference model ({ref.name} {ref.version}): {exc.message}") from exc
        return cls(Predictor(model, checked.features), Comparator(ref))

    def compare(self, batch: pa.RecordBatch, candidate: Answers) -> None:
        self.comparator.add(candidate, self.predictor.answers(self.predictor(batch)))

    def sums(self, *, seconds: float) -> ComparisonSums:
        return self.comparator.sums(seconds=seconds, reference_seconds=self.predictor.seconds)


@dataclass(frozen=True)
class Finished:
    """How this process's run ended: the manifest (the committed run's, or this shard's part when another shard
    commits), its URI ('' when uncommitted), and what this pod reports: the same, or in a run of several models
    (a canary by key) the share of this pod's model alone, as the operator judges each model by its own records."""

    manifest: Manifest
    uri: str
    reported: Manifest
    keys: KeyRange | None


def score_run(settings: BatchSettings) -> tuple[Manifest, str]:
    """The run (or this shard of it); its manifest and the manifest's URI, which is '' for a shard that left the
    commit to the last one. Raises BatchError with the reason it could not complete."""
    finished = run(settings)
    return finished.manifest, finished.uri


def run(settings: BatchSettings) -> Finished:
    """score_run, with what this pod reports. Raises BatchError with the reason the run could not complete."""
    started = datetime.now(UTC)
    if settings.shard_index >= settings.shard_count:
        raise BatchError("InvalidSettings", f"shard_index {settings.shard_index} is not below shard_count "
                         f"{settings.shard_count}")  # fmt: skip
    when = settings.run_time()
    dated = settings.template_time(when)
    where = {"s3_endpoint_url": settings.s3_endpoint_url, "s3_region": settings.s3_region}
    source_at = locate(fill(settings.input_uri, dated), **where)
    output = locate(fill(settings.output_uri, dated), **where)
    model, ref = load(settings, revision=settings.revision)
    reference_settings = settings.reference_settings()
    reference = None if reference_settings is None else load(reference_settings, what="reference model")
    split = settings.input_split()
    source = open_input(source_at, settings.input_format, shard=settings.shard_index % split, shards=split)
    try:
        schema = source.schema()
    except (OSError, pa.ArrowInvalid) as exc:
        raise BatchError("StorageError", f"cannot read the input's schema at {source_at.uri()}: {exc}") from exc
    reference_features = () if reference is None else reference[0].signature.feature_names
    checked = check_schema(schema, model.signature.feature_names, settings.id_columns,
                           extra_columns=settings.extra_columns, key_column=settings.key_column,
                           also_read=reference_features)  # fmt: skip
    shadow = None if reference is None else _Shadow.on(*reference, schema)
    scorer = Scorer(model, checked, schema, model_name=ref.name, model_version=ref.version,
                    threshold=settings.threshold)  # fmt: skip
    attempt = _attempt(settings, started)
    try:
        written, rejected, tally = _score(settings, source, output, scorer, shadow, attempt=attempt)
    except (OSError, pa.ArrowInvalid) as exc:
        raise BatchError("StorageError", f"reading {source_at.uri()} or writing {output.uri()} failed: {exc}") from exc
    share = 100 * tally.rejected / tally.read if tally.read else 0.0
    if share > settings.max_invalid_percent:
        raise BatchError("TooManyInvalidRecords", f"{tally.rejected} of {tally.read} records invalid ({share:.2f}%), "
                         f"more than max_invalid_percent {settings.max_invalid_percent:g}")  # fmt: skip
    record = ShardRecord(
        run=when.isoformat(),
        token=settings.run_token or when.isoformat(),
        shard=settings.shard_index,
        shards=settings.shard_count,
        attempt=attempt,
        model=ref,
        inputs=source.refs(),
        parts=written,
        rejects=rejected,
        counts=Counts(read=tally.read, scored=tally.scored, rejected=tally.rejected),
        output_schema=[Column(name=f.name, type=str(f.type)) for f in scorer.output_schema],
        ignored_columns=list(checked.ignored),
        summary=tally.summary(),
        started=started,
        finished=datetime.now(UTC),
        keys=settings.key_range(),
        comparison=None if shadow is None else shadow.sums(seconds=scorer.predictor.seconds),
    )
    return _commit(settings, output, record)


def _score(
    settings: BatchSettings, source: Input, output: Location, scorer: Scorer, shadow: _Shadow | None, *, attempt: str
) -> tuple[list[FileRef], list[FileRef], Tally]:
    """Every batch of this shard's input read once: its key share kept, scored (and compared), written."""
    prefix = f"part-{attempt}-{settings.shard_index:05d}"
    parts = PartWriter(output, output.path, prefix=prefix, data_format=settings.output_format,
                       schema=scorer.output_schema, part_rows=settings.part_rows)  # fmt: skip
    rejects = PartWriter(output, output.join(REJECTS_DIR), prefix=prefix, data_format=settings.output_format,
                         schema=scorer.rejects_schema, part_rows=settings.part_rows)  # fmt: skip
    keys = settings.key_range()
    tally = Tally()
    for read in source.batches(settings.batch_rows):
        batch = read if keys is None else select(read, keys)
        if settings.max_records is not None:
            batch = batch.slice(0, settings.max_records - tally.read)  # a sample: the first records only
        predicted = scorer.predictor(batch)
        scored, rejected = scorer.write(batch, predicted, tally)
        if rejected is not None and settings.invalid_records == "fail":
            first = rejected.column("reason")[0].as_py()
            raise BatchError("TooManyInvalidRecords", f"{rejected.num_rows} invalid records in a batch, e.g. "
                             f"{first} (invalid_records is 'fail')")  # fmt: skip
        if shadow is not None:
            shadow.compare(batch, scorer.predictor.answers(predicted))
        parts.write(scored)
        if rejected is not None:
            rejects.write(rejected)
        if settings.max_records is not None and tally.read >= settings.max_records:
            break
    return parts.close(), rejects.close(), tally


def _commit(settings: BatchSettings, output: Location, record: ShardRecord) -> Finished:
    """Commit the run when this shard is its last (or only) one; else leave this shard's record for the last."""
    if settings.shard_count == 1:
        manifest = merge([record])
        return Finished(manifest, commit(output, manifest), manifest, record.keys)
    write_shard_record(output, record)
    records = shard_records(output, record.token, settings.shard_count)
    if records is None:  # this shard's part, uncommitted: the last shard commits the run
        mine = merge([record])
        return Finished(mine, "", mine, record.keys)
    manifest = merge(records)
    uri = commit(output, manifest)
    if len(manifest.models) == 1:
        return Finished(manifest, uri, manifest, record.keys)
    return Finished(manifest, uri, merge([r for r in records if r.model == record.model]), record.keys)


def result_of(manifest: Manifest, uri: str, duration_s: float, *, keys: KeyRange | None = None) -> RunResult:
    score = manifest.summary.score
    counted = f"scored {manifest.counts.scored} of {manifest.counts.read} records" + (
        f", rejected {manifest.counts.rejected}" if manifest.counts.rejected else ""
    )
    if keys is not None:
        counted += f" with keys [{keys.start}, {keys.end}) of {keys.column}"
    return RunResult(
        outcome="Succeeded",
        reason="Completed",
        message=counted if uri else f"{counted} (this shard's part; the last shard commits the run)",
        run=manifest.run,
        manifest=uri,
        counts=manifest.counts,
        duration_s=duration_s,
        labels=manifest.summary.labels,
        score_quantiles=score.quantiles if score is not None else {},
        keys=keys,
        comparison=manifest.comparison,
        histogram=DDSketch.from_wire(score).histogram() if score is not None else None,
    )


def termination_message(result: RunResult) -> str:
    """The result as JSON within Kubernetes' 4096 bytes: what does not fit goes (labels, then quantiles, then the
    histogram, then the message's tail); a shadow run's comparison, what the operator decides on, stays."""
    dropped: dict[str, Any] = {}
    for field in ("labels", "score_quantiles", "histogram"):
        text = result.model_copy(update=dropped).model_dump_json(by_alias=True, exclude_defaults=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        dropped[field] = {} if field == "score_quantiles" else None
    return result.model_copy(update={**dropped, "message": result.message[:500]}).model_dump_json(
        by_alias=True, exclude_defaults=True
    )


def main(settings: BatchSettings) -> int:
    """Run, report, and return the exit code."""
    begin = time.monotonic()
    try:
        finished = run(settings)
        result = result_of(finished.reported, finished.uri, time.monotonic() - begin, keys=finished.keys)
        log.info("run ended", extra={"manifest": finished.uri, "counts": finished.manifest.counts.model_dump()})
    except BatchError as exc:
        result = RunResult(outcome="Failed", reason=exc.reason, message=exc.message[:1500],
                           duration_s=time.monotonic() - begin)  # fmt: skip
        log.error("run failed: %s", exc.message, extra={"reason": exc.reason})
    except Exception as exc:
        result = RunResult(outcome="Failed", reason="Error", message=f"{type(exc).__name__}: {exc}"[:1500],
                           duration_s=time.monotonic() - begin)  # fmt: skip
        log.exception("run failed")
    _write_termination_log(settings.termination_log, termination_message(result))
    if settings.pushgateway_url:
        metrics.push(settings.pushgateway_url, result, model=settings.model_name, version=settings.model_version)
    return EXIT_CODES[result.reason]


def _write_termination_log(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:  # outside a pod there may be no /dev/termination-log: the exit code still tells
        log.warning("cannot write the run result to %s: %s", path, exc)
