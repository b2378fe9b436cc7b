"""The one exception hierarchy for everything a user can be told.

Every failure the user should see is a :class:`SafemigError` carrying a one-line
message (naming the file, line, setting or version at fault) and a hint saying what
to do. The CLI turns it into that line, the hint, and the exit code of its class;
it never shows a traceback for one of these.

Exit codes (documented in the README and ``safemig --help``):

* 0 - success;
* 1 - a check said no (lint errors, a gate refused, an applied migration was
  modified, a migration failed);
* 2 - usage, configuration or input error (bad file name, unreadable config,
  unknown env);
* 3 - an external system failed (database, S3, pg_dump unreachable or erroring);
* 130 - interrupted (Ctrl-C, or SIGTERM where a command turns it into an interrupt);
* 70 - an internal error: a bug in safemig or a dependency (``EX_SOFTWARE`` of sysexits.h);
  the CLI writes a redacted crash log, never one of the codes above.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_EXTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70


class SafemigError(Exception):
    """Base of every user-facing error: a message, an optional hint, an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class UsageError(SafemigError):
    """Bad input: a command-line mistake, a malformed file name, a bad setting (exit 2)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The configuration file or one of its settings is wrong (exit 2)."""


class MigrationFileError(UsageError):
    """A migration file cannot be used as it is: bad name, duplicate version, not UTF-8 (exit 2)."""


class CheckFailed(SafemigError):
    """A safety check said no: lint errors, a refused gate, a modified migration (exit 1)."""

    exit_code = EXIT_CHECK_FAILED


class LedgerError(CheckFailed):
    """The ``_sqlx_migrations`` ledger disagrees with the files on disk (exit 1)."""


class MigrationFailed(CheckFailed):
    """A migration's SQL failed while being applied or reverted (exit 1)."""


class ExternalError(SafemigError):
    """A system safemig depends on failed: PostgreSQL, S3, pg_dump (exit 3)."""

    exit_code = EXIT_EXTERNAL


class DatabaseError(ExternalError):
    """PostgreSQL could not be reached or answered with an error outside a migration (exit 3)."""


class StorageError(ExternalError):
    """S3 (or the S3-compatible store) failed (exit 3)."""


class ToolError(ExternalError):
    """An external program (pg_dump, pg_restore) is missing or failed (exit 3)."""
