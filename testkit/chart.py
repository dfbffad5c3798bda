"""The chart's tools (hack/build-chart-tools.sh builds them, cached by version) and the manifests rendered from it
(deploy/modelrollout.yaml), for the tests that install the operator the way a platform team does."""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART = REPO_ROOT / "charts" / "modelrollout"
DEPLOY = REPO_ROOT / "deploy" / "modelrollout.yaml"


@functools.cache
def tools() -> dict[str, str]:
    """HELM, KUBECONFORM, KUBE_SCORE, ACTIONLINT, HELM_PLUGINS, KUBE_SCHEMAS...: what the build script exports."""
    out = subprocess.run(
        [str(REPO_ROOT / "hack" / "build-chart-tools.sh"), "env"], check=True, capture_output=True, text=True
    ).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            found[name] = value
    return found


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_PLUGINS": tools()["HELM_PLUGINS"]}
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env.setdefault(name, f"/tmp/modelrollout-helm/{name.lower()}")
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run([tools()["HELM"], *args], env=env, check=check, capture_output=True, text=True)


def template(*args: str, release: str = "modelrollout", namespace: str = "modelrollout-system") -> list[dict[str, Any]]:
    """The chart's objects as `helm template` renders them with `args` (e.g. --set, -f)."""
    rendered = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def deployed() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(DEPLOY.read_text()) if doc]


def deployed_rules() -> list[dict[str, Any]]:
    """Every rule of the ClusterRoles deploy/ installs: what the operator may do in every namespace, as installed
    (leader election's Role, in its own namespace only, is testkit.rbac's)."""
    return [rule for doc in deployed() if doc["kind"] == "ClusterRole" for rule in doc.get("rules", [])]
