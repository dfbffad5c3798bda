"""Exit codes and the one exception every command failure becomes (kept free of heavy imports: `--help` and usage
errors never load the Kubernetes client)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_NOT_APPLIED = 1  # the verb was ignored by the operator, timed out, or another verb is still pending
EXIT_USAGE = 2  # typer/click's own code for a bad command line
EXIT_API = 3  # object not found, API server or kubeconfig failure


class CliError(Exception):
    """A failure to report in one line (no traceback) with the exit code it maps to."""

    def __init__(self, message: str, exit_code: int = EXIT_API) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Conflict(CliError):
    """The object changed between read and write (HTTP 409)."""
