"""The processes the bench runs and reads: the bench cluster (hack/cluster-up.sh, hack/cluster-down.sh), the code
of each version measured (a commit exported with `git archive`, or a working tree as it is), the operator process
of a version, and /proc readings of a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.operator.stats import cpu_ticks, status_kib
from testkit.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"
TREE_PARTS = ("operator", "contract", "crds")  # what running the operator of a version needs
LEASE_NAMESPACE = "default"
DEFAULT_IMAGE = "registry.example/modelrollout/model-server:bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchFailed(RuntimeError):
    """A step of the bench could not be carried out; the message says which."""


# --- cluster -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    nodes: int
    node_pods: int
    service_cidr: str

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CLUSTER_NAME": self.name,
            "NODES": str(self.nodes),
            "NODE_PODS": str(self.node_pods),
            "SERVICE_CIDR": self.service_cidr,
        }


def cluster_up(spec: ClusterSpec, log: Path) -> Path:
    """A fresh cluster (any old one of that name is deleted first); its kubeconfig."""
    cluster_down(spec, log)
    with log.open("ab") as out:
        done = subprocess.run(
            [str(HACK / "cluster-up.sh")], env=spec.env(), stdout=subprocess.PIPE, stderr=out, text=True, check=False
        )
    if done.returncode != 0:
        raise BenchFailed(f"hack/cluster-up.sh failed ({done.returncode}); see {log}")
    return Path(done.stdout.strip().splitlines()[-1])


def cluster_down(spec: ClusterSpec, log: Path) -> None:
    with log.open("ab") as out:
        subprocess.run([str(HACK / "cluster-down.sh")], env=spec.env(), stdout=out, stderr=out, check=False)


def component_pid(kubeconfig: Path, component: str) -> int | None:
    """The pid of a control-plane process of a kwokctl binary-runtime cluster (it keeps them beside the
    kubeconfig)."""
    try:
        return int((kubeconfig.parent / "pids" / f"{component}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


# --- versions ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    label: str
    root: Path  # holds operator/, contract/ and crds/
    describe: str


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True).stdout


def materialize(label: str, ref: str | None, workdir: Path) -> Tree:
    """`ref` None or a directory: that tree as it is (None: this checkout). A commit: its operator, contract and
    crds exported once into workdir/trees/<sha> (`git archive`, no worktree to clean up)."""
    if ref is None or Path(ref).is_dir():
        root = REPO_ROOT if ref is None else Path(ref).resolve()
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", *TREE_PARTS],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        state = " with uncommitted changes" if dirty else ""
        return Tree(label, root, f"the working tree {root} (HEAD {head or '?'}{state})")
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    root = workdir / "trees" / sha[:12]
    if not (root / "operator").is_dir():
        scratch = root.with_name(root.name + ".partial")
        subprocess.run(["rm", "-rf", str(scratch)], check=True)
        scratch.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", sha, *TREE_PARTS], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)
        scratch.rename(root)
    subject = git("log", "-1", "--format=%s", sha).strip()
    return Tree(label, root, f"commit {sha[:7]} ({subject[:80]})")


# --- /proc ---------------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    try:
        return cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def memory_kib(pid: int, field: str = "VmRSS") -> int | None:
    try:
        return status_kib(Path(f"/proc/{pid}/status").read_text(), field)
    except OSError:
        return None


# --- the operator --------------------------------------------------------------------------------------------------


class OperatorProcess:
    """`python -m modelrollout.main run` of one version's tree (this checkout's .venv: the dependencies are the
    same), on its own ports, leader election on with the Lease in `default`; every other setting at its default
    (MODELROLLOUT_* of the caller's environment are dropped)."""

    def __init__(self, tree: Tree, *, kubeconfig: Path, namespaces: list[str] | None, log: Path) -> None:
        self.tree = tree
        self.log = log
        self.command = [sys.executable, "-m", "modelrollout.main", "run"]
        for namespace in namespaces or []:
            self.command += ["--namespace", namespace]
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("MODELROLLOUT_") and k != "PYTHONPATH"}
        self.env = {
            **inherited,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": f"{tree.root / 'operator'}{os.pathsep}{tree.root / 'contract'}",
            "MODELROLLOUT_LEASE_NAMESPACE": LEASE_NAMESPACE,
            "MODELROLLOUT_LEADER_IDENTITY": f"bench-{tree.label}",
            "MODELROLLOUT_METRICS_PORT": str(free_port()),
            "MODELROLLOUT_LIVENESS_PORT": str(free_port()),
            "MODELROLLOUT_DEFAULT_IMAGE": DEFAULT_IMAGE,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # wall clock
        self.peak_rss_kib: int | None = None
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchFailed("the operator is not running")
        return self.process.pid

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['MODELROLLOUT_METRICS_PORT']}/metrics"

    def start(self) -> None:
        with self.log.open("ab") as out:
            # cwd: the log's directory, so nothing of the repository root is importable but the tree's packages
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.log.parent
            )
        self.started_at = time.time()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid) if self.alive() else None

    def rss_kib(self) -> int | None:
        return memory_kib(self.pid) if self.alive() else None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the operator releases its Lease), SIGKILL after `timeout`; its exit code."""
        process = self.process
        if process is None:
            return self.exit_code
        if process.poll() is None:
            self.peak_rss_kib = memory_kib(process.pid, "VmHWM")
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.exit_code = process.returncode
        self.process = None
        return self.exit_code
