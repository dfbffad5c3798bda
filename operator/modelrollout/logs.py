"""The operator's log output (stderr): readable lines, or one JSON object per line for log collectors
(MODELROLLOUT_LOG_FORMAT=json).

A JSON line has `time` (UTC, RFC 3339 with milliseconds), `level`, `logger`, `message`, and `namespace` and
`name` when the record is about one object: Kopf's per-object records carry them (`k8s_ref`), and the
operator's own say so with `extra=ref(namespace, name)`, the same shape. A traceback is one string, `exc_info`,
so a record never spans lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def ref(namespace: str | None, name: str | None) -> dict[str, Any]:
    """`extra` for a record about one object, in Kopf's shape (`k8s_ref`), so both reach JSON the same way."""
    return {"k8s_ref": {"namespace": namespace, "name": name}}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        where = getattr(record, "k8s_ref", None)
        if isinstance(where, dict):
            for key in ("namespace", "name"):
                if where.get(key):
                    out[key] = where[key]
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        # default=str: an odd argument type must never cost the record.
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(log_format: Literal["text", "json"], *, verbose: bool = False) -> None:
    """The root logger's one handler, on stderr; Kopf's and the libraries' records go through it too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
