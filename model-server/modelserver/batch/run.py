"""One batch run, start to end: load the model, check the input's schema before anything is written, score in
record batches into part files, commit with the manifest, push metrics, and tell the operator how it ended (the
container's termination message) and the shell (the exit code, modelserver.batch.errors)."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from modelrollout_contract.batch import (
    TERMINATION_MESSAGE_LIMIT,
    Column,
    Counts,
    Manifest,
    ModelRef,
    RunResult,
    ShardRecord,
)
from modelserver import storage
from modelserver.batch import metrics
from modelserver.batch.commit import REJECTS_DIR, PartWriter, commit, merge, shard_records, write_shard_record
from modelserver.batch.errors import EXIT_CODES, BatchError
from modelserver.batch.scoring import Scorer, Tally
from modelserver.batch.settings import BatchSettings
from modelserver.batch.sources import open_input
from modelserver.batch.uris import fill, locate
from modelserver.batch.validate import check_schema
from modelserver.errors import ModelLoadError
from modelserver.runtimes import load_model, resolve_format
from modelserver.runtimes.base import LoadOptions, Model

log = logging.getLogger(__name__)


def _sha256(path: Path | None) -> str:
    """The artifact's digest for the manifest; '' for a custom class without a file, or a model directory."""
    return storage.sha256_of(path) if path is not None and path.is_file() else ""


def load(settings: BatchSettings) -> tuple[Model, ModelRef]:
    try:
        path, model_format = resolve_format(storage.fetch_for(settings), settings.model_format)
        names = None if settings.feature_names is None else tuple(settings.feature_names)
        model = load_model(path, model_format, LoadOptions(feature_names=names, model_class=settings.model_class))
    except ModelLoadError as exc:
        raise BatchError("ModelLoadFailed", str(exc)) from exc
    ref = ModelRef(
        name=settings.model_name,
        version=settings.model_version,
        revision=settings.revision,
        sha256=_sha256(path),
        format=model_format,
    )
    return model, ref


def _attempt(settings: BatchSettings, started: datetime) -> str:
    return settings.attempt or f"{started.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def score_run(settings: BatchSettings) -> tuple[Manifest, str]:
    """The run (or this shard of it); its manifest and the manifest's URI, which is '' for a shard that left the
    commit to the last one. Raises BatchError with the reason it could not complete."""
    started = datetime.now(UTC)
    if settings.shard_index >= settings.shard_count:
        raise BatchError("InvalidSettings", f"shard_index {settings.shard_index} is not below shard_count "
                         f"{settings.shard_count}")  # fmt: skip
    when = settings.scheduled_time
    where = {"s3_endpoint_url": settings.s3_endpoint_url, "s3_region": settings.s3_region}
    source_at = locate(fill(settings.input_uri, when), **where)
    output = locate(fill(settings.output_uri, when), **where)
    model, ref = load(settings)
    source = open_input(source_at, settings.input_format, shard=settings.shard_index, shards=settings.shard_count)
    try:
        schema = source.schema()
    except (OSError, pa.ArrowInvalid) as exc:
        raise BatchError("StorageError", f"cannot read the input's schema at {source_at.uri()}: {exc}") from exc
    checked = check_schema(schema, model.signature.feature_names, settings.id_columns,
                           extra_columns=settings.extra_columns)  # fmt: skip
    scorer = Scorer(model, checked, schema, model_name=ref.name, model_version=ref.version,
                    threshold=settings.threshold)  # fmt: skip
    attempt = _attempt(settings, started)
    prefix = f"part-{attempt}-{settings.shard_index:05d}"
    parts = PartWriter(output, output.path, prefix=prefix, data_format=settings.output_format,
                       schema=scorer.output_schema, part_rows=settings.part_rows)  # fmt: skip
    rejects = PartWriter(output, output.join(REJECTS_DIR), prefix=prefix, data_format=settings.output_format,
                         schema=scorer.rejects_schema, part_rows=settings.part_rows)  # fmt: skip
    tally = Tally()
    try:
        for batch in source.batches(settings.batch_rows):
            scored, rejected = scorer.score(batch, tally)
            if rejected is not None and settings.invalid_records == "fail":
                first = rejected.column("reason")[0].as_py()
                raise BatchError("TooManyInvalidRecords", f"{rejected.num_rows} invalid records in a batch, e.g. "
                                 f"{first} (invalid_records is 'fail')")  # fmt: skip
            parts.write(scored)
            if rejected is not None:
                rejects.write(rejected)
        written, rejected_parts = parts.close(), rejects.close()
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
        rejects=rejected_parts,
        counts=Counts(read=tally.read, scored=tally.scored, rejected=tally.rejected),
        output_schema=[Column(name=f.name, type=str(f.type)) for f in scorer.output_schema],
        ignored_columns=list(checked.ignored),
        summary=tally.summary(),
        started=started,
        finished=datetime.now(UTC),
    )
    if settings.shard_count == 1:
        manifest = merge([record])
        return manifest, commit(output, manifest)
    write_shard_record(output, record)
    records = shard_records(output, record.token, settings.shard_count)
    if records is None:
        return merge([record]), ""  # this shard's part, uncommitted: the last shard commits the run
    manifest = merge(records)
    return manifest, commit(output, manifest)


def result_of(manifest: Manifest, uri: str, duration_s: float) -> RunResult:
    score = manifest.summary.score
    counted = f"scored {manifest.counts.scored} of {manifest.counts.read} records" + (
        f", rejected {manifest.counts.rejected}" if manifest.counts.rejected else ""
    )
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
    )


def termination_message(result: RunResult) -> str:
    """The result as JSON within Kubernetes' 4096 bytes: what does not fit goes (labels, then quantiles)."""
    for trimmed in (result, result.model_copy(update={"labels": None}),
                    result.model_copy(update={"labels": None, "score_quantiles": {}})):  # fmt: skip
        text = trimmed.model_dump_json(by_alias=True, exclude_defaults=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
    return result.model_copy(
        update={"labels": None, "score_quantiles": {}, "message": result.message[:500]}
    ).model_dump_json(by_alias=True, exclude_defaults=True)


def main(settings: BatchSettings) -> int:
    """Run, report, and return the exit code."""
    begin = time.monotonic()
    try:
        manifest, uri = score_run(settings)
        result = result_of(manifest, uri, time.monotonic() - begin)
        log.info("run committed", extra={"manifest": uri, "counts": manifest.counts.model_dump()})
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
