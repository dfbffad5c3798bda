"""What one local kubelet is told: its node, its cluster, where pods live on disk, and which local program
stands for which image."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from pydantic import BaseModel, Field


class KubeletConfig(BaseModel):
    """Written as JSON by the test harness (testkit/kubelet/handle.py), read by `python -m ...kubelet`."""

    node_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    kubeconfig: Path
    work_dir: Path
    # Pods get 10.<pod_network>.x.y (made local to this machine by a route on lo); each kubelet on the machine
    # needs its own (xdist workers run one each). Not 127/8: EndpointSlices refuse loopback addresses.
    pod_network: int = Field(ge=1, le=254)
    # Image repository (or its last path segment) -> the local argv standing for its entry point.
    images: dict[str, list[str]]
    # Directories every process finds programs in (a `command` is looked up here) and imports from.
    path: list[Path] = Field(default_factory=list)
    pythonpath: list[Path] = Field(default_factory=list)
    extra_env: dict[str, str] = Field(default_factory=dict)
    restart_backoff_initial_s: float = Field(10.0, gt=0)  # the real kubelet's: 10 s doubling to 5 min
    restart_backoff_max_s: float = Field(300.0, gt=0)
    lease_duration_s: int = Field(40, ge=10)

    @property
    def node_ip(self) -> str:
        return f"10.{self.pod_network}.0.1"

    @property
    def pod_cidr(self) -> str:
        return f"10.{self.pod_network}.0.0/16"

    @property
    def services_file(self) -> Path:
        return self.work_dir / "services.json"

    def pod_addresses(self, count: int) -> tuple[str, ...]:
        """The first `count` addresses pods get (each pod takes the lowest free one)."""
        base = IPv4Address(self.node_ip)
        return tuple(str(base + i) for i in range(1, count + 1))
