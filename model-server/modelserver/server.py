"""Process life cycle of `modelserver serve`: fetch once, then run uvicorn with one or more workers.

The model is fetched (and its sha256 checked) once in the parent; workers load the local copy in their
lifespan, before uvicorn binds, so a pod is never ready with a model that failed to load. A repository's models
(one worker) are fetched and loaded by the worker (modelserver.repository), at start and on each load request.
Exit codes: 0 after a clean shutdown, 2 when the model cannot be fetched, 3 when it (or a repository's model)
cannot be loaded or warmed up.
"""

from __future__ import annotations

import logging
import logging.config
import os
import shutil
import signal
import tempfile
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess

from modelserver import storage
from modelserver.errors import ModelLoadError
from modelserver.http_protocol import CoalescingHttpToolsProtocol
from modelserver.logs import log_config
from modelserver.rest import RESOLVED_SETTINGS_ENV
from modelserver.settings import ServerSettings

log = logging.getLogger(__name__)

EXIT_FETCH_FAILED = 2
EXIT_LOAD_FAILED = 3  # uvicorn's own STARTUP_FAILURE code, so one code means "the app did not start"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(settings: ServerSettings) -> int:
    logging_config = log_config(settings.log_level, json=settings.log_json)
    logging.config.dictConfig(logging_config)
    try:
        local = storage.fetch_for(settings)
    except ModelLoadError as exc:
        log.error("cannot fetch the model: %s", exc, extra={"model": settings.model_name, "uri": settings.model_uri})
        return EXIT_FETCH_FAILED
    resolved = settings.model_copy(update={"model_uri": "" if local is None else str(local), "model_sha256": None})
    os.environ[RESOLVED_SETTINGS_ENV] = resolved.model_dump_json()
    metrics_dir = _prepare_multiprocess_metrics() if settings.workers > 1 else None
    config = uvicorn.Config(
        "modelserver.rest:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,  # one write per response (modelserver.http_protocol)
        ws="none",
        proxy_headers=False,  # nothing here reads X-Forwarded-*; the middleware cost ~3% of a 1-row request
        lifespan="on",
        log_config=logging_config,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
        server_header=False,
    )
    try:
        return _run(config, settings.workers)
    finally:
        if local is not None and storage.is_remote(settings.model_uri):
            shutil.rmtree(local if local.is_dir() else local.parent, ignore_errors=True)
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run(config: uvicorn.Config, workers: int) -> int:
    if workers == 1:
        # uvicorn re-raises the signal that stopped it once its graceful shutdown is done, to the handler
        # that was installed before it ran. With this no-op handler the re-raise cannot kill the process
        # before the downloaded model is cleaned up, and a graceful stop exits 0.
        for handled in (signal.SIGINT, signal.SIGTERM):
            signal.signal(handled, lambda signum, frame: None)
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else EXIT_LOAD_FAILED
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    failed = any(p.exitcode == EXIT_LOAD_FAILED for p in supervisor.processes)
    return EXIT_LOAD_FAILED if failed else 0


def _prepare_multiprocess_metrics() -> Path | None:
    """Workers share counters through files; stale files from an earlier run would inflate them.
    Returns the directory if it was made here (and is to be removed after the run)."""
    directory = os.environ.get(MULTIPROC_ENV)
    made = directory is None
    if directory is None:
        directory = tempfile.mkdtemp(prefix="modelserver-metrics-")
        os.environ[MULTIPROC_ENV] = directory
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path if made else None
