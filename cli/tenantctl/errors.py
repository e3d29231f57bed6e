"""The one exception hierarchy of tenantctl and the exit codes it maps to.

The core raises these and never prints or exits; ``tenantctl.cli.main`` is the single place where
an error becomes a message on stderr and an exit code. Third-party exceptions are translated into
these at the adapter that calls the third party (terraform runner, psycopg, boto3).
"""

from __future__ import annotations

from dataclasses import dataclass


class ExitCode:
    """Documented process exit codes (README, "Exit codes")."""

    OK = 0  # success; for plan: no changes
    FAILURE = 1  # a runtime failure (terraform, postgres, aws), or `render --check` found drift
    INVALID = 2  # bad input: usage error or invalid clients file; nothing was written
    REFUSED = 3  # a safety rule refused the operation (guard, stale plan); nothing was applied
    CHANGES = 4  # `plan --detailed-exitcode`: changes are pending
    BREACH = 5  # `verify`: tenant isolation is broken


@dataclass(frozen=True, order=True)
class Location:
    """Where a value came from: file, 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem in an input file, printed as ``file:line:col: field.path: message``."""

    location: Location
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.location}: {where}{self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "col": self.location.col,
            "path": self.path,
            "message": self.message,
        }


class TenantctlError(Exception):
    """Base of every error tenantctl reports to a user."""

    exit_code: int = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InputError(TenantctlError):
    """The user's input (arguments, files) is wrong. Nothing was written."""

    exit_code = ExitCode.INVALID


class ValidationFailed(InputError):
    """A clients file failed to parse or validate; carries every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.location, d.path, d.message))
        count = len(self.diagnostics)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found; nothing was written")


class RefusedError(TenantctlError):
    """A safety rule refused the operation (plan guard, stale plan, lock held)."""

    exit_code = ExitCode.REFUSED


class ExternalCommandError(TenantctlError):
    """A subprocess failed: shows the command, its exit code and the tail of its stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str, *, cwd: str | None = None) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        self.cwd = cwd
        tail = "\n".join(stderr.strip().splitlines()[-25:])
        where = f" (in {cwd})" if cwd else ""
        super().__init__(
            f"command failed with exit code {returncode}{where}: {' '.join(argv)}"
            + (f"\n{tail}" if tail else "")
        )


class BackendError(TenantctlError):
    """A service (PostgreSQL, AWS) failed or is unreachable."""
