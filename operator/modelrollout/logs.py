"""The operator's log output (stderr): readable lines, or one JSON object per line for log collectors
(MODELROLLOUT_LOG_FORMAT=json).

A JSON line has `time` (UTC, RFC 3339 with milliseconds), `level`, `logger`, `message`, and `namespace` and
`name` when the record is about one object: Kopf's per-object records carry them (`k8s_ref`), and the
operator's own say so with `extra=ref(namespace, name)`, the same shape. A traceback is one string, `exc_info`,
so a record never spans lines.

Every record written during a reconcile pass is about its ModelDeployment, whichever library writes it (the HTTP
client's request to Prometheus, a webhook's answer): `about(...)` puts the ModelDeployment and where its rollout
stands (`revision`: the candidate's, else the stable one's; `step`; `phase`) in a context variable for the
pass, `tell(...)` updates them once the pass decided, and the JSON line carries them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Where a rollout stands, for the lines about it: the fields a JSON line takes from the pass it was written in.
ROLLOUT_FIELDS = ("revision", "step", "phase")
_ABOUT: ContextVar[dict[str, Any] | None] = ContextVar("modelrollout_log_about", default=None)


@contextmanager
def about(namespace: str | None, name: str | None, **where: Any) -> Iterator[None]:
    """Every record written inside is about this ModelDeployment (in this task and the tasks it starts)."""
    token = _ABOUT.set({"namespace": namespace, "name": name, **where})
    try:
        yield
    finally:
        _ABOUT.reset(token)


def tell(**where: Any) -> None:
    """Update where the rollout of the pass under way stands (nothing outside a pass)."""
    current = _ABOUT.get()
    if current is not None:
        _ABOUT.set({**current, **where})


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
        self._add_pass(out)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        # default=str: an odd argument type must never cost the record.
        return json.dumps(out, ensure_ascii=False, default=str)

    @staticmethod
    def _add_pass(out: dict[str, Any]) -> None:
        """The pass's ModelDeployment, unless the record names another object; and its rollout's position."""
        current = _ABOUT.get()
        if current is None:
            return
        if "name" in out and (out.get("namespace"), out["name"]) != (current["namespace"], current["name"]):
            return
        for key in ("namespace", "name", *ROLLOUT_FIELDS):
            if current.get(key) is not None:
                out.setdefault(key, current[key])


def configure(log_format: Literal["text", "json"], *, verbose: bool = False) -> None:
    """The root logger's one handler, on stderr; Kopf's and the libraries' records go through it too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
