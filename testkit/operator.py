"""Runs the real operator (`modelrollout run`) as a separate process against the cluster under test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

INTERVAL_S = 5.0  # half the production default; the drift tests assert restoration within one interval
# The model server image the operator names in the pods it plans: a placeholder (the local kubelet runs any image
# whose repository ends in model-server as this checkout's model server), unless MODELROLLOUT_TEST_DEFAULT_IMAGE
# names one. `make e2e-kind` names the image it built and loaded into kind, so the pods say what kind can run.
PLACEHOLDER_IMAGE = "registry.example/modelrollout/model-server:test"
TEST_IMAGE_ENV = "MODELROLLOUT_TEST_DEFAULT_IMAGE"


class OperatorProcess:
    """One operator process watching one namespace; `restart()` kills it and starts another, as a crash would.

    It takes part in leader election with the lease in the namespace it watches, as replica `name` (its
    holderIdentity and its log's name): alone, it takes the lease at its first attempt. The identity is fixed,
    not random as in a pod, so that `restart()` (the same replica crashing and coming back) takes its own lease
    back at once instead of waiting for it to expire; two processes of one namespace need two names."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        namespace: str,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        name: str = "operator",
    ):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.interval_s = INTERVAL_S
        self._env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "MODELROLLOUT_LEASE_NAMESPACE": namespace,
            "MODELROLLOUT_LEADER_IDENTITY": name,
            "MODELROLLOUT_RECONCILE_INTERVAL_S": str(INTERVAL_S),
            "MODELROLLOUT_LIVENESS_PORT": "0",
            "MODELROLLOUT_METRICS_PORT": "0",
            "MODELROLLOUT_PROGRESS_DEADLINE_S": "60",
            "MODELROLLOUT_DEFAULT_IMAGE": os.environ.get(TEST_IMAGE_ENV) or PLACEHOLDER_IMAGE,
            **(extra_env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exit_code: int | None = None  # of the last process stopped (negative: killed by that signal)

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== operator start #{self.starts} =====\n".encode())
        log.flush()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "modelrollout.main", "run", "--namespace", self.namespace],
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, *, graceful: bool = True) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is not None:
            self.exit_code = process.returncode
            return
        process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            self.exit_code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            self.exit_code = process.wait(timeout=10)

    def send(self, sig: signal.Signals) -> None:
        """A signal to the running process (SIGSTOP/SIGCONT: a process that stalls, then resumes)."""
        if self._process is not None:
            self._process.send_signal(sig)

    def restart(self) -> None:
        self.stop(graceful=False)
        self.start()

    @property
    def liveness_url(self) -> str | None:
        port = self._env.get("MODELROLLOUT_LIVENESS_PORT", "0")
        return None if port == "0" else f"http://127.0.0.1:{port}/healthz"

    @property
    def readiness_url(self) -> str | None:
        port = self._env.get("MODELROLLOUT_LIVENESS_PORT", "0")
        return None if port == "0" else f"http://127.0.0.1:{port}/readyz"

    @property
    def metrics_port(self) -> int | None:
        port = int(self._env.get("MODELROLLOUT_METRICS_PORT", "0"))
        return port or None

    @property
    def metrics_url(self) -> str | None:
        port = self._env.get("MODELROLLOUT_METRICS_PORT", "0")
        return None if port == "0" else f"http://127.0.0.1:{port}/metrics"

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def call_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test's call phase failed (tests/conftest.py keeps each phase's report on the test item)."""
    report = getattr(request.node, "rep_call", None)
    return report is not None and bool(report.failed)


def stop_and_report(process: OperatorProcess, request: pytest.FixtureRequest) -> None:
    """Stop the operator; when the test failed, print the end of its log (that is where the why usually is)."""
    process.stop()
    if call_failed(request):
        print(f"--- operator log ({process.log_path}) ---\n{process.log()[-20000:]}")


@contextmanager
def operator_running(process: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    process.start()
    try:
        yield process
    finally:
        stop_and_report(process, request)
