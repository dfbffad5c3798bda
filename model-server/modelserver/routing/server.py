"""Process life cycle of `modelserver route`: one uvicorn worker (uvloop + httptools) running the RouterApp.

One process: the router waits on the network, not the CPU, and a single process keeps the metrics, the
routing snapshot and the shadow bound exact without multiprocess bookkeeping; scale it with replicas.
Exit codes: 0 after a clean shutdown, 3 when the app could not start (uvicorn's own startup failure code).
"""

from __future__ import annotations

import logging
import logging.config
import signal

import uvicorn

from modelserver.http_protocol import CoalescingHttpToolsProtocol
from modelserver.logs import log_config
from modelserver.routing.app import RouterApp
from modelserver.routing.auth import Gate
from modelserver.routing.settings import RouterSettings
from modelserver.routing.sources import ConfigMapSource, FileSource, Source

log = logging.getLogger(__name__)

EXIT_START_FAILED = 3


def source_for(settings: RouterSettings) -> Source:
    if settings.config_file is not None:
        return FileSource(settings.config_file, interval_s=settings.poll_interval_s)
    if settings.configmap is None:  # excluded by RouterSettings' own validation
        raise ValueError("no routing source configured")
    namespace, _, name = settings.configmap.partition("/")
    return ConfigMapSource(namespace, name, kubeconfig=settings.kubeconfig, watch_timeout_s=settings.watch_timeout_s)


def build_app(settings: RouterSettings) -> RouterApp:
    gate = keys_source = None
    if settings.api_keys_file is not None:  # RouterSettings checked that it reads and parses
        gate = Gate(settings.api_keys_file.read_bytes())
        keys_source = FileSource(settings.api_keys_file, interval_s=settings.poll_interval_s)
    return RouterApp(
        source=source_for(settings),
        gate=gate,
        keys_source=keys_source,
        upstreams=settings.upstream,
        max_shadow_inflight=settings.max_shadow_inflight,
        max_body_bytes=settings.max_body_bytes,
        seed=settings.seed,
    )


def route(settings: RouterSettings) -> int:
    logging_config = log_config(settings.log_level, json=settings.log_json)
    logging.config.dictConfig(logging_config)
    config = uvicorn.Config(
        build_app(settings),
        interface="asgi3",
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,  # one write per response (modelserver.http_protocol)
        ws="none",
        lifespan="on",
        proxy_headers=False,  # X-Forwarded-* pass to the backend untouched; the router itself reads none
        log_config=logging_config,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
        server_header=False,
        date_header=False,  # the backend's Date passes through
    )
    # As in `serve`: uvicorn re-raises the stopping signal after its graceful shutdown; a no-op handler makes
    # that re-raise harmless, so a graceful stop exits 0.
    for handled in (signal.SIGINT, signal.SIGTERM):
        signal.signal(handled, lambda signum, frame: None)
    server = uvicorn.Server(config)
    log.info("router starting", extra={"host": settings.host, "port": settings.port, "upstreams": settings.upstream})
    server.run()
    return 0 if server.started else EXIT_START_FAILED
