"""From a pod's container to the argv, env and working directory of a local process (pure: lookups of Secrets
and ConfigMaps are passed in).

Kubernetes' rules, as far as our pods use them: `command` replaces the image's entry point and `args` its default
arguments; `$(VAR)` in command, args and env values expands to an earlier variable (`$$` escapes); env comes from
`envFrom` first, then `env` in order. Paths under a volume's mountPath are rewritten to the directory that stands
in for the volume.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (kind "secret" | "configmap", namespace, name) -> its data (decoded), or None when it does not exist.
ReadSource = Callable[[str, str, str], Mapping[str, str] | None]

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ContainerConfigError(ValueError):
    """The container cannot be started as written (Kubernetes: CreateContainerConfigError)."""


class UnknownImage(ValueError):
    """No local entry point stands for this image (Kubernetes: ErrImagePull)."""


@dataclass(frozen=True)
class Launch:
    """What to run for one container."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    mounts: dict[str, Path]  # mountPath -> the directory standing for the volume


def repository(image: str) -> str:
    """`registry/name:tag@digest` -> `registry/name` (a port in the registry is not a tag)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def entry_point(image: str, images: Mapping[str, Sequence[str]]) -> list[str]:
    """The local argv that stands for `image`'s entry point: by repository, else by the repository's last part."""
    repo = repository(image)
    for key in (repo, repo.rsplit("/", 1)[-1]):
        if key in images:
            return list(images[key])
    known = ", ".join(sorted(images)) or "none"
    raise UnknownImage(f"image {image!r} has no local entry point (known repositories: {known})")


def expand(text: str, env: Mapping[str, str]) -> str:
    """`$(VAR)` -> its value when defined (left as is otherwise, as Kubernetes does); `$$` -> `$`."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _VAR.sub(one, text)


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """The downward API's fieldRef values."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    raise ContainerConfigError(f"fieldRef {path!r} is not supported")


def _from_source(ref: Mapping[str, Any], kind: str, namespace: str, read: ReadSource) -> str | None:
    data = read(kind, namespace, ref["name"])
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        missing = f"{kind} {namespace}/{ref['name']}" + ("" if data is None else f" has no key {ref['key']!r}")
        raise ContainerConfigError(f"{missing} (referenced by the container's env)")
    return data[ref["key"]]


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], read: ReadSource) -> dict[str, str]:
    """The container's own variables, as the runtime would set them."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            if key in source:
                data = read(kind, namespace, source[key]["name"])
                if data is None and not source[key].get("optional"):
                    raise ContainerConfigError(f"{kind} {namespace}/{source[key]['name']} (envFrom) does not exist")
                env.update({prefix + k: v for k, v in (data or {}).items()})
    for var in container.get("env") or []:
        name, source = var["name"], var.get("valueFrom")
        value: str | None
        if source is None:
            value = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source:
            value = _from_source(source["secretKeyRef"], "secret", namespace, read)
        elif "configMapKeyRef" in source:
            value = _from_source(source["configMapKeyRef"], "configmap", namespace, read)
        else:
            raise ContainerConfigError(f"env {name}: valueFrom {sorted(source)} is not supported")
        if value is not None:
            env[name] = value
    return env


SUPPORTED_VOLUMES = ("emptyDir", "projected", "configMap", "secret")


def mounts(pod: Mapping[str, Any], container: Mapping[str, Any], pod_dir: Path) -> dict[str, Path]:
    """mountPath -> the directory standing for the volume (see volume_files for what fills it)."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    found: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ContainerConfigError(f"volumeMount {mount['name']!r} names no volume of the pod")
        if not any(kind in volume for kind in SUPPORTED_VOLUMES):
            kinds = sorted(k for k in volume if k != "name")
            raise ContainerConfigError(f"volume {mount['name']!r}: {kinds} is not supported ({SUPPORTED_VOLUMES})")
        directory = pod_dir / "volumes" / mount["name"] / mount.get("subPath", "")
        found[mount["mountPath"].rstrip("/") or "/"] = directory
    return found


def _items(data: Mapping[str, str], items: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    if not items:
        return dict(data)
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def volume_files(pod: Mapping[str, Any], volume: Mapping[str, Any], read: ReadSource, token: str) -> dict[str, str]:
    """The files of a configMap, secret or projected volume (relative path -> content); {} for emptyDir.
    `token` is the pod's ServiceAccount token (a projected serviceAccountToken source)."""
    namespace = pod["metadata"]["namespace"]

    def source(kind: str, ref: Mapping[str, Any]) -> dict[str, str]:
        data = read(kind, namespace, ref["name"])
        if data is None:
            if ref.get("optional"):
                return {}
            raise ContainerConfigError(f"{kind} {namespace}/{ref['name']} (volume {volume['name']!r}) does not exist")
        return _items(data, ref.get("items"))

    if "configMap" in volume:
        return source("configmap", volume["configMap"])
    if "secret" in volume:
        return source("secret", {"name": volume["secret"]["secretName"], **volume["secret"]})
    files: dict[str, str] = {}
    for part in (volume.get("projected") or {}).get("sources") or []:
        if "serviceAccountToken" in part:
            files[part["serviceAccountToken"]["path"]] = token
        if "configMap" in part:
            files.update(source("configmap", part["configMap"]))
        if "secret" in part:
            files.update(source("secret", part["secret"]))
        for item in (part.get("downwardAPI") or {}).get("items") or []:
            files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"])
    return files


def referenced(pod: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap the pod's env and volumes name."""
    found: set[tuple[str, str]] = set()

    def add(kind: str, ref: Mapping[str, Any] | None, key: str = "name") -> None:
        if ref is not None:
            found.add((kind, ref[key]))

    for container in pod["spec"]["containers"]:
        for source in container.get("envFrom") or []:
            add("configmap", source.get("configMapRef"))
            add("secret", source.get("secretRef"))
        for var in container.get("env") or []:
            ref = var.get("valueFrom") or {}
            add("configmap", ref.get("configMapKeyRef"))
            add("secret", ref.get("secretKeyRef"))
    for volume in pod["spec"].get("volumes") or []:
        add("configmap", volume.get("configMap"))
        add("secret", volume.get("secret"), "secretName")
        for part in (volume.get("projected") or {}).get("sources") or []:
            add("configmap", part.get("configMap"))
            add("secret", part.get("secret"))
    return found


def rewrite_path(text: str, where: Mapping[str, Path]) -> str:
    """A value that is a mount path, or starts with one and a slash, points into the volume's directory."""
    for mount_path in sorted(where, key=len, reverse=True):
        if text == mount_path or text.startswith(mount_path + "/"):
            return str(where[mount_path]) + text[len(mount_path) :]
    return text


def launch(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    images: Mapping[str, Sequence[str]],
    pod_dir: Path,
    read: ReadSource,
    base_env: Mapping[str, str],
) -> Launch:
    """argv, env and cwd of `container`; `base_env` is what every process gets from this kubelet (PATH, the
    network shim's settings, the pod's kubeconfig)."""
    where = mounts(pod, container, pod_dir)
    own = {k: rewrite_path(v, where) for k, v in container_env(pod, container, read).items()}
    if "/tmp" in where:
        own.setdefault("TMPDIR", str(where["/tmp"]))
    env = {"HOSTNAME": pod["metadata"]["name"], **base_env, **own}
    entry = entry_point(container["image"], images)  # an unknown image fails even with a command
    # A command replaces the entry point; its program is found on base_env's PATH (the image's own bin first).
    argv = [expand(part, env) for part in container["command"]] if container.get("command") else entry
    argv += [rewrite_path(expand(part, env), where) for part in container.get("args") or []]
    working = container.get("workingDir")
    cwd = Path(rewrite_path(working, where)) if working else pod_dir / "root"
    return Launch(argv=argv, env=env, cwd=cwd, mounts=where)
