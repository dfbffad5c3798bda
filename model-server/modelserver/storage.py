"""Model URIs -> a local path: plain path, file://, http(s)://, s3:// (any S3-compatible endpoint).

Every failure is a ModelLoadError that says what was tried, so a pod that cannot start tells why.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import httpx

from modelserver.errors import ModelLoadError
from modelserver.settings import ModelSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FetchOptions:
    download_dir: Path | None = None
    sha256: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    http_timeout_s: float = 60.0


def fetch_for(settings: ModelSettings) -> Path | None:
    """The configured model as a local path; None for a custom class that needs no file."""
    if not settings.model_uri:
        return None
    options = FetchOptions(
        download_dir=settings.download_dir,
        sha256=settings.model_sha256,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        http_timeout_s=settings.http_timeout_s,
    )
    return fetch(settings.model_uri, options)


def fetch(uri: str, options: FetchOptions) -> Path:
    """Return a local file (or directory, for an s3 prefix) holding the model named by `uri`."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in {"", "file"}:
        path = _local_path(uri, scheme)
    elif scheme in {"http", "https"}:
        path = _fetch_http(uri, _target_dir(options), options.http_timeout_s)
    elif scheme == "s3":
        path = _fetch_s3(parts.netloc, unquote(parts.path.lstrip("/")), _target_dir(options), options)
    else:
        raise ModelLoadError(f"unsupported model URI scheme {scheme!r} in {uri!r} (path, file, http(s), s3)")
    if options.sha256:
        verify_sha256(path, options.sha256)
    return path


def is_remote(uri: str) -> bool:
    """Whether fetch() downloads `uri` into a fresh directory (which the caller may delete afterwards)."""
    return urlsplit(uri).scheme.lower() in {"http", "https", "s3"}


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    if path.is_dir():
        raise ModelLoadError(f"a sha256 check needs a single file, but {path} is a directory")
    found = sha256_of(path)
    if found != expected.lower():
        raise ModelLoadError(f"sha256 mismatch for {path.name}: expected {expected.lower()}, got {found}")


def _local_path(uri: str, scheme: str) -> Path:
    if scheme == "file":
        parts = urlsplit(uri)
        if parts.netloc not in {"", "localhost"}:
            raise ModelLoadError(f"file URI {uri!r} names host {parts.netloc!r}; only local files can be read")
        path = Path(unquote(parts.path))
    else:
        path = Path(uri)
    if not path.exists():
        raise ModelLoadError(f"model path {str(path)!r} does not exist")
    return path


def _target_dir(options: FetchOptions) -> Path:
    if options.download_dir is not None:
        options.download_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="model-", dir=options.download_dir))


def _file_name(url_path: str) -> str:
    # Keep the remote name: its suffix is how the format is detected.
    return PurePosixPath(unquote(url_path)).name or "model"


def _fetch_http(uri: str, target: Path, timeout: float) -> Path:
    destination = target / _file_name(urlsplit(uri).path)
    try:
        with (
            httpx.stream("GET", uri, timeout=timeout, follow_redirects=True) as response,
            destination.open("wb") as out,
        ):
            if response.status_code != 200:
                raise ModelLoadError(f"GET {uri} answered HTTP {response.status_code}")
            for chunk in response.iter_bytes(_CHUNK):
                out.write(chunk)
    except httpx.HTTPError as exc:
        raise ModelLoadError(f"cannot download {uri}: {exc}") from exc
    return destination


def _fetch_s3(bucket: str, key: str, target: Path, options: FetchOptions) -> Path:
    try:
        # Optional extra (modelserver[s3]): imported only when an s3:// URI is served.
        import boto3  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415
    except ImportError as exc:
        raise ModelLoadError("s3:// URIs need boto3; install modelserver[s3]") from exc
    if not bucket:
        raise ModelLoadError("s3 URI has no bucket: expected s3://bucket/key")
    client = boto3.client("s3", endpoint_url=options.s3_endpoint_url, region_name=options.s3_region)
    where = f"s3://{bucket}/{key}" + (f" at {options.s3_endpoint_url}" if options.s3_endpoint_url else "")
    try:
        if key and not key.endswith("/"):
            destination = target / _file_name(key)
            client.download_file(bucket, key, str(destination))
            return destination
        return _download_prefix(client, bucket, key, target, where)
    except (BotoCoreError, ClientError) as exc:
        raise ModelLoadError(f"cannot fetch {where}: {exc}") from exc


def _download_prefix(client: S3Client, bucket: str, prefix: str, target: Path, where: str) -> Path:
    paginator = client.get_paginator("list_objects_v2")
    count = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = PurePosixPath(item["Key"][len(prefix) :])
            if not relative.parts or ".." in relative.parts:
                continue
            destination = target.joinpath(*relative.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(destination))
            count += 1
    if count == 0:
        raise ModelLoadError(f"no objects under {where}")
    return target
