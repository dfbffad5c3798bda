"""Real `modelserver serve` processes on loopback, started per test and stopped with SIGTERM.

No cluster is needed: these tests only use loopback ports and temp dirs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pytest
from testkit.kafka import KafkaBroker
from testkit.models import Classifiers, train_classifiers
from testkit.ports import free_port
from testkit.processes import wait_until_answers
from testkit.waiting import wait_until

from tests.unit.modelserver import builders


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"helper process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, within=timeout, interval=0.1, what=f"a listener on port {port}")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    grpc_port: int = 0
    ready_seen: bool = False
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> Server:
        wait_until_answers(self.url + "/v2/health/ready", self.process, self.log_path, within=timeout, interval=0.1)
        self.ready_seen = True
        return self

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Poll readiness until the process exits (recording whether it was ever ready); its exit code."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"server still running after {timeout:.0f}s:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                self.ready_seen |= self.client.get("/v2/health/ready").status_code == 200
            time.sleep(0.05)
        return self.process.returncode

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()
        return self.process.returncode


class StartServer(Protocol):
    def __call__(self, *args: str, env: dict[str, str] | None = None, ready: bool = True) -> Server: ...


def launch(directory: Path, *args: str, env: dict[str, str] | None = None, ready: bool = True) -> Server:
    """Start `python -m modelserver serve ARGS` on free loopback ports (REST and gRPC), logging into `directory`."""
    port, grpc_port = free_port(), free_port()
    log_path = directory / f"server-{port}.log"
    command = [sys.executable, "-m", "modelserver", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--grpc-port", str(grpc_port), *args]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=directory
        )
    server = Server(process, port, log_path, grpc_port)
    if not ready:
        return server
    try:
        return server.wait_ready()
    except BaseException:
        server.stop()
        raise


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """`launch` bound to the test's temp dir; every server started is stopped after the test."""
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> Server:
        server = launch(tmp_path, *args, env=env, ready=ready)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def custom_env(tmp_path: Path) -> dict[str, str]:
    """Environment under which the custom model classes of builders.custom_module are importable."""
    directory = builders.custom_module(tmp_path)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))}


# The stream tests' (test_stream, test_stream_rollout): one real Kafka broker and one set of models per module.
@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as running:
        yield running


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Classifiers:
    return train_classifiers(tmp_path_factory.mktemp("models"))
