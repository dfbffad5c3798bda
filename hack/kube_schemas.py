"""Kubernetes' JSON schemas for kubeconform, offline: from the PyPI wheel kubernetes-validate, made standalone.

The wheel ships, per Kubernetes minor, one file per type (strict: additionalProperties false, and not) whose
references point into a shared _definitions.json by an absolute path under the $id https://kubernetes.io/api/...:
kubeconform would resolve them over the network. We write one self-contained file per kind instead, the kind's schema
with every definition it reaches in its own $defs, in kubeconform's default layout:

    OUT_DIR/v1.33.0-standalone-strict/deployment-apps-v1.json   (and v1.33.0-standalone/ for non-strict runs)

so that `kubeconform -schema-location OUT_DIR -kubernetes-version 1.33.0 [-strict]` reads them and nothing else.

    python3 hack/kube_schemas.py WHEEL 1.33.0 OUT_DIR

Standard library only: hack/build-chart-tools.sh runs it before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

ROOT = "kubernetes_validate/kubernetes-json-schema"
DEFINITIONS_REF = "/api/_definitions.json#/$defs/"  # how a type file refers to the shared definitions
LOCAL_REF = "#/$defs/"  # how the definitions refer to each other, and how our standalone files do

Json = Any  # a decoded JSON document


def ref_name(ref: str) -> str:
    """The definition a $ref names, for the two forms the wheel uses."""
    for prefix in (DEFINITIONS_REF, LOCAL_REF):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    raise ValueError(f"unexpected $ref {ref!r}")


def localize(node: Json, names: set[str]) -> Json:
    """A copy of node whose $refs all point into the document's own $defs; the names they reach join `names`."""
    if isinstance(node, dict):
        out: dict[str, Json] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                name = ref_name(value)
                names.add(name)
                out[key] = LOCAL_REF + name
            else:
                out[key] = localize(value, names)
        return out
    if isinstance(node, list):
        return [localize(item, names) for item in node]
    return node


def standalone(schema: dict[str, Json], definitions: dict[str, Json]) -> dict[str, Json]:
    """The schema with the transitive closure of the definitions it references embedded under $defs."""
    pending: set[str] = set()
    root: dict[str, Json] = localize({k: v for k, v in schema.items() if k != "$id"}, pending)
    defs: dict[str, Json] = {}
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        if name not in definitions:
            raise ValueError(f"$ref to {name!r}, which _definitions.json does not define")
        found: set[str] = set()
        defs[name] = localize(definitions[name], found)
        pending |= found - defs.keys()
    if defs:
        root["$defs"] = dict(sorted(defs.items()))
    return root


def file_name(gvk: dict[str, str]) -> str:
    """kubeconform's name for a kind: <kind>[-<first label of the group>]-<version>.json, lower case."""
    group = gvk.get("group", "")
    parts = [gvk["kind"]] + ([group.split(".")[0]] if group else []) + [gvk["version"]]
    return "-".join(parts).lower() + ".json"


def convert(wheel: zipfile.ZipFile, version: str, strict: bool, out: Path) -> int:
    """Write the standalone schema of every kind of one flavour; returns how many files were written."""
    source = PurePosixPath(ROOT, f"v{version}-local{'-strict' if strict else ''}")
    names = [n for n in wheel.namelist() if PurePosixPath(n).parent == source]
    if not names:
        available = sorted({PurePosixPath(n).parts[2] for n in wheel.namelist() if n.startswith(ROOT + "/")})
        raise SystemExit(f"the wheel has no {source.name}; it has: {' '.join(available)}")
    definitions: dict[str, Json] = json.loads(wheel.read(str(source / "_definitions.json")))["$defs"]
    target = out / f"v{version}-standalone{'-strict' if strict else ''}"
    target.mkdir(parents=True)
    written: dict[str, str] = {}
    for name in sorted(names):
        if PurePosixPath(name).name in {"_definitions.json", "all.json"}:
            continue
        schema: dict[str, Json] = json.loads(wheel.read(name))
        # Only kinds are looked up by kubeconform (by apiVersion and kind); the other types are reached through them.
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            file = file_name(gvk)
            if file in written:
                if written[file] != name:
                    print(f"{file}: kept {written[file]}, not {name}", file=sys.stderr)
                continue
            written[file] = name
            text = json.dumps(standalone(schema, definitions), separators=(",", ":"))
            (target / file).write_text(text + "\n", encoding="utf-8")
    return len(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="kubernetes_validate-*.whl")
    parser.add_argument("version", help="the Kubernetes version whose schemas to take, as the wheel names it: 1.33.0")
    parser.add_argument("out", type=Path, help="the directory to write (kubeconform's -schema-location)")
    args = parser.parse_args(argv)
    with zipfile.ZipFile(args.wheel) as wheel:
        for strict in (True, False):
            count = convert(wheel, args.version, strict, args.out)
            print(f"{count} kinds: v{args.version}-standalone{'-strict' if strict else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
