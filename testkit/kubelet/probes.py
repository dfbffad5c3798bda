"""Container probes as the kubelet runs them: httpGet (success is a status in [200, 400)), tcpSocket, exec;
each with its period, timeout, thresholds and initial delay. A Probe object keeps one probe's running state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


def port_number(port: int | str, container: Mapping[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or port.isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"probe port {port!r} is not a port of container {container.get('name')!r}")


@dataclass
class Probe:
    """One probe of one container (spec as in the pod), run against `host`."""

    spec: Mapping[str, Any]
    container: Mapping[str, Any]
    host: str
    env: Mapping[str, str] = field(default_factory=dict)
    successes: int = 0
    failures: int = 0
    last_run: float = 0.0
    last_error: str = ""

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds", 10))

    @property
    def passing(self) -> bool:
        return self.successes >= int(self.spec.get("successThreshold", 1))

    @property
    def failed(self) -> bool:
        return self.failures >= int(self.spec.get("failureThreshold", 3))

    def due(self, now: float, started: float) -> bool:
        if now - started < float(self.spec.get("initialDelaySeconds", 0)):
            return False
        return now - self.last_run >= self.period

    async def run(self, http: httpx.AsyncClient) -> bool:
        """Run once; update the consecutive success/failure counts."""
        self.last_run = time.monotonic()
        timeout = float(self.spec.get("timeoutSeconds", 1))
        try:
            ok = await asyncio.wait_for(self._attempt(http, timeout), timeout + 1)
            self.last_error = "" if ok else self.last_error
        except (TimeoutError, OSError, httpx.HTTPError) as exc:
            ok, self.last_error = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
        return ok

    async def _attempt(self, http: httpx.AsyncClient, limit_s: float) -> bool:
        if "httpGet" in self.spec:
            get = self.spec["httpGet"]
            scheme = str(get.get("scheme", "HTTP")).lower()
            url = f"{scheme}://{get.get('host') or self.host}:{port_number(get['port'], self.container)}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            answer = await http.get(url + get.get("path", "/"), headers=headers, timeout=limit_s)
            self.last_error = f"HTTP probe failed with statuscode: {answer.status_code}"
            return 200 <= answer.status_code < 400
        if "tcpSocket" in self.spec:
            port = port_number(self.spec["tcpSocket"]["port"], self.container)
            _, writer = await asyncio.open_connection(self.spec["tcpSocket"].get("host") or self.host, port)
            writer.close()
            return True
        if "exec" in self.spec:
            return await _exec(self.spec["exec"]["command"], self.env, limit_s, self)
        raise ValueError(f"probe {sorted(self.spec)} has no handler the local kubelet supports")


async def _exec(command: Sequence[str], env: Mapping[str, str], limit_s: float, probe: Probe) -> bool:
    process = await asyncio.create_subprocess_exec(
        *command, env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), limit_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    probe.last_error = out.decode(errors="replace")[-500:]
    return process.returncode == 0
