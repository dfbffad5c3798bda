"""What a release ties together: the operator's default model server image is this release's, the release workflow
pushes the images the operator and the Dockerfile name, and hack/release_version.py refuses a tag that disagrees
with any version the release publishes."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.release_version import CHART, PACKAGES, main, mismatches

from modelrollout.settings import PlanningSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yaml"
MODEL_SERVER_IMAGE = "ghcr.io/modelrollout/model-server"
OPERATOR_IMAGE = "ghcr.io/modelrollout/operator"


def operator_version() -> str:
    version: str = tomllib.loads((REPO_ROOT / "operator" / "pyproject.toml").read_text())["project"]["version"]
    return version


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def test_default_image_is_this_releases_model_server() -> None:
    # The field's default, not PlanningSettings(): MODELROLLOUT_DEFAULT_IMAGE may be set where the tests run.
    assert PlanningSettings.model_fields["default_image"].default == f"{MODEL_SERVER_IMAGE}:{operator_version()}"


def test_the_workflow_pushes_every_dockerfile_target_under_the_names_the_operator_uses() -> None:
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE))
    released = workflow()["jobs"]["images"]["strategy"]["matrix"]["target"]
    assert {"operator", "model-server"} == set(released) <= targets
    prefix = workflow()["env"]["IMAGE_PREFIX"]
    assert {f"{prefix}/{target}" for target in released} == {MODEL_SERVER_IMAGE, OPERATOR_IMAGE}


def test_the_workflow_checks_the_tag_before_building() -> None:
    jobs = workflow()["jobs"]
    runs = [step.get("run", "") for step in jobs["versions"]["steps"]]
    assert any('hack/release_version.py "$GITHUB_REF_NAME"' in run for run in runs)
    assert jobs["images"]["needs"] == "versions"
    assert set(jobs["chart"]["needs"]) == {"versions", "images"}


@pytest.fixture
def release_tree(tmp_path: Path) -> Path:
    """The files release_version.py reads: the packages' pyproject files of this checkout, and a chart whose
    appVersion is the operator's version (as the chart's will be)."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        shutil.copy(REPO_ROOT / package / "pyproject.toml", tmp_path / package / "pyproject.toml")
    (tmp_path / CHART).parent.mkdir(parents=True)
    chart = f'apiVersion: v2\nname: modelrollout\nversion: 0.1.0\nappVersion: "{operator_version()}"\n'
    (tmp_path / CHART).write_text(chart)
    return tmp_path


def test_a_tag_that_matches_every_version_passes(release_tree: Path) -> None:
    assert mismatches(f"v{operator_version()}", release_tree) == []


def test_a_tag_ahead_of_the_versions_names_each_file(release_tree: Path) -> None:
    found = mismatches("v9.9.9", release_tree)
    assert [line.split(" ", 1)[0] for line in found] == [
        "operator/pyproject.toml",
        "model-server/pyproject.toml",
        "contract/pyproject.toml",
        str(CHART),
    ]
    assert all("the tag v9.9.9 says 9.9.9" in line for line in found)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("appVersion: {version}  # the image tag", None),
        ("appVersion: '{version}'", None),
        ('appVersion: "{version}.1"', "{chart} has appVersion {version}.1, the tag v{version} says {version}"),
        ("  appVersion: {version}", "{chart} has no appVersion"),  # indented: some other mapping's key
    ],
)
def test_the_charts_app_version(release_tree: Path, line: str, problem: str | None) -> None:
    version = operator_version()
    (release_tree / CHART).write_text(f"apiVersion: v2\nname: modelrollout\n{line.format(version=version)}\n")
    expected = [] if problem is None else [problem.format(chart=CHART, version=version)]
    assert mismatches(f"v{version}", release_tree) == expected


def test_a_missing_chart_is_a_mismatch(release_tree: Path) -> None:
    (release_tree / CHART).unlink()
    assert mismatches(f"v{operator_version()}", release_tree) == [
        f"{CHART} is missing: the chart is released with the images"
    ]


def test_a_tag_without_v_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["0.1.0"]) == 2
    assert "release tags look like v0.1.0" in capsys.readouterr().out
