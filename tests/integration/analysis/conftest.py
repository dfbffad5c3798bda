"""A real Prometheus process on loopback (scrape interval 1s) scraping a real exporter process, both started
per module. The scrape adds namespace="prod", as Kubernetes service discovery would."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

NAMESPACE = "prod"
SCRAPE_INTERVAL_S = 1.0
EXPORTER = Path(__file__).with_name("exporter.py")


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until_answers(url: str, process: subprocess.Popen[bytes], log: Path, *, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {within:.0f}s:\n{log.read_text()}")


@contextlib.contextmanager
def running(args: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_answers(ready_url, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Prometheus:
    url: str
    exporter_port: int


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not on PATH: run `make prometheus` (hack/install-prometheus.sh)")
    work = tmp_path_factory.mktemp("prometheus")
    exporter_port, prometheus_port = unused_port(), unused_port()
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S:g}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S:g}s"},
        "scrape_configs": [
            {
                "job_name": "modelserver",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{exporter_port}"], "labels": {"namespace": NAMESPACE}},
                ],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    exporter = [sys.executable, str(EXPORTER), str(exporter_port)]
    server = [
        binary,
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{prometheus_port}"
    with (
        running(exporter, work / "exporter.log", f"http://127.0.0.1:{exporter_port}/metrics"),
        running(server, work / "prometheus.log", f"{url}/-/ready"),
    ):
        yield Prometheus(url=url, exporter_port=exporter_port)
