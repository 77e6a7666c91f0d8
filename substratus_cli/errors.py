"""Exit codes and the error types that map onto them (one boundary in cli.py turns them into exits)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    CHANGES_PRESENT = 2
    INVALID_INPUT = 3
    LOCKED = 4
    STALE_PLAN = 5
    PARTIAL_APPLY = 6
    INTERRUPTED = 130


EXIT_CODES_HELP = """\b
Exit codes:
  0    success; for plan, no changes
  1    error
  2    plan --detailed-exitcode: changes present
  3    usage error or invalid resource files
  4    state lock not acquired within --lock-timeout
  5    saved plan is stale or was made for another target
  6    apply partially done (see the failed and skipped steps)
  130  interrupted"""


class SubstratusError(Exception):
    """An error the user can act on; its message is shown as is, without a traceback."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(SubstratusError):
    exit_code = ExitCode.INVALID_INPUT


class LockError(SubstratusError):
    exit_code = ExitCode.LOCKED


class StalePlanError(SubstratusError):
    exit_code = ExitCode.STALE_PLAN


class ProviderError(SubstratusError):
    """A provider could not read or change something (permanent: retries are the provider's job)."""

    exit_code = ExitCode.ERROR
