"""URIs of a batch run: templates filled with the run's scheduled time (in the run's time zone), and the pyarrow
filesystem and path a URI names (a local path, file://, or s3:// on any S3-compatible endpoint; credentials from
AWS_* as for models)."""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from pyarrow import fs

from modelserver.batch.errors import BatchError

# {date} 2026-12-03, {datetime} 20261203T020000Z, {year} {month} {day} {hour} {minute}: what partitioned lakes use.
PLACEHOLDERS = ("date", "datetime", "year", "month", "day", "hour", "minute")


def fill(template: str, when: datetime) -> str:
    """`template` with the run's time in its placeholders; an unknown placeholder is an error naming it. The
    calendar placeholders are `when`'s in its own zone (BatchSettings.template_time: the run's time_zone);
    {datetime} is the instant in UTC, as its Z says."""
    instant = when.astimezone(UTC) if when.tzinfo is not None else when
    values = {
        "date": when.strftime("%Y-%m-%d"),
        "datetime": instant.strftime("%Y%m%dT%H%M%SZ"),
        "year": when.strftime("%Y"),
        "month": when.strftime("%m"),
        "day": when.strftime("%d"),
        "hour": when.strftime("%H"),
        "minute": when.strftime("%M"),
    }
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field not in values:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise BatchError("InvalidSettings", f"unknown placeholder {{{field}}} in {template!r} (known: {known})")
    return template.format(**values)


@dataclass(frozen=True)
class Location:
    """A filesystem and a path on it (no scheme: `bucket/key` on S3, an absolute path locally)."""

    filesystem: fs.FileSystem
    path: str
    scheme: str

    def uri(self, path: str | None = None) -> str:
        chosen = self.path if path is None else path
        return f"s3://{chosen}" if self.scheme == "s3" else chosen

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])


def locate(uri: str, *, s3_endpoint_url: str | None = None, s3_region: str | None = None) -> Location:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        path = unquote(parts.path) if scheme == "file" else uri
        return Location(fs.LocalFileSystem(), os.path.abspath(path), "file")
    if scheme == "s3":
        return Location(_s3(s3_endpoint_url, s3_region), f"{parts.netloc}{unquote(parts.path)}".rstrip("/"), "s3")
    raise BatchError("InvalidSettings", f"unsupported URI scheme {scheme!r} in {uri!r} (path, file://, s3://)")


def _s3(endpoint_url: str | None, region: str | None) -> fs.S3FileSystem:
    options: dict[str, object] = {
        "access_key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "session_token": os.environ.get("AWS_SESSION_TOKEN"),
        "region": region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    if endpoint_url:
        endpoint = urlsplit(endpoint_url)
        options.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme or "https")
    return fs.S3FileSystem(**{k: v for k, v in options.items() if v is not None})
