"""Turns pydantic validation errors into the one-line-per-field messages users see from the CLI and operator."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

_VALUE_ERROR = "Value error, "


def field_path(loc: Sequence[int | str]) -> str:
    """`("spec", "rollout", "canary", "steps", 0)` -> `spec.rollout.canary.steps[0]` (the API server's form)."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: the field, then what is wrong and what is allowed."""
    lines = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix(_VALUE_ERROR)
        path = field_path(error["loc"])
        lines.append(f"{path}: {message}" if path else message)
    return "\n".join(lines)
