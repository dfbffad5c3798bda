"""One pod on the local node: its containers as processes, their probes and restarts, and the pod status that
follows from them. `PodWorker.step()` is one look at everything (the kubelet calls it every TICK_S); the status is
written only when it changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from testkit.kubelet.config import KubeletConfig
from testkit.kubelet.containers import ContainerConfigError, Launch, UnknownImage
from testkit.kubelet.probes import Probe

log = logging.getLogger("local-kubelet")
TICK_S = 0.2
TERMINATION_PATH_ENV = "LOCAL_KUBELET_TERMINATION_PATH"
TERMINATION_LOG_ENV = "LOCAL_KUBELET_TERMINATION_LOG"
TERMINATION_LOG_LINES = 80  # FallbackToLogsOnError: the end of the log, as the kubelet takes it
TERMINATION_MESSAGE_BYTES = 4096
READY_RESET_AFTER_S = 600  # a container that ran this long starts its restart backoff over
CRASH_LOOP = "CrashLoopBackOff"

# (pod, container) -> the Launch, or raises ContainerConfigError / UnknownImage
Prepare = Callable[[Mapping[str, Any], Mapping[str, Any]], Awaitable[Launch]]
WriteStatus = Callable[[Mapping[str, Any], dict[str, Any]], Awaitable[None]]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRun:
    """One container's process across its restarts."""

    spec: Mapping[str, Any]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    launch: Launch | None = None
    started_at: str = ""
    started_mono: float = 0.0
    restarts: int = 0
    backoff_s: float = 0.0
    next_start: float = 0.0
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    terminated: dict[str, Any] | None = None  # the current state, when it ended and is not restarted (yet)
    last_terminated: dict[str, Any] | None = None
    started: bool = False  # the startup probe passed (or there is none)
    ready: bool = False
    probes: dict[str, Probe] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def backing_off(self) -> bool:
        """Ended, and to be started again once its back-off has passed."""
        return not self.running and self.terminated is not None and (self.waiting or ("",))[0] == CRASH_LOOP

    def state(self) -> dict[str, Any]:
        if self.running:
            return {"running": {"startedAt": self.started_at}}
        if self.backing_off:  # as the kubelet shows it: waiting, the run that ended as the last state
            reason, message = self.waiting or (CRASH_LOOP, "")
            return {"waiting": {"reason": reason, "message": message}}
        if self.terminated is not None:
            return {"terminated": self.terminated}
        reason, message = self.waiting or ("ContainerCreating", "")
        return {"waiting": {"reason": reason, **({"message": message} if message else {})}}

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "name": self.spec["name"],
            "image": self.spec["image"],
            "imageID": f"local://{self.spec['image']}",
            "ready": self.ready and self.running,
            "started": self.running and self.started,
            "restartCount": self.restarts,
            "state": self.state(),
        }
        if self.process is not None:
            found["containerID"] = f"local://{self.process.pid}"
        last = self.terminated if self.backing_off else self.last_terminated
        if last is not None:
            found["lastState"] = {"terminated": last}
        return found


def _termination_message(run: ContainerRun, exit_code: int) -> str:
    """The file the container wrote at its terminationMessagePath (the shim maps that path to the container's own
    file), else, with FallbackToLogsOnError and a failure, the end of its log."""
    spec = run.spec
    if run.launch is not None:
        own = Path(run.launch.env[TERMINATION_LOG_ENV])
        if own.is_file() and own.stat().st_size:
            return own.read_bytes()[-TERMINATION_MESSAGE_BYTES:].decode(errors="replace")
    if exit_code != 0 and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        lines = run.log_path.read_text(errors="replace").splitlines()[-TERMINATION_LOG_LINES:]
        return "\n".join(lines)[-TERMINATION_MESSAGE_BYTES:]
    return ""


class PodWorker:
    """Runs one pod. `pod` is replaced on every change the API reports (deletion is the change that matters)."""

    def __init__(
        self,
        pod: Mapping[str, Any],
        *,
        ip: str,
        config: KubeletConfig,
        prepare: Prepare,
        write_status: WriteStatus,
        delete: Callable[[Mapping[str, Any]], Awaitable[None]],
        http: httpx.AsyncClient,
    ) -> None:
        self.pod = pod
        self.ip = ip
        self.config = config
        meta = pod["metadata"]
        self.dir = config.work_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        self._prepare = prepare
        self._write_status = write_status
        self._delete = delete
        self._http = http
        self._start_time = now_iso()
        self._written: dict[str, Any] | None = None
        self._deleted = False
        self.runs = {
            c["name"]: ContainerRun(spec=c, log_path=self.dir / "logs" / f"{c['name']}.log")
            for c in pod["spec"]["containers"]
        }

    @property
    def key(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    @property
    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy", "Always"))

    def forget(self) -> None:
        """The pod is gone from the API (force-deleted): stop without writing anything more."""
        self._deleted = True

    async def run(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.dir / "root").mkdir(exist_ok=True)
        try:
            while not self._deleted and self.pod["metadata"].get("deletionTimestamp") is None:
                await self.step()
                await asyncio.sleep(TICK_S)
        finally:
            await self._stop_all()
        if not self._deleted:
            await self._delete(self.pod)

    async def step(self) -> None:
        now = time.monotonic()
        for run in self.runs.values():
            self._reap(run, now)
            if self._should_start(run, now):
                await self._start(run, now)
            if run.running:
                await self._probe(run, now)
        await self._publish()

    # --- processes --------------------------------------------------------------------------------------------

    def _should_start(self, run: ContainerRun, now: float) -> bool:
        if run.running or now < run.next_start:
            return False
        if run.process is None and run.terminated is None:
            return True  # never started (or a config error to retry)
        code = (run.terminated or {}).get("exitCode", 0)
        return self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)

    async def _start(self, run: ContainerRun, now: float) -> None:
        if run.process is not None or run.terminated is not None:
            run.restarts += 1
            run.last_terminated, run.terminated = run.terminated, None
        try:
            run.launch = await self._prepare(self.pod, run.spec)
            own = self.dir / f"{run.spec['name']}.termination-log"
            own.unlink(missing_ok=True)  # a message is the last run's, never an earlier one's
            path = run.spec.get("terminationMessagePath", "/dev/termination-log")
            run.launch.env.update({TERMINATION_PATH_ENV: path, TERMINATION_LOG_ENV: str(own)})
        except UnknownImage as exc:
            self._hold(run, now, "ErrImagePull", str(exc))
            return
        except ContainerConfigError as exc:
            self._hold(run, now, "CreateContainerConfigError", str(exc))
            return
        for directory in run.launch.mounts.values():
            directory.mkdir(parents=True, exist_ok=True)
        run.launch.cwd.mkdir(parents=True, exist_ok=True)
        log.info("pod %s: container %s start #%d: %s", self.key, run.spec["name"], run.restarts, run.launch.argv)
        with run.log_path.open("ab") as output:  # the container's own output only (termination messages come from it)
            try:
                run.process = await asyncio.create_subprocess_exec(
                    *run.launch.argv,
                    env=run.launch.env,
                    cwd=run.launch.cwd,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                self._hold(run, now, "RunContainerError", f"cannot run {run.launch.argv[0]!r}: {exc}")
                return
        run.started_at, run.started_mono, run.waiting = now_iso(), now, None
        run.started = "startupProbe" not in run.spec
        run.ready = False
        run.probes = {
            kind: Probe(run.spec[kind], run.spec, self.ip, run.launch.env)
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in run.spec
        }

    def _hold(self, run: ContainerRun, now: float, reason: str, message: str) -> None:
        """The container could not start: wait and try again, as the kubelet does."""
        run.waiting = (reason, message)
        run.next_start = now + self.config.restart_backoff_initial_s

    def _reap(self, run: ContainerRun, now: float) -> None:
        process = run.process
        if process is None or process.returncode is None or run.terminated is not None:
            return
        code = process.returncode
        exit_code = 128 - code if code < 0 else code  # killed by a signal: 128 + signal number
        run.terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": run.started_at,
            "finishedAt": now_iso(),
            "containerID": f"local://{process.pid}",
        }
        message = _termination_message(run, exit_code)
        if message:
            run.terminated["message"] = message
        run.ready = False
        ran_for = now - run.started_mono
        if ran_for >= READY_RESET_AFTER_S:
            run.backoff_s = 0.0
        run.backoff_s = min(
            self.config.restart_backoff_max_s, run.backoff_s * 2 or self.config.restart_backoff_initial_s
        )
        run.next_start = now + run.backoff_s
        if self._should_start(run, float("inf")):
            run.waiting = (CRASH_LOOP, f"back-off {run.backoff_s:g}s restarting failed container")

    async def _probe(self, run: ContainerRun, now: float) -> None:
        startup = run.probes.get("startupProbe")
        if not run.started and startup is not None:
            if startup.due(now, run.started_mono):
                await startup.run(self._http)
            if startup.passing:
                run.started = True
            elif startup.failed:
                await self._kill(run, f"Startup probe failed: {startup.last_error}")
            return
        readiness = run.probes.get("readinessProbe")
        if readiness is None:
            run.ready = True
        elif readiness.due(now, run.started_mono):
            await readiness.run(self._http)
            run.ready = readiness.passing or (run.ready and not readiness.failed)
        liveness = run.probes.get("livenessProbe")
        if liveness is not None and liveness.due(now, run.started_mono):
            await liveness.run(self._http)
            if liveness.failed:
                await self._kill(run, f"Liveness probe failed: {liveness.last_error}")

    async def _kill(self, run: ContainerRun, why: str) -> None:
        log.info("pod %s: container %s: %s; killing it", self.key, run.spec["name"], why)
        await _terminate(run, grace_s=float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    async def _stop_all(self) -> None:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await asyncio.gather(*(_terminate(run, grace_s=float(grace)) for run in self.runs.values()))

    # --- status -----------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        runs = list(self.runs.values())
        statuses = [run.status() for run in runs]
        ready = all(s["ready"] for s in statuses)
        ended = [run.terminated for run in runs if not run.running and run.terminated is not None]
        restarting = [run for run in runs if self._should_start(run, float("inf"))]
        if len(ended) == len(runs) and not restarting:
            phase = "Succeeded" if all(t["exitCode"] == 0 for t in ended) else "Failed"
        elif any(run.process is not None for run in runs):
            phase = "Running"
        else:
            phase = "Pending"
        reason = "" if ready else "ContainersNotReady"
        return {
            "phase": phase,
            "conditions": [
                _condition("PodScheduled", True),
                _condition("Initialized", True),
                _condition("ContainersReady", ready, reason),
                _condition("Ready", ready, "PodCompleted" if phase == "Succeeded" else reason),
            ],
            "hostIP": self.config.node_ip,
            "hostIPs": [{"ip": self.config.node_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self._start_time,
            "containerStatuses": statuses,
        }

    async def _publish(self) -> None:
        status = self.status()
        if _without_times(status) == _without_times(self._written):
            return
        previous = {c["type"]: c for c in (self._written or {}).get("conditions", [])}
        for condition in status["conditions"]:
            old = previous.get(condition["type"])
            if old is not None and old["status"] == condition["status"]:
                condition["lastTransitionTime"] = old["lastTransitionTime"]
        await self._write_status(self.pod, status)
        self._written = status


def _condition(kind: str, ok: bool, reason: str = "") -> dict[str, Any]:
    found = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": now_iso()}
    if reason and not ok:
        found["reason"] = reason
    return found


def _without_times(status: Mapping[str, Any] | None) -> Any:
    if status is None:
        return None
    conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]]
    return {**status, "conditions": conditions}


async def _terminate(run: ContainerRun, *, grace_s: float) -> None:
    """SIGTERM to the container's process group, SIGKILL after the grace period."""
    process = run.process
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
