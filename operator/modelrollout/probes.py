"""/healthz and /readyz on MODELROLLOUT_LIVENESS_PORT, served by every replica, leader or standby, from its event
loop (aiohttp): a chart's livenessProbe and readinessProbe work the same on all of them.

Kopf's own liveness endpoint is not used: it exists only while Kopf runs, and a standby does not run Kopf.
- /healthz: 200 while the event loop answers and the lease loop keeps making rounds (an API server that does
  not answer does not make a replica unhealthy: restarting it would not help); 503 once it stalled.
- /readyz: 200 once the replica knows its role (it has read the lease once), standby or leader, as
  controller-runtime's managers are: a standby is Ready, so a rolling update of the operator's Deployment can
  proceed while one replica leads. Without leader election: once Kopf has started.
Both answer a small JSON document (role, identity, holder) for people looking.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

Check = Callable[[], bool]
Describe = Callable[[], dict[str, Any]]


class Probes:
    def __init__(self, *, live: Check, ready: Check, describe: Describe) -> None:
        self._live = live
        self._ready = ready
        self._describe = describe
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self, port: int, host: str = "0.0.0.0") -> None:  # all interfaces: the kubelet probes the pod IP
        """Serve on `port`; 0 serves nothing."""
        if not port:
            return
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        logger.info("probes: /healthz and /readyz on port %d", port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return self._answer(self._live())

    async def _readyz(self, _: web.Request) -> web.Response:
        return self._answer(self._ready())

    def _answer(self, ok: bool) -> web.Response:
        body = {"ok": ok, **self._describe()}
        return web.Response(status=200 if ok else 503, text=json.dumps(body), content_type="application/json")
