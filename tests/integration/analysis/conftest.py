"""A real Prometheus process on loopback (scrape interval 1s) scraping a real exporter process, both started
per module. The scrape adds namespace="prod", as Kubernetes service discovery would."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from testkit.ports import free_port
from testkit.processes import running

NAMESPACE = "prod"
SCRAPE_INTERVAL_S = 1.0
EXPORTER = Path(__file__).with_name("exporter.py")


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
    exporter_port, prometheus_port = free_port(), free_port()
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
