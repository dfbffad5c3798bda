"""The images' installs, run the way the images run them, without Docker.

hack/install-image.sh is the script the Dockerfile RUNs, reading the same requirements.lock; here it installs the
operator and the model server into fresh prefixes (uv's own cache makes that fast once warm). Everything after
runs as the images' user (uid 10001) from those prefixes, owned by root, with a HOME it cannot write and its
TMPDIR as the only writable place, the way the operator's pods run them (read-only root filesystem, /tmp an
emptyDir):

- the model server serves a model of every format it has a runtime for (sklearn, onnx, xgboost, lightgbm,
  custom), one fetched from a real S3-compatible store (SeaweedFS) and one over HTTP as the examples' URIs are,
  and answers an Open Inference Protocol v2 request with what the training library predicts;
- the operator's commands run, every module of its package imports, and `modelrollout run` brings an example
  to Healthy against a real API server;
- nothing could be written into the prefixes, and nothing was.

The prefixes are not made read-only here: the script's output is checked as it comes, because the image's
layers are that output (copied as they are) and a permissive mode would reach the image unchanged.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import xgboost
from kubernetes_asyncio import client
from testkit.crds import install_crds
from testkit.ports import free_port
from testkit.processes import read_log, terminate, wait_until_answers
from testkit.s3 import CREDENTIALS, S3Server

from modelrollout.settings import PlanningSettings
from tests.conftest import Cluster
from tests.integration.operator.k8s import K8s
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
INSTALL = REPO_ROOT / "hack" / "install-image.sh"
RUN_UID = 10001  # USER in the Dockerfile
TARGETS = ("operator", "model-server")
# Our packages in each image: each must import whole, module by module.
PACKAGES = {
    "operator": {"modelrollout": REPO_ROOT / "operator", "modelrollout_contract": REPO_ROOT / "contract"},
    "model-server": {"modelserver": REPO_ROOT / "model-server", "modelrollout_contract": REPO_ROOT / "contract"},
}
# What modelserver[all] adds to the model server's own dependencies, by import name: the extras onnx (two),
# xgboost, lightgbm, s3 and stream. Our runtimes import them only when a model asks, so they are imported here.
EXTRAS = ("onnxruntime", "onnx", "xgboost", "lightgbm", "boto3", "confluent_kafka")

# Run by the prefix's Python as the run user: import every module of the packages named in argv[1] (comma
# separated; __main__ modules are skipped, importing one runs the command) and the modules named after it.
IMPORT_ALL = """
import importlib, json, pkgutil, sys

def fail(name):
    raise ImportError(f"cannot import {name}")

names = []
for top in filter(None, sys.argv[1].split(",")):
    names.append(importlib.import_module(top).__name__)
    for info in pkgutil.walk_packages(importlib.import_module(top).__path__, top + ".", onerror=fail):
        if not info.name.endswith(".__main__"):
            names.append(importlib.import_module(info.name).__name__)
for extra in sys.argv[2:]:
    importlib.import_module(extra)
print(json.dumps(names))
"""

# Run by the prefix's Python as the run user: every way of writing into the prefix it can think of; prints, for
# each, the errno name it failed with, or "written".
TRY_WRITES = """
import errno, json, os, sys
from pathlib import Path

prefix, package = Path(sys.argv[1]), Path(sys.argv[2])
attempts = {
    "file in the prefix": lambda: (prefix / "probe").write_text("x"),
    "executable on PATH": lambda: (prefix / "bin" / "probe").write_text("x"),
    "a .pth (code run at every start)": lambda: (package.parent / "probe.pth").write_text("import os"),
    "a package's bytecode": lambda: (package / "__pycache__" / "probe.cpython-311.pyc").write_bytes(b"x"),
    "appending to a module": lambda: open(package / "__init__.py", "a").close(),
    "a directory in site-packages": lambda: (package.parent / "probe").mkdir(),
    "removing the interpreter link": lambda: (prefix / "bin" / "python").unlink(),
}
found = {}
for what, attempt in attempts.items():
    try:
        attempt()
        found[what] = "written"
    except OSError as exc:
        found[what] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(found))
"""


# --- the run user -------------------------------------------------------------------------------------------------


def as_run_user(argv: Sequence[str]) -> list[str]:
    return ["setpriv", "--reuid", str(RUN_UID), "--regid", str(RUN_UID), "--clear-groups", *argv]


def run_user_dir(path: Path) -> Path:
    """A directory only the run user may use: its TMPDIR (the pod's /tmp emptyDir)."""
    path.mkdir(parents=True)
    os.chown(path, RUN_UID, RUN_UID)
    path.chmod(0o700)
    return path


def readable_dir(path: Path) -> Path:
    """A root-owned directory the run user may read but not write (its HOME, the models' folder)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def base_python() -> str:
    """A Python 3.11 the run user can execute, for the prefixes' virtualenvs: this test's own interpreter may live
    under root's home, which the run user cannot enter (as the image's python:3.11 is /usr/local/bin)."""
    probe = "import sys; assert sys.version_info[:2] == (3, 11), sys.version"
    for candidate in ("/usr/local/bin/python3.11", "/usr/bin/python3.11", shutil.which("python3.11")):
        if candidate and Path(candidate).exists():
            tried = subprocess.run(as_run_user([candidate, "-c", probe]), capture_output=True, check=False, cwd="/")
            if tried.returncode == 0:
                return candidate
    pytest.fail(f"no Python 3.11 that uid {RUN_UID} can run (tried /usr/local/bin, /usr/bin and PATH)")


def uv() -> str:
    beside = Path(sys.executable).parent / "uv"  # `make venv` installs it into .venv
    found = str(beside) if beside.exists() else shutil.which("uv")
    assert found, "uv is needed (make venv installs it)"
    return found


# --- prefixes -----------------------------------------------------------------------------------------------------

Snapshot = dict[str, tuple[int, int, int, int]]


def snapshot(prefix: Path) -> Snapshot:
    """Every entry of the tree: (mode, owner, size, mtime) by relative path; a file created, removed or written
    anywhere changes it."""
    found: Snapshot = {}
    for directory, subdirectories, files in os.walk(prefix):
        for name in [*subdirectories, *files]:
            path = Path(directory, name)
            info = path.lstat()
            found[str(path.relative_to(prefix))] = (info.st_mode, info.st_uid, info.st_size, info.st_mtime_ns)
    return found


@dataclass
class Prefix:
    target: str
    path: Path
    install_s: float
    files: Snapshot = field(default_factory=dict)

    @property
    def site_packages(self) -> Path:
        return next((self.path / "lib").glob("python3.*/site-packages"))

    def run_env(self, *, home: Path, tmp: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """What a process of the image sees: its PATH and Python flags (the Dockerfile's ENV), a HOME it cannot
        write (the image's user has none) and TMPDIR as the only writable place. Nothing of this test's own."""
        return {
            "PATH": f"{self.path / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "LANG": "C.UTF-8",
            **(extra or {}),
        }

    def unchanged(self) -> None:
        now = snapshot(self.path)
        changed = sorted(k for k in now.keys() | self.files.keys() if now.get(k) != self.files.get(k))
        assert not changed, f"{self.target}: written at run time: {changed[:20]}"


@dataclass(frozen=True)
class Sandbox:
    """Where the test's processes live: a root-owned directory the run user can traverse (pytest's tmp_path sits
    in root's 0700 /tmp/pytest-of-root), a HOME it cannot write, and a TMPDIR per process."""

    root: Path
    home: Path

    def tmp(self, name: str) -> Path:
        return run_user_dir(self.root / "run" / name)

    def run(
        self, prefix: Prefix, *argv: str, extra: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            as_run_user(argv),
            env=prefix.run_env(home=self.home, tmp=self.tmp(f"{argv[0].rsplit('/', 1)[-1]}-{time.monotonic_ns()}"),
                               extra=extra),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-5000:]}"
        return done


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    root = readable_dir(Path(tempfile.mkdtemp(prefix="mr-image-", dir="/tmp")))
    yield Sandbox(root=root, home=readable_dir(root / "home"))
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def s3_starting(sandbox: Sandbox) -> Iterator[Future[S3Server]]:
    """SeaweedFS, started in the background: most of its ~10 s start is waiting, which the installs fill."""
    server = S3Server(sandbox.root / "s3")

    def start() -> S3Server:
        server.start()
        return server

    with ThreadPoolExecutor(max_workers=1) as pool:
        started = pool.submit(start)
        yield started
        started.exception()  # the start has ended (either way) before the server is stopped
        # Killed: a graceful stop waits seconds for its volume server to linger and flush, and the data is scratch.
        server.stop(graceful=False)


@pytest.fixture(scope="module")
def prefixes(sandbox: Sandbox, s3_starting: Future[S3Server]) -> dict[str, Prefix]:
    """Both targets installed by hack/install-image.sh into fresh prefixes, with umask 022 as in a Docker build."""
    python, installer = base_python(), uv()
    found: dict[str, Prefix] = {}
    for target in TARGETS:
        path = sandbox.root / target
        started = time.monotonic()
        done = subprocess.run(
            [str(INSTALL), target, str(path)],
            env={**os.environ, "PYTHON": python, "UV": installer},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            umask=0o022,
        )
        assert done.returncode == 0, f"install-image.sh {target} exited {done.returncode}:\n{done.stderr}"
        prefix = Prefix(target, path, time.monotonic() - started)
        prefix.files = snapshot(path)
        found[target] = prefix
        print(f"hack/install-image.sh {target}: {prefix.install_s:.1f} s, {len(prefix.files)} entries")
    return found


@pytest.fixture(scope="module")
def s3(s3_starting: Future[S3Server], prefixes: dict[str, Prefix]) -> S3Server:
    """SeaweedFS once started; asks for the prefixes only so that they are installed while it starts."""
    return s3_starting.result(timeout=120)


# --- models -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One model server: its model's URI and format, the rows sent and the labels the library predicts."""

    name: str
    args: tuple[str, ...]
    rows: list[list[float]]
    labels: list[Any]
    env: Mapping[str, str] = field(default_factory=dict)


def binary_labels(probabilities: np.ndarray[Any, Any]) -> list[int]:
    return [int(p) for p in (probabilities >= 0.5)]


@pytest.fixture(scope="module")
def http_models(sandbox: Sandbox) -> Iterator[tuple[Path, str]]:
    """A plain HTTP server over a folder, for a model fetched by http:// (the examples name one by https://)."""
    root = readable_dir(sandbox.root / "www")
    port = free_port()
    log = sandbox.root / "www.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield root, f"http://127.0.0.1:{port}"
    finally:
        terminate(process)


@pytest.fixture(scope="module")
def cases(sandbox: Sandbox, s3: S3Server, http_models: tuple[Path, str]) -> list[Case]:
    """A model of every format the model server has a runtime for (modelserver/runtimes), saved where the run user
    can read it; the sklearn one in S3 as most examples have theirs, the xgboost one over HTTP as online-shadow's."""
    local = readable_dir(sandbox.root / "models")
    www, base_url = http_models
    x = builders.binary_data()[0][:8]

    sklearn = builders.sklearn_logistic(readable_dir(sandbox.root / "upload"))
    store = s3.client()  # type: ignore[no-untyped-call]  # boto3's client, typed only by stubs we do not ask for
    store.create_bucket(Bucket="models")
    store.upload_file(str(sklearn.path), "models", "churn/7/model.joblib")
    onnx = builders.onnx_logistic(local)
    booster = builders.xgboost_binary(www)
    names = [f"x{i}" for i in range(x.shape[1])]
    xgb_probabilities = booster.estimator.predict(xgboost.DMatrix(x.astype(np.float32), feature_names=names))
    lightgbm = builders.lightgbm_binary(local)
    custom = builders.custom_module(readable_dir(sandbox.root / "custom"))
    limit = custom / "limit.json"
    limit.write_text(json.dumps({"limit": 3.0}))
    for folder in (local, www, custom):
        for path in folder.iterdir():
            path.chmod(0o644)
    s3_env = {**CREDENTIALS, "MODELSERVER_S3_ENDPOINT_URL": s3.url}
    rows = x.tolist()
    return [
        Case("sklearn", ("--model-uri", "s3://models/churn/7/model.joblib", "--format", "sklearn"), rows,
             sklearn.estimator.predict(x).tolist(), env=s3_env),
        Case("onnx", ("--model-uri", onnx.path.as_uri(), "--format", "onnx"), rows, onnx.estimator.predict(x).tolist()),
        Case("xgboost", ("--model-uri", f"{base_url}/{booster.path.name}", "--format", "xgboost"), rows,
             binary_labels(xgb_probabilities)),
        Case("lightgbm", ("--model-uri", str(lightgbm.path), "--format", "lightgbm"), rows,
             binary_labels(lightgbm.estimator.predict(x))),
        Case("custom", ("--model-uri", str(limit), "--format", "custom", "--model-class",
                        f"{builders.CUSTOM_MODULE}:Thresholder"), [[0.0, 0.0], [1.0, 2.0]], ["low", "high"],
             env={"PYTHONPATH": str(custom)}),
    ]  # fmt: skip


# --- serving ------------------------------------------------------------------------------------------------------


@dataclass
class Served:
    case: Case
    process: subprocess.Popen[bytes]
    url: str
    log: Path


def start_as_run_user(
    sandbox: Sandbox, prefix: Prefix, argv: Sequence[str], *, tmp: Path, log: Path, extra: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            as_run_user(argv),
            env=prefix.run_env(home=sandbox.home, tmp=tmp, extra=extra),
            cwd="/",
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def serve(sandbox: Sandbox, prefix: Prefix, case: Case) -> Served:
    port = free_port()
    log = sandbox.root / f"serve-{case.name}.log"
    argv = [str(prefix.path / "bin" / "modelserver"), "serve", "--host", "127.0.0.1", "--port", str(port),
            "--grpc-port", str(free_port()), "--model-name", case.name, "--model-version", "1", *case.args]  # fmt: skip
    process = start_as_run_user(sandbox, prefix, argv, tmp=sandbox.tmp(f"serve-{case.name}"), log=log, extra=case.env)
    return Served(case, process, f"http://127.0.0.1:{port}", log)


def process_uid(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Uid:"))
    return int(line.split()[1])


def infer(served: Served) -> list[Any]:
    """The predicted labels over Open Inference Protocol v2, sent in the datatype the model's metadata asks."""
    name = served.case.name
    metadata = httpx.get(f"{served.url}/v2/models/{name}/versions/1", timeout=30).json()
    request = {"inputs": [{"name": "input-0", "shape": [len(served.case.rows), len(served.case.rows[0])],
                           "datatype": metadata["inputs"][0]["datatype"], "data": served.case.rows}]}  # fmt: skip
    response = httpx.post(f"{served.url}/v2/models/{name}/versions/1/infer", json=request, timeout=30)
    assert response.status_code == 200, f"{name}: {response.status_code} {response.text}\n{read_log(served.log)}"
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    labels: list[Any] = outputs["predict"]["data"]
    return labels


def test_model_server_serves_every_format_as_the_run_user(
    sandbox: Sandbox, prefixes: dict[str, Prefix], cases: list[Case]
) -> None:
    prefix = prefixes["model-server"]
    started = time.monotonic()
    # All at once, as pods would start: the imports of five servers overlap.
    servers = [serve(sandbox, prefix, case) for case in cases]
    try:
        for served in servers:
            wait_until_answers(f"{served.url}/v2/health/ready", served.process, served.log, within=180)
        ready_s = time.monotonic() - started
        for served in servers:
            assert process_uid(served.process.pid) == RUN_UID
            assert infer(served) == served.case.labels, read_log(served.log)
        print(f"{len(servers)} model servers ready in {ready_s:.1f} s: {', '.join(c.name for c in cases)}")
    finally:
        codes = {served.case.name: terminate(served.process) for served in servers}
    # A clean exit: shutting down (removing the downloaded model, the metrics directory) needed no write outside
    # TMPDIR either.
    assert codes == dict.fromkeys(codes, 0), {name: read_log(s.log) for name, s in zip(codes, servers, strict=True)}
    prefix.unchanged()
    assert not any(sandbox.home.iterdir())


def source_modules(package: str, project: Path) -> set[str]:
    """Every module of `package` in this checkout (what the installed package must hold)."""
    found = set()
    for path in (project / package).rglob("*.py"):
        parts = path.relative_to(project).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] != "__main__":
            found.add(".".join(parts))
    return found


@pytest.mark.parametrize("target", TARGETS)
def test_every_module_and_runtime_imports_as_the_run_user(
    sandbox: Sandbox, prefixes: dict[str, Prefix], target: str
) -> None:
    """Every dependency is installed: each module of our packages imports, and so does each of modelserver[all]'s
    extras (our runtimes import those only when a model of their format is loaded)."""
    prefix = prefixes[target]
    packages = PACKAGES[target]
    extras = EXTRAS if target == "model-server" else ()
    done = sandbox.run(prefix, str(prefix.path / "bin" / "python"), "-c", IMPORT_ALL, ",".join(packages), *extras)
    imported = set(json.loads(done.stdout))
    expected = set().union(*(source_modules(package, project) for package, project in packages.items()))
    assert imported == expected
    prefix.unchanged()


def test_operator_commands_run_as_the_run_user(sandbox: Sandbox, prefixes: dict[str, Prefix]) -> None:
    prefix = prefixes["operator"]
    bin_dir = prefix.path / "bin"
    usage = sandbox.run(prefix, str(bin_dir / "modelrollout"), "--help").stdout
    assert "run" in usage
    assert "crd" in usage
    crd = sandbox.run(prefix, str(bin_dir / "modelrollout"), "crd").stdout
    assert crd == (REPO_ROOT / "crds" / "modelrollout.dev_modeldeployments.yaml").read_text()
    assert "promote" in sandbox.run(prefix, str(bin_dir / "kubectl-modelrollout"), "--help").stdout
    prefix.unchanged()


async def test_operator_runs_an_example_to_healthy_as_the_run_user(
    sandbox: Sandbox, prefixes: dict[str, Prefix], cluster: Cluster, kube_api: client.ApiClient, namespace: str
) -> None:
    """`modelrollout run` from the prefix, as the run user, against the real API server: the example's Deployment
    names the default model server image, and the ModelDeployment turns Healthy."""
    prefix = prefixes["operator"]
    await install_crds(kube_api)
    tmp = sandbox.tmp(f"operator-{namespace}")
    # Flattened (certificates inline) and the run user's own: the cluster's files sit under root's home.
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(cluster.kubectl("config", "view", "--raw", "--minify", "--flatten").stdout)
    os.chown(kubeconfig, RUN_UID, RUN_UID)
    kubeconfig.chmod(0o600)
    liveness = free_port()
    # POD_ID: kopf names the operator after it, as the chart's Deployment sets it (downward API, metadata.name);
    # without it kopf asks the passwd database for the user's name, and uid 10001 has an entry in the image
    # (useradd) but none on this machine.
    settings = {"POD_ID": f"modelrollout-{namespace}", "KUBECONFIG": str(kubeconfig),
                "MODELROLLOUT_LIVENESS_PORT": str(liveness), "MODELROLLOUT_METRICS_PORT": str(free_port()),
                "MODELROLLOUT_RECONCILE_INTERVAL_S": "5"}  # fmt: skip
    log = sandbox.root / f"operator-{namespace}.log"
    argv = [str(prefix.path / "bin" / "modelrollout"), "run", "--namespace", namespace]
    process = start_as_run_user(sandbox, prefix, argv, tmp=tmp, log=log, extra=settings)
    try:
        wait_until_answers(f"http://127.0.0.1:{liveness}/healthz", process, log, within=60)
        assert process_uid(process.pid) == RUN_UID
        k8s = K8s(kube_api, namespace)
        name = (await k8s.create("online-direct.yaml"))["metadata"]["name"]
        await k8s.healthy(name)
        [deployment] = await k8s.deployments(name)
        [container] = deployment.spec.template.spec.containers
        # The code's default: the operator ran with nothing of this test's environment (MODELROLLOUT_* included).
        assert container.image == PlanningSettings.model_fields["default_image"].default
    except BaseException:
        print(read_log(log))
        raise
    finally:
        code = terminate(process)
    assert code == 0, read_log(log)
    prefix.unchanged()


@pytest.mark.parametrize("target", TARGETS)
def test_prefix_is_read_only_to_the_run_user(sandbox: Sandbox, prefixes: dict[str, Prefix], target: str) -> None:
    prefix = prefixes[target]
    writable = [
        f"{path} ({stat.filemode(mode)}, uid {uid})"
        for path, (mode, uid, _, _) in prefix.files.items()
        if not stat.S_ISLNK(mode) and (uid != 0 or mode & (stat.S_IWGRP | stat.S_IWOTH))
    ]
    assert not writable, "not root's alone to write"

    package = prefix.site_packages / next(iter(PACKAGES[target]))
    done = sandbox.run(prefix, str(prefix.path / "bin" / "python"), "-c", TRY_WRITES, str(prefix.path), str(package))
    refused = json.loads(done.stdout)
    assert refused == dict.fromkeys(refused, errno.errorcode[errno.EACCES])

    # Compiled at install time: a start reads bytecode, never compiles (it could not keep what it compiled).
    uncompiled = [
        str(path.relative_to(prefix.site_packages))
        for path in prefix.site_packages.rglob("*.py")
        # The prefixes' Python is 3.11, as is this test's: the same cache tag.
        if not Path(importlib.util.cache_from_source(str(path))).exists()
    ]
    assert not uncompiled, f"{len(uncompiled)} modules without bytecode, e.g. {uncompiled[:10]}"
    prefix.unchanged()
