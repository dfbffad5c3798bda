"""A batch run's failures, each with the reason the operator sees and the scorer's exit code."""

from __future__ import annotations

from modelrollout_contract.batch import Reason

EXIT_CODES: dict[Reason, int] = {
    "Completed": 0,
    "Error": 1,
    "InvalidSettings": 2,
    "SchemaMismatch": 3,
    "TooManyInvalidRecords": 4,
    "StorageError": 5,
    "ModelLoadFailed": 6,
}


class BatchError(Exception):
    """A run that cannot complete, for a reason worth its own exit code."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.reason]
