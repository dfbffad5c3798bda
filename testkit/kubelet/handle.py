"""The local kubelet as a test fixture: a process next to the test, its Node on the test's API server, and what a
test may ask it (the processes behind a pod, the logs of a namespace's pods)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from testkit.kubelet.config import KubeletConfig
from testkit.kubelet.kubelet import NODE_LABEL
from testkit.processes import ManagedProcess, read_log
from testkit.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# The images our operator names, by repository's last segment: the model server image runs `python -m
# modelserver` (its ENTRYPOINT in the Dockerfile) from this checkout's virtualenv.
IMAGES: dict[str, list[str]] = {"model-server": [str(VENV_BIN / "python"), "-m", "modelserver"]}
# Pods that should run here select it; kwok's fake nodes stay for pods that should not run at all.
NODE_SELECTOR = {NODE_LABEL: "true"}


def pod_network_of_worker() -> int:
    """10.<n>.0.0/16 per pytest-xdist worker (gw0 -> 201, gw1 -> 202, ...; 200 without xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return 201 + int(worker[2:]) if worker.startswith("gw") else 200


class KubeletProcess(ManagedProcess):
    """`python -m testkit.kubelet` for the cluster of `kubeconfig`; `start()` returns once its Node is Ready."""

    def __init__(self, *, kubeconfig: Path, work_dir: Path, node_name: str = "", pod_network: int = 0) -> None:
        network = pod_network or pod_network_of_worker()
        self.config = KubeletConfig(
            node_name=node_name or f"local-{network}",
            kubeconfig=kubeconfig,
            work_dir=work_dir,
            pod_network=network,
            images=IMAGES,
            path=[VENV_BIN],
            pythonpath=[REPO_ROOT],  # custom model classes of the tests (testkit/faulty.py) import from here
        )
        work_dir.mkdir(parents=True, exist_ok=True)
        config_path = work_dir / "kubelet.json"
        config_path.write_text(self.config.model_dump_json(indent=2))
        self.kubeconfig = kubeconfig
        super().__init__(
            [sys.executable, "-m", "testkit.kubelet", str(config_path)],
            name=f"local kubelet {self.config.node_name}",
            log_path=work_dir / "kubelet.log",
            cwd=REPO_ROOT,
        )

    def start(self, *, wait: bool = True) -> None:
        super().start(wait=False)
        if wait:
            self.wait_node_ready()

    def wait_node_ready(self, within: float = 30) -> None:

        def ready() -> bool:
            if not self.alive:
                raise AssertionError(f"the local kubelet exited:\n{self.log()}")
            found = self._kubectl("get", "node", self.config.node_name, "-o", "json")
            conditions = json.loads(found.stdout)["status"].get("conditions") or [] if found.returncode == 0 else []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_until(
            ready, within=within, interval=0.2, what=lambda: f"node {self.config.node_name} Ready:\n{self.log()}"
        )

    def _kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True, text=True, check=False
        )

    def pod_dirs(self, namespace: str) -> list[Path]:
        return sorted((self.config.work_dir / "pods").glob(f"{namespace}_*"))

    def describe_namespace(self, namespace: str, *, tail: int = 6000) -> str:
        """For failure messages: the log of every container this kubelet ran in `namespace`."""
        parts = [
            f"--- pod {pod_dir.name} container {log.stem} ---\n{read_log(log, tail=tail)}"
            for pod_dir in self.pod_dirs(namespace)
            for log in sorted((pod_dir / "logs").glob("*.log"))
        ]
        return "\n".join(parts) or f"(no pod of {namespace} ran on {self.config.node_name})"


def process_of(container_id: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the live process behind a container status's containerID (`local://<pid>`)."""
    pid = int(container_id.removeprefix("local://"))
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    environ = Path(f"/proc/{pid}/environ").read_bytes().rstrip(b"\0").split(b"\0")
    env = dict(entry.decode().split("=", 1) for entry in environ if b"=" in entry)
    return [part.decode() for part in argv], env
