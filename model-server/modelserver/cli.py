"""`modelserver` command. `serve` runs the online server, `route` the traffic router, `batch` scores a data-lake
input once, `stream` scores a Kafka topic's records as they come."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from modelserver.settings import ServerSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
S = TypeVar("S")


def _settings(make: Callable[[], S]) -> S:
    """The command's settings, or exit 2 with what is wrong with them."""
    try:
        return make()
    except (ValidationError, ValueError) as exc:
        typer.echo(f"invalid settings:\n{exc}", err=True)
        raise typer.Exit(2) from None


def _configure_logs(level: str, *, json: bool) -> None:
    import logging.config  # noqa: PLC0415

    from modelserver.logs import log_config  # noqa: PLC0415

    logging.config.dictConfig(log_config(level, json=json))


@app.callback()
def _root() -> None:
    """Serve machine-learning models (settings: flags, or MODELSERVER_* environment variables)."""


@app.command()
def serve(
    *,
    model_uri: Annotated[str | None, typer.Option("--model-uri", "-m", help="path, file://, http(s)://, s3://")] = None,
    model_name: Annotated[str | None, typer.Option(help="name in URLs and metric labels")] = None,
    model_version: Annotated[str | None, typer.Option(help="version in URLs and metric labels")] = None,
    model_format: Annotated[
        str | None, typer.Option("--format", help="auto|sklearn|onnx|xgboost|lightgbm|custom")
    ] = None,
    model_class: Annotated[str | None, typer.Option(help="custom runtime class, 'package.module:Class'")] = None,
    model_sha256: Annotated[str | None, typer.Option("--sha256", help="expected sha256 of the model file")] = None,
    s3_endpoint_url: Annotated[str | None, typer.Option(help="S3-compatible endpoint URL")] = None,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
    grpc: Annotated[bool | None, typer.Option("--grpc/--no-grpc", help="serve gRPC too (default on)")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (default 8081)")] = None,
    batching: Annotated[bool | None, typer.Option("--batching/--no-batching", help="adaptive micro-batching")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="rows per batched model call")] = None,
    max_batch_wait_ms: Annotated[float | None, typer.Option(help="longest wait for a batch to fill")] = None,
    model_repository: Annotated[
        Path | None, typer.Option(help="serve every model of this directory (a model-settings.json each)")
    ] = None,
    max_memory_bytes: Annotated[
        int | None, typer.Option(help="with --model-repository: refuse models beyond this much memory in all")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug|info|warning|error")] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json/--log-text")] = None,
) -> None:
    """Serve one model (--model-uri) or a repository of them (--model-repository) over REST (Open Inference
    Protocol v2, its repository extension, and /predict) and gRPC (the Open Inference Protocol's
    GRPCInferenceService), with Prometheus metrics."""
    flags: dict[str, Any] = {k: v for k, v in locals().items() if v is not None}
    # Imported here: `batch` and `route` never load the online server (uvicorn, starlette) for nothing.
    from modelserver.server import serve as run_server  # noqa: PLC0415

    settings = _settings(lambda: ServerSettings(**flags))
    raise typer.Exit(run_server(settings))


@app.command()
def route(
    *,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on (default 127.0.0.1)")] = None,
    configmap: Annotated[
        str | None, typer.Option(help="NAMESPACE/NAME of the ConfigMap holding router.json (watched)")
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="kubeconfig for --configmap outside a cluster")] = None,
    config_file: Annotated[Path | None, typer.Option(help="file holding the routing document (polled)")] = None,
    upstream: Annotated[
        list[str] | None,
        typer.Option(help="VERSION=URL: serve that model version from URL instead of the document's backend"),
    ] = None,
    max_shadow_inflight: Annotated[int | None, typer.Option(help="shadow calls in flight; more are dropped")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the traffic split's random generator")] = None,
    api_keys_file: Annotated[
        Path | None, typer.Option(help="JSON file of API keys and per-key rate limits (re-read on change)")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug|info|warning|error")] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json/--log-text")] = None,
) -> None:
    """Route requests between model servers (A/B/n splits, routes, mirroring, fallback chains, ensembles), with
    optional API keys and per-key rate limits."""
    flags: dict[str, Any] = {k: v for k, v in locals().items() if v is not None and k != "upstream"}
    # Imported here: `serve` never loads the proxy's client libraries.
    from modelserver.routing.server import route as run_router  # noqa: PLC0415
    from modelserver.routing.settings import RouterSettings, parse_upstreams  # noqa: PLC0415

    def make() -> RouterSettings:
        if upstream:
            flags["upstream"] = parse_upstreams(upstream)
        return RouterSettings(**flags)

    raise typer.Exit(run_router(_settings(make)))


@app.command()
def batch(
    *,
    input_uri: Annotated[
        str | None, typer.Option("--input", "-i", help="file, directory or prefix (templated)")
    ] = None,
    output_uri: Annotated[str | None, typer.Option("--output", "-o", help="the run's output (templated)")] = None,
    input_format: Annotated[str | None, typer.Option(help="auto|parquet|csv|jsonl")] = None,
    output_format: Annotated[str | None, typer.Option(help="parquet|csv|jsonl")] = None,
    id_columns: Annotated[
        list[str] | None, typer.Option("--id", help="input column copied to the output (repeat)")
    ] = None,
    invalid_records: Annotated[str | None, typer.Option(help="fail|skip a record with a missing feature")] = None,
    max_invalid_percent: Annotated[float | None, typer.Option(help="skip: more invalid records fail the run")] = None,
    threshold: Annotated[float | None, typer.Option(help="binary classifiers: the decision threshold")] = None,
    scheduled_time: Annotated[
        str | None, typer.Option("--run", help="the run's time (ISO 8601), e.g. a backfill")
    ] = None,
    job_name: Annotated[
        str | None, typer.Option(help="the pod's Job: a CronJob's Job name carries the run's time (without --run)")
    ] = None,
    time_zone: Annotated[str | None, typer.Option(help="IANA zone of the templates' dates (default UTC)")] = None,
    model_uri: Annotated[str | None, typer.Option("--model-uri", "-m", help="path, file://, http(s)://, s3://")] = None,
    model_name: Annotated[str | None, typer.Option(help="name in the output and metric labels")] = None,
    model_version: Annotated[str | None, typer.Option(help="version in the output and metric labels")] = None,
    model_format: Annotated[
        str | None, typer.Option("--format", help="auto|sklearn|onnx|xgboost|lightgbm|custom")
    ] = None,
    reference_model_uri: Annotated[
        str | None, typer.Option(help="a shadow run: the model compared with (not written), e.g. stable's")
    ] = None,
    reference_model_version: Annotated[str | None, typer.Option(help="the reference model's version")] = None,
    reference_model_format: Annotated[
        str | None, typer.Option("--reference-format", help="auto|sklearn|onnx|xgboost|lightgbm|custom")
    ] = None,
    s3_endpoint_url: Annotated[str | None, typer.Option(help="S3-compatible endpoint URL")] = None,
    batch_rows: Annotated[int | None, typer.Option(help="records read, scored and written at a time")] = None,
    part_rows: Annotated[int | None, typer.Option(help="records per output part file")] = None,
    shard_index: Annotated[int | None, typer.Option(help="this process's shard (an Indexed Job's index)")] = None,
    shard_count: Annotated[int | None, typer.Option(help="shards of the run; the last one to end commits")] = None,
    run_token: Annotated[str | None, typer.Option(help="one execution of the run across its shards")] = None,
    input_shards: Annotated[
        int | None, typer.Option(help="ways the input files are split (default: shards; 1 with a key range)")
    ] = None,
    key_column: Annotated[str | None, typer.Option(help="the input column holding each record's user key")] = None,
    key_from: Annotated[int | None, typer.Option(help="score keys whose bucket (0..9999) is >= this")] = None,
    key_to: Annotated[int | None, typer.Option(help="... and < this (a canary at weight w: 0 to w*100)")] = None,
    revision: Annotated[str | None, typer.Option(help="this consumer's revision in a share document")] = None,
    share_configmap: Annotated[
        str | None, typer.Option(help="NAMESPACE/NAME: a rollout's share document (cutovers, not key_from/key_to)")
    ] = None,
    share_file: Annotated[Path | None, typer.Option(help="... or a file holding it, polled")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="kubeconfig for --share-configmap outside a cluster")] = None,
    pushgateway_url: Annotated[str | None, typer.Option(help="Prometheus Pushgateway for the run's metrics")] = None,
    termination_log: Annotated[Path | None, typer.Option(help="where the run result goes (a pod's default)")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug|info|warning|error")] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json/--log-text")] = None,
) -> None:
    """Score a data-lake input once into a committed output (a manifest written last); exit code = outcome."""
    flags: dict[str, Any] = {k: v for k, v in locals().items() if v is not None}
    from modelserver.batch.run import main as run_batch  # noqa: PLC0415 - `serve` never loads pyarrow
    from modelserver.batch.settings import BatchSettings  # noqa: PLC0415

    settings = _settings(lambda: BatchSettings(**flags))
    _configure_logs(settings.log_level, json=settings.log_json)
    raise typer.Exit(run_batch(settings))


@app.command()
def stream(
    *,
    bootstrap_servers: Annotated[
        str | None, typer.Option("--bootstrap-servers", "-b", help="host:port[,...] of the Kafka brokers")
    ] = None,
    input_topic: Annotated[str | None, typer.Option("--input-topic", "-i", help="the topic scored")] = None,
    output_topic: Annotated[str | None, typer.Option("--output-topic", "-o", help="one prediction per record")] = None,
    dead_letter_topic: Annotated[
        str | None, typer.Option(help="records that cannot be scored, with why (required for exactly-once)")
    ] = None,
    consumer_group: Annotated[str | None, typer.Option("--group", "-g", help="the consumer group")] = None,
    delivery: Annotated[str | None, typer.Option(help="exactly-once (transactions) | at-least-once")] = None,
    max_batch: Annotated[int | None, typer.Option(help="records per micro-batch (and transaction)")] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(help="longest wait for a record when none is ready (no batch waits to fill)")
    ] = None,
    instance_id: Annotated[
        str | None, typer.Option(help="group.instance.id, static membership (default: POD_NAME, else HOSTNAME)")
    ] = None,
    transactional_id: Annotated[
        str | None, typer.Option(help="the producer's transactional.id (default: GROUP-INSTANCE_ID)")
    ] = None,
    session_timeout_ms: Annotated[
        int | None, typer.Option(help="how long a silent member keeps its partitions")
    ] = None,
    security_protocol: Annotated[
        str | None, typer.Option(help="PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL (SASL password: env only)")
    ] = None,
    sasl_mechanism: Annotated[str | None, typer.Option(help="PLAIN|SCRAM-SHA-256|SCRAM-SHA-512")] = None,
    sasl_username: Annotated[str | None, typer.Option(help="password: MODELSERVER_SASL_PASSWORD")] = None,
    ssl_ca_location: Annotated[Path | None, typer.Option(help="CA certificates (PEM) of the brokers")] = None,
    ssl_certificate_location: Annotated[Path | None, typer.Option(help="client certificate (PEM)")] = None,
    ssl_key_location: Annotated[Path | None, typer.Option(help="the client certificate's key (PEM)")] = None,
    key_from: Annotated[int | None, typer.Option(help="score records whose bucket (0..9999) is >= this")] = None,
    key_to: Annotated[int | None, typer.Option(help="... and < this (a canary at weight w: 0 to w*100)")] = None,
    revision: Annotated[str | None, typer.Option(help="this consumer's revision in a share document")] = None,
    share_configmap: Annotated[
        str | None, typer.Option(help="NAMESPACE/NAME: a rollout's share document (cutovers, not key_from/key_to)")
    ] = None,
    share_file: Annotated[Path | None, typer.Option(help="... or a file holding it, polled")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="kubeconfig for --share-configmap outside a cluster")] = None,
    passthrough_fields: Annotated[
        list[str] | None, typer.Option("--passthrough", help="input field copied to the output (repeat)")
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="binary classifiers: the decision threshold")] = None,
    max_message_bytes: Annotated[
        int | None, typer.Option(help="the largest message produced; a larger output is dead-lettered (too_large)")
    ] = None,
    compare_topic: Annotated[
        str | None, typer.Option(help="shadowing: the stable output topic this consumer's outputs are compared with")
    ] = None,
    offset_reset: Annotated[
        str | None, typer.Option(help="earliest|latest: where a group without committed offsets starts")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="port of /metrics and /ready")] = None,
    model_uri: Annotated[str | None, typer.Option("--model-uri", "-m", help="path, file://, http(s)://, s3://")] = None,
    model_name: Annotated[str | None, typer.Option(help="name in the output and metric labels")] = None,
    model_version: Annotated[str | None, typer.Option(help="version in the output and metric labels")] = None,
    model_format: Annotated[
        str | None, typer.Option("--format", help="auto|sklearn|onnx|xgboost|lightgbm|custom")
    ] = None,
    model_class: Annotated[str | None, typer.Option(help="custom runtime class, 'package.module:Class'")] = None,
    s3_endpoint_url: Annotated[str | None, typer.Option(help="S3-compatible endpoint URL")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug|info|warning|error")] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json/--log-text")] = None,
) -> None:
    """Score a Kafka topic's records into an output topic as they come, exactly once by default; runs until SIGTERM."""
    flags: dict[str, Any] = {k: v for k, v in locals().items() if v is not None}
    from modelserver.stream.run import main as run_stream  # noqa: PLC0415 - only `stream` loads confluent_kafka
    from modelserver.stream.settings import StreamSettings  # noqa: PLC0415

    settings = _settings(lambda: StreamSettings(**flags))
    _configure_logs(settings.log_level, json=settings.log_json)
    raise typer.Exit(run_stream(settings))


def main() -> None:
    app()
