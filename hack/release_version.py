"""The versions a release tag must agree with, checked by the release workflow before anything is built:

    python3 hack/release_version.py v0.1.0

exits 1, with one `::error::` line per mismatch (GitHub shows them on the run), unless the tag minus its `v` is the
version of our three packages and the Helm chart's appVersion. The images are tagged from the git tag, the
operator's default model server image (PlanningSettings.default_image, held to operator/pyproject.toml's version
by a unit test) names that tag, and so does the chart's appVersion: a release whose numbers differ would deploy
an operator pointing at images that were never pushed. Standard library only: the workflow runs it on the
runner's own Python before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("operator", "model-server", "contract")
CHART = Path("charts/modelrollout/Chart.yaml")
# appVersion is a top-level scalar of Chart.yaml, quoted or not: a pattern reads it without a YAML parser.
_APP_VERSION = re.compile(r"""^appVersion:[ \t]*(["']?)([^"'\s#]+)\1[ \t]*(?:#.*)?$""", re.MULTILINE)


def release_version(tag: str) -> str:
    """`v0.1.0` -> `0.1.0`; the tags the workflow runs for all start with `v`."""
    if not tag.startswith("v") or len(tag) == 1:
        raise ValueError(f"release tags look like v0.1.0, not {tag!r}")
    return tag[1:]


def mismatches(tag: str, root: Path = REPO_ROOT) -> list[str]:
    """What disagrees with `tag`, one sentence each; empty when the release may go ahead."""
    version = release_version(tag)
    found = []
    for package in PACKAGES:
        path = Path(package, "pyproject.toml")
        declared = tomllib.loads((root / path).read_text())["project"]["version"]
        if declared != version:
            found.append(f"{path} has version {declared}, the tag {tag} says {version}")
    if not (root / CHART).exists():
        found.append(f"{CHART} is missing: the chart is released with the images")
        return found
    match = _APP_VERSION.search((root / CHART).read_text())
    if match is None:
        found.append(f"{CHART} has no appVersion")
    elif match[2] != version:
        found.append(f"{CHART} has appVersion {match[2]}, the tag {tag} says {version}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: release_version.py <tag, e.g. v0.1.0>", file=sys.stderr)
        return 2
    try:
        found = mismatches(argv[0])
    except ValueError as exc:
        print(f"::error::{exc}")
        return 2
    for problem in found:
        print(f"::error::{problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
