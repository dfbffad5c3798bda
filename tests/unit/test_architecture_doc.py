"""docs/architecture.md stays true to the tree: every package (and every top-level module of the operator) is
named in it, and every package or module path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()
PACKAGES = (ROOT / "operator" / "modelrollout", ROOT / "model-server" / "modelserver")
# A package or module path as the doc writes one: `modes/`, `planning/online.py`, `kube/routers.router_for`.
PATH = re.compile(r"^[a-z_]+(/[a-z_]+)+(/|\.py)?(\.[a-z_]+)?$|^[a-z_]+/$")
# `name`, `name/`, `name.py` or a dotted/slashed path ending in one, in backticks.
NAMED = set(re.findall(r"`([^`\s]+)`", DOC))


def _mentions(relative: str) -> bool:
    """Whether the doc names this package or module (`kube/`, `kube`, `modes/online.py`, `modes.report`, ...)."""
    dotted = relative.replace("/", ".")
    last = relative.rsplit("/", 1)[-1]
    forms = {relative, relative + "/", relative + ".py", dotted, last, last + "/", last + ".py"}
    return any(token in forms or token.endswith("/" + relative) or token.endswith("." + dotted) for token in NAMED)


def test_every_package_and_operator_module_is_named() -> None:
    missing = []
    for base in PACKAGES:
        for init in sorted(base.rglob("__init__.py")):
            relative = init.parent.relative_to(base).as_posix()
            if relative != "." and not _mentions(relative):
                missing.append(f"{base.name}/{relative}/")
    operator = ROOT / "operator" / "modelrollout"
    for module in sorted(operator.glob("*.py")):
        if module.stem != "__init__" and not _mentions(module.stem):
            missing.append(f"modelrollout/{module.name}")
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_every_package_path_it_names_exists() -> None:
    gone = []
    for token in sorted(t for t in NAMED if PATH.match(t)):
        path = re.sub(r"\.(?!py$)[a-z_]+$", "", token.rstrip("/"))  # kube/routers.router_for -> kube/routers
        candidates = {token.rstrip("/"), path, path + ".py"}
        found = any((base / c).exists() or any(base.rglob(c)) for base in PACKAGES for c in candidates) or any(
            (ROOT / c).exists() for c in candidates
        )
        if not found:
            gone.append(token)
    assert not gone, f"docs/architecture.md names paths that do not exist: {gone}"
