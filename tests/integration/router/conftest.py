"""Real model servers and the real router (`python -m modelserver route`) as processes on loopback.

Model servers are started once for the package's tests (loading one takes about two seconds) and serve:
- "clf" (a logistic regression on 20 features) as version 1 and, from the same file, version 2: identical
  answers; a differently trained classifier as version 3; faulty_models.Faulty as version 8 (fails with 500,
  or answers after a second when asked to);
- "reg" (linear regression on scikit-learn's diabetes data) as version 1, and the same fitted to y + SHIFT as
  version 2, whose every prediction is SHIFT higher.
Routers are started per test with a routing document in a file; the document names cluster Service URLs as
the operator writes them, and `--upstream VERSION=URL` points each version at its local server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import joblib
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, LogisticRegression
from testkit.ports import free_port
from testkit.processes import wait_until_answers
from testkit.waiting import wait_until

from tests.integration.modelserver.conftest import Server, launch
from tests.unit.modelserver import builders

HERE = Path(__file__).resolve().parent
SHIFT = 25.0
ROWS = 200
SLOW_S = 1.0


@dataclass(frozen=True)
class Fleet:
    """The model servers by model and version, and the rows and answers tests send and expect."""

    servers: Mapping[tuple[str, str], Server]
    x: np.ndarray[Any, Any]  # classifier rows
    labels: Mapping[str, list[int]]  # classifier version -> its label per row
    diabetes: np.ndarray[Any, Any]  # regressor rows

    def url(self, model: str, version: str) -> str:
        return self.servers[(model, version)].url

    def upstreams(self, model: str, **extra: str) -> dict[str, str]:
        found = {version: server.url for (name, version), server in self.servers.items() if name == model}
        return found | extra


def v2_body(row: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": [row.tolist()]}]}


def post_concurrently(
    url: str, path: str, bodies: Sequence[Any], headers: Sequence[Mapping[str, str]]
) -> list[httpx.Response]:
    """Each (JSON body, headers) POSTed to `path` from 8 client threads with a connection each; answers in order."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def one(item: tuple[Any, Mapping[str, str]]) -> httpx.Response:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=30)
            clients.append(client)
        return client.post(path, json=item[0], headers=dict(item[1]))

    try:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, zip(bodies, headers, strict=True)))
    finally:
        for client in clients:
            client.close()


def records(row: np.ndarray[Any, Any]) -> list[dict[str, float]]:
    return [{f"f{i}": float(v) for i, v in enumerate(row)}]


# Session, not package: under xdist --dist loadfile a worker alternates between packages, and a package fixture is
# torn down each time it leaves this one, so the six servers were started again for nearly every router file
# (14-20 s of setup each, six times per run). They idle between router files; the session ends them.
@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    directory = tmp_path_factory.mktemp("router-models")
    x, y = builders.binary_data()
    stable = LogisticRegression(max_iter=1000).fit(x, y)
    # Fitted to labels flipped on half the rows: answers differently on a large share of them.
    flipped = np.where(x[:, 0] > np.median(x[:, 0]), 1 - y, y)
    different = LogisticRegression(max_iter=1000).fit(x, flipped)
    joblib.dump(stable, directory / "clf-stable.joblib")
    joblib.dump(different, directory / "clf-different.joblib")
    dx, dy = load_diabetes(return_X_y=True)
    joblib.dump(LinearRegression().fit(dx, dy), directory / "reg-1.joblib")
    joblib.dump(LinearRegression().fit(dx, dy + SHIFT), directory / "reg-2.joblib")
    custom_env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "MODELSERVER_WARMUP": "false",
        "SLOW_MODEL_S": str(SLOW_S),
    }

    def plain(model: str, version: str, path: str) -> Server:
        return launch(
            directory, "--model-uri", str(directory / path), "--model-name", model, "--model-version", version,
            "--log-level", "warning", ready=False,
        )  # fmt: skip

    def custom(version: str, cls: str) -> Server:
        return launch(
            directory, "--format", "custom", "--model-class", f"faulty_models:{cls}", "--model-name", "clf",
            "--model-version", version, "--log-level", "warning", env=custom_env, ready=False,
        )  # fmt: skip

    servers: dict[tuple[str, str], Server] = {}
    try:
        servers[("clf", "1")] = plain("clf", "1", "clf-stable.joblib")
        servers[("clf", "2")] = plain("clf", "2", "clf-stable.joblib")
        servers[("clf", "3")] = plain("clf", "3", "clf-different.joblib")
        servers[("clf", "8")] = custom("8", "Faulty")
        servers[("reg", "1")] = plain("reg", "1", "reg-1.joblib")
        servers[("reg", "2")] = plain("reg", "2", "reg-2.joblib")
        for server in servers.values():
            server.wait_ready(timeout=120)
        rows = x[:ROWS]
        labels = {"1": stable.predict(rows).tolist(), "2": stable.predict(rows).tolist()}
        labels["3"] = different.predict(rows).tolist()
        yield Fleet(servers, rows, labels, dx[:ROWS])
    finally:
        for server in servers.values():
            server.stop()


def document(
    *,
    route: str = "clf",
    stable: str = "1",
    canary: str | None = "2",
    weights: tuple[int, int] = (100, 0),
    mirror: int = 0,
    header: dict[str, str] | None = None,
    timeout: float = 5.0,
    retry: bool = False,
) -> dict[str, Any]:
    """A routing document as the operator writes it (cluster Service URLs that only --upstream makes local)."""
    body: dict[str, Any] = {
        "schemaVersion": 1,
        "route": route,
        "backends": {"stable": f"http://{route}-stable.test.svc:80"},
        "versions": {"stable": stable},
        "weights": {"stable": weights[0], "canary": weights[1]},
        "mirrorPercent": mirror,
        "timeoutSeconds": timeout,
        "retryOnStable": retry,
    }
    if canary is not None:
        body["backends"]["canary"] = f"http://{route}-canary.test.svc:80"
        body["versions"]["canary"] = canary
    if header is not None:
        body["headerRoute"] = header
    return body


def write_atomically(path: Path, content: dict[str, Any] | str) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(content if isinstance(content, str) else json.dumps(content))
    os.replace(temp, path)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Router:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    config_path: Path | None
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, path: str = "/readyz", timeout: float = 30.0) -> Router:
        wait_until_answers(self.url + path, self.process, self.log_path, within=timeout, interval=0.05)
        return self

    def configure(self, content: dict[str, Any] | str) -> None:
        assert self.config_path is not None
        write_atomically(self.config_path, content)

    def wait_weights(self, stable: int, canary: int, timeout: float = 10.0) -> float:
        """Seconds until /readyz reports these weights."""
        started = time.monotonic()

        def loaded() -> bool:
            response = self.client.get("/readyz")
            return response.status_code == 200 and response.json()["weights"] == {"stable": stable, "canary": canary}

        wait_until(loaded, within=timeout, interval=0.02, what=lambda: f"weights {stable}/{canary}:\n{self.log()}")
        return time.monotonic() - started

    def samples(self) -> Samples:
        text = self.client.get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def sample(self, name: str, **labels: str) -> float:
        return self.samples().get((name, tuple(sorted(labels.items()))), 0.0)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()
        return self.process.returncode


class StartRouter(Protocol):
    def __call__(
        self,
        content: dict[str, Any] | str | None = None,
        *,
        upstreams: Mapping[str, str],
        args: tuple[str, ...] = (),
        ready: bool = True,
    ) -> Router: ...


def launch_router(directory: Path, args: list[str], env: Mapping[str, str] | None = None) -> Router:
    port = free_port()
    log_path = directory / f"router-{port}.log"
    command = [sys.executable, "-m", "modelserver", "route", "--port", str(port), "--log-text", *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=directory, env={**os.environ, **(env or {})}
        )
    config_path = Path(args[args.index("--config-file") + 1]) if "--config-file" in args else None
    return Router(process, port, log_path, config_path)


def upstream_args(upstreams: Mapping[str, str]) -> list[str]:
    return [arg for version, url in upstreams.items() for arg in ("--upstream", f"{version}={url}")]


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[StartRouter]:
    """Start a router reading a file that holds `content` (nothing when None); stopped after the test."""
    started: list[Router] = []

    def start(
        content: dict[str, Any] | str | None = None,
        *,
        upstreams: Mapping[str, str],
        args: tuple[str, ...] = (),
        ready: bool = True,
    ) -> Router:
        config_path = tmp_path / f"router-{len(started)}.json"
        if content is not None:
            write_atomically(config_path, content)
        router = launch_router(tmp_path, ["--config-file", str(config_path), *upstream_args(upstreams), *args])
        started.append(router)
        return router.wait("/readyz" if ready else "/healthz")

    yield start
    for router in started:
        router.stop()
