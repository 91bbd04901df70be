"""Typed errors. Library code raises these; the CLI turns them into `Error: …` and an exit code.

The exit codes are documented in docs/configuration.md#exit-codes (and the README).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATA = 65
EXIT_NO_DATABASE = 66
EXIT_TEMPORARY = 75
EXIT_CONFIG = 78


class ZosError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, summary: dict | None = None):
        super().__init__(message)
        self.message = message
        # A job stopped midway: its summary so far (with this error in `errors`), printed
        # by the error path under --json instead of an all-zero one.
        self.summary = summary


class JobFailed(ZosError):
    """The job ran but failed or partly failed (exit 1)."""

    exit_code = EXIT_FAILED


class NotFound(ZosError):
    """A well-formed id or key that names nothing stored (exit 1; a malformed one is usage)."""

    exit_code = EXIT_FAILED


class UsageProblem(ZosError):
    """Bad flags, or a destructive command without --yes and no terminal (exit 2)."""

    exit_code = EXIT_USAGE


class InputDataError(ZosError):
    """Bad input data, such as a malformed export (exit 65)."""

    exit_code = EXIT_DATA


class NoDatabase(ZosError):
    """No database at the path (exit 66)."""

    exit_code = EXIT_NO_DATABASE


class TemporaryFailure(ZosError):
    """Try again later: a job already running, a rate-limit wait too long, a ban (exit 75)."""

    exit_code = EXIT_TEMPORARY


class JobBusy(TemporaryFailure):
    """The same job is already running (its lock is held)."""


class ConfigError(ZosError):
    """Bad configuration, pending migrations, a newer database, a missing token or key (exit 78)."""

    exit_code = EXIT_CONFIG


class MigrationError(ConfigError):
    """The schema cannot be brought to (or used at) the code's version."""
