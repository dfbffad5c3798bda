"""CRDs to JSON schemas in kubeconform's CRD layout, as kubeconform's openapi2jsonschema.py does, and stricter.

For every served version of every CustomResourceDefinition in the YAML files given, writes

    OUT_DIR/<group>/<kind>_<version>.json      (lower-case kind: monitoring.coreos.com/servicemonitor_v1.json)

so that `kubeconform -schema-location 'OUT_DIR/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'`
finds them. Each is the version's openAPIV3Schema (OpenAPI 3.0, so JSON Schema draft 4, kubeconform's default) with:

- apiVersion and kind pinned to the CRD's (required), and metadata checked as ObjectMeta when --object-meta-from
  names a standalone Kubernetes schema to take ObjectMeta from (hack/kube_schemas.py writes them), else an object;
- `nullable: true` allowing null, as the API server does;
- strict (the default; --lenient turns it off): `additionalProperties: false` on every object whose unknown fields the
  API server would prune, and so reject under kubectl's default --validate=strict: objects that state neither
  additionalProperties nor x-kubernetes-preserve-unknown-fields (an x-kubernetes-embedded-resource also admits
  apiVersion, kind and metadata). Subschemas under anyOf/allOf/oneOf/not only constrain values and stay open.

    python hack/crd_schemas.py [--lenient] [--object-meta-from SCHEMA] OUT_DIR CRD.yaml...

The repository's CRD changes with the code, so hack/check-chart.sh runs this at check time into a temporary directory
(well under a second) rather than caching its output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Json = Any  # a decoded JSON or YAML document
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LOCAL_DEFS = "#/$defs/"  # how hack/kube_schemas.py's standalone schemas refer to their definitions
DEFINITIONS = "#/definitions/"  # where draft 4 keeps them, and so do we
COMBINATORS = ("allOf", "anyOf", "oneOf", "not")


def allow_null(node: dict[str, Json]) -> None:
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]


def values_only(node: Json) -> Json:
    """A subschema under a combinator: nullable handled, nothing closed."""
    if isinstance(node, list):
        return [values_only(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: values_only(value) for key, value in node.items()}
    allow_null(out)
    return out


def structural(node: Json, strict: bool) -> Json:
    """A copy of a structural schema node (and the nodes under it) converted as the module docstring says."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Json] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: structural(sub, strict) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, strict)
        elif key in COMBINATORS:
            out[key] = values_only(value)
        else:
            out[key] = value
    allow_null(out)
    is_object = out.get("type") == "object" or "properties" in out
    if out.get("x-kubernetes-embedded-resource") is True:
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        strict
        and is_object
        and "additionalProperties" not in out
        and out.get("x-kubernetes-preserve-unknown-fields") is not True
    ):
        out["additionalProperties"] = False
    return out


def object_meta(path: Path) -> dict[str, Json]:
    """ObjectMeta and the definitions it reaches, from a standalone schema of hack/kube_schemas.py, for draft 4."""
    defs: dict[str, Json] = json.loads(path.read_text(encoding="utf-8")).get("$defs", {})
    if OBJECT_META not in defs:
        raise SystemExit(f"{path} defines no {OBJECT_META}")

    def rewrite(node: Json) -> Json:
        if isinstance(node, dict):
            return {
                key: value.replace(LOCAL_DEFS, DEFINITIONS, 1)
                if key == "$ref" and isinstance(value, str)
                else rewrite(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    reached: dict[str, Json] = {}
    pending = [OBJECT_META]
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached[name] = rewrite(defs[name])
        pending += [ref.removeprefix(DEFINITIONS) for ref in refs(reached[name])]
    return dict(sorted(reached.items()))


def refs(node: Json) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def version_schema(
    group: str, kind: str, version: str, schema: dict[str, Json], *, strict: bool, meta: dict[str, Json] | None
) -> dict[str, Json]:
    out: dict[str, Json] = structural(schema, strict)
    props = out.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version}"]}
    props["kind"] = {"type": "string", "enum": [kind]}
    if meta is not None:
        props["metadata"] = {"$ref": DEFINITIONS + OBJECT_META}
        out["definitions"] = meta
    else:
        props["metadata"] = {"type": "object"}
    out["required"] = ["apiVersion", "kind", *[r for r in out.get("required", []) if r not in ("apiVersion", "kind")]]
    out["type"] = "object"
    if strict:
        out["additionalProperties"] = False
    return out


def crds(path: Path) -> Iterator[dict[str, Json]]:
    with path.open(encoding="utf-8") as stream:
        for doc in yaml.safe_load_all(stream):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                if doc.get("apiVersion") != "apiextensions.k8s.io/v1":
                    raise SystemExit(f"{path}: {doc.get('apiVersion')} CRDs are not supported (only v1)")
                yield doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lenient", action="store_true", help="leave objects open (no additionalProperties: false)")
    parser.add_argument(
        "--object-meta-from", type=Path, metavar="SCHEMA", help="a standalone Kubernetes schema to take ObjectMeta from"
    )
    parser.add_argument("out", type=Path, help="the directory to write")
    parser.add_argument("files", type=Path, nargs="+", help="YAML files holding CustomResourceDefinitions")
    args = parser.parse_args(argv)
    meta = object_meta(args.object_meta_from) if args.object_meta_from else None
    written = 0
    for path in args.files:
        found = False
        for crd in crds(path):
            found = True
            spec = crd["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for version in spec["versions"]:
                # The API server refuses a version that is not served: no schema, so kubeconform refuses it too.
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if not version.get("served", False) or schema is None:
                    continue
                out = version_schema(group, kind, version["name"], schema, strict=not args.lenient, meta=meta)
                target = args.out / group / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(out, separators=(",", ":")) + "\n", encoding="utf-8")
                written += 1
        if not found:
            raise SystemExit(f"{path}: no CustomResourceDefinition")
    print(f"{written} CRD schemas in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
