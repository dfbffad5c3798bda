"""A real Prometheus (Debian's package, `make prometheus`) on loopback for e2e tests.

It scrapes every second: the addresses of the pods the local kubelet runs (PodAddresses), and other targets
(processes a test starts itself). Each carries the labels `namespace` and `job`, as Kubernetes service discovery
would add them, so the operator's builtin queries
(which select on namespace, model and version) work unchanged. `stop()` and `start()` keep the port and the
TSDB: a test can take Prometheus away in the middle of a rollout and bring it back with the data scraped so far.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from testkit.ports import free_port
from testkit.processes import ManagedProcess
from testkit.waiting import wait_until

SCRAPE_INTERVAL_S = 1.0
POD_JOB = "kubernetes-pods"


class PrometheusMissing(RuntimeError):
    """No `prometheus` binary on PATH."""


class PrometheusQueryError(AssertionError):
    """Prometheus refused the query, or answered something that is not one number."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One `host:port` to scrape, labelled like a pod found by Kubernetes service discovery."""

    address: str
    namespace: str
    job: str
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics_path: str = "/metrics"
    # Keep the labels the target exports over the target's own (the operator's `namespace` is the ModelDeployment's),
    # as the chart's ServiceMonitor and PodMonitor do.
    honor_labels: bool = False
    # Whether start() waits for its first scrape: a target whose first seconds no test reads need not cost them.
    wait: bool = True

    @property
    def job_name(self) -> str:
        return self.job if self.metrics_path == "/metrics" else f"{self.job}{self.metrics_path}"

    @classmethod
    def local(cls, port: int, *, namespace: str, job: str, **labels: str) -> ScrapeTarget:
        return cls(address=f"127.0.0.1:{port}", namespace=namespace, job=job, labels=labels)


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusMissing(
            "prometheus is not on PATH: run `make prometheus` (hack/install-prometheus.sh installs Debian's package)"
        )
    return binary


@dataclass(frozen=True)
class PodAddresses:
    """Scrape the addresses the local kubelet gives pods, labelled with the test's namespace: its pods take the
    lowest free address of its range, so the first `addresses` cover every pod a test runs. They are static
    targets, scraped from the start, rather than discovered: Prometheus hands discovered targets to its scrapers
    on a 5 s tick, so a candidate that became ready (2-4 s after its process started) could take traffic and be
    analysed before its first scrape (no data, an Inconclusive run). An address without a pod is `up` 0."""

    addresses: tuple[str, ...]
    namespace: str
    port: int = 8080

    def job(self) -> dict[str, Any]:
        targets = [f"{address}:{self.port}" for address in self.addresses]
        return {"job_name": POD_JOB, "static_configs": [{"targets": targets, "labels": {"namespace": self.namespace}}]}


def scrape_config(
    targets: Sequence[ScrapeTarget], *, scrape_interval_s: float, pods: PodAddresses | None = None
) -> dict[str, Any]:
    """prometheus.yml: one scrape job per (job, metrics path), one static group per target with its labels, and
    with `pods` one job of discovered pods."""
    jobs: dict[tuple[str, str, bool], list[dict[str, Any]]] = {}
    for target in targets:
        labels = {**target.labels, "namespace": target.namespace}
        key = (target.job_name, target.metrics_path, target.honor_labels)
        jobs.setdefault(key, []).append({"targets": [target.address], "labels": labels})
    interval = f"{scrape_interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": groups}
            | ({"honor_labels": True} if honor else {})
            for (job, path, honor), groups in jobs.items()
        ]
        + ([pods.job()] if pods is not None else []),
    }


class PrometheusServer:
    """`prometheus` scraping `targets` every `scrape_interval_s`; its config and TSDB live in `work_dir`."""

    def __init__(
        self,
        *,
        work_dir: Path,
        targets: Sequence[ScrapeTarget] = (),
        pods: PodAddresses | None = None,
        port: int | None = None,
        scrape_interval_s: float = SCRAPE_INTERVAL_S,
    ) -> None:
        binary = prometheus_binary()
        self.work_dir = work_dir
        self.targets = tuple(targets)
        self.scrape_interval_s = scrape_interval_s
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work_dir.mkdir(parents=True, exist_ok=True)
        config_path = work_dir / "prometheus.yml"
        config_path.write_text(
            yaml.safe_dump(scrape_config(self.targets, scrape_interval_s=scrape_interval_s, pods=pods))
        )
        self.process = ManagedProcess(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={work_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            name=f"prometheus :{self.port}",
            log_path=work_dir / "prometheus.log",
            ready_url=f"{self.url}/-/ready",
        )
        self._client = httpx.Client(base_url=self.url, timeout=5)

    # --- life cycle ---------------------------------------------------------------------------------------

    def start(self, *, wait_for_targets: bool = True) -> None:
        """Start (again: same port, same TSDB); return once /-/ready answers and, by default, once every target
        has been scraped (up or down). Prometheus hands new targets to its scrapers on a 5 s tick, so the first
        scrape comes up to ~6 s after start."""
        self.process.start()
        if wait_for_targets:
            self.wait_for_targets()

    def wait_for_targets(self, *, within: float = 30) -> None:
        """Until every configured target has been scraped at least once (whatever the outcome)."""

        waited = [t for t in self.targets if t.wait]
        unwaited = {POD_JOB} | {t.job_name for t in self.targets if not t.wait}

        def scraped() -> bool:
            active = [t for t in self._active_targets() if t["scrapePool"] not in unwaited]
            return len(active) >= len(waited) and all(t.get("health") != "unknown" for t in active)

        wait_until(
            scraped,
            within=within,
            interval=0.25,
            what=lambda: (
                f"Prometheus to scrape all {len(waited)} targets: {self.target_health()}\n{self.process.describe()}"
            ),
        )

    def _active_targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self._client.get("/api/v1/targets").json()["data"]["activeTargets"]
        return active

    def stop(self, *, graceful: bool = True) -> None:
        self.process.stop(graceful=graceful)

    @property
    def alive(self) -> bool:
        return self.process.alive

    def close(self) -> None:
        self.stop()
        self._client.close()

    def __enter__(self) -> PrometheusServer:
        if not self.alive:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- queries ------------------------------------------------------------------------------------------

    def query_vector(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant query: (labels, value); a scalar comes back as one series without labels."""
        response = self._client.post("/api/v1/query", data={"query": promql})
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusQueryError(f"Prometheus refused {promql!r}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusQueryError(f"{promql!r} returned a {data['resultType']}, not an instant vector")
        return [(sample["metric"], float(sample["value"][1])) for sample in data["result"]]

    def query(self, promql: str) -> float | None:
        """The one number of an instant query; None when it has no series (NaN, e.g. 0/0, is returned as is).
        More than one series is an error: aggregate in the query."""
        series = self.query_vector(promql)
        if len(series) > 1:
            raise PrometheusQueryError(f"{promql!r} returned {len(series)} series: {[s[0] for s in series[:3]]}")
        return series[0][1] if series else None

    def wait_for_series(self, promql: str, *, within: float = 30, interval: float = 0.5) -> float:
        """Poll until `promql` has a (non-NaN) value; that value. Fails with the targets' health and the log."""

        def value() -> float | None:
            found = self.query(promql)
            return None if found is None or math.isnan(found) else found

        return wait_until(
            value,
            within=within,
            interval=interval,
            what=lambda: f"a series for {promql!r}; targets: {self.target_health()}\n{self.process.describe()}",
        )

    def target_health(self) -> list[str]:
        """One line per scrape target: address, health and the last scrape error."""
        try:
            active = self._active_targets()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return [f"(targets unavailable: {exc!r})"]
        return [f"{t['scrapeUrl']} {t['health']} {t.get('lastError') or ''}".strip() for t in active]

    def series(self, metric_selector: str) -> Iterator[dict[str, str]]:
        """Label sets of the series matching a selector (the /api/v1/series endpoint)."""
        body = self._client.get("/api/v1/series", params={"match[]": metric_selector}).json()
        if body.get("status") != "success":
            raise PrometheusQueryError(f"Prometheus refused {metric_selector!r}: {body.get('error')}")
        yield from body["data"]


class Pushgateway(ManagedProcess):
    """Prometheus' Pushgateway (Debian's `prometheus-pushgateway`, installed by `make prometheus`) on loopback:
    where batch runs push their numbers; a test's Prometheus scrapes it with honor_labels, as is usual."""

    def __init__(self, work_dir: Path, *, port: int | None = None) -> None:
        binary = shutil.which("prometheus-pushgateway")
        if binary is None:
            raise PrometheusMissing("prometheus-pushgateway is not on PATH: run `make prometheus`")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            # No persistence file: Debian points it at /var/lib, which every test's gateway would share.
            [binary, f"--web.listen-address=127.0.0.1:{self.port}", "--persistence.file=", "--log.level=warn"],
            name=f"pushgateway :{self.port}",
            log_path=work_dir / "pushgateway.log",
            ready_url=f"{self.url}/-/ready",
        )

    def samples(self, metric: str) -> list[tuple[dict[str, str], float]]:
        """Every sample of `metric` the gateway holds now (labels, value)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == metric
        ]
