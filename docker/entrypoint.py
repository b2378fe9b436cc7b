#!/usr/bin/env python3
"""Entrypoint of the safemig image: wait until PostgreSQL answers, then run the command.

``docker compose run --rm migrate`` runs the image's default command, ``safemig migrate run``;
``docker compose run --rm migrate safemig migrate info`` runs that instead. Either way this
script first waits for the database, then replaces itself with the command (``exec``: the
command's exit code and signals are the container's, with no wrapper process in between).

Why wait here although compose's ``depends_on: condition: service_healthy`` already does: the
healthcheck only covers a ``postgres`` service of the same compose file. The same image also runs
against a database started elsewhere (``docker run``, a CI service container, a managed server
still booting), where nothing else waits. The wait is bounded: a database that never answers is
an error after the timeout, not a hung container.

Environment:
  DATABASE_URL           the database to wait for; when unset, libpq's PGHOST/PGPORT/PGSERVICE/...
                         (a password in the URL is never printed)
  SAFEMIG_WAIT_TIMEOUT   seconds to wait at most (default 60; 0 = do not wait)

Exit codes: the command's own; 2 a bad SAFEMIG_WAIT_TIMEOUT or a command that does not exist;
3 the database did not answer within the timeout (the command does not run).

Written in Python, not sh, so that it waits the way ``safemig deploy``'s preflight does (libpq's
ping, :func:`safemig.db.wait_until_ready`), reads the URL from the environment rather than putting
it on a command line (``pg_isready -d URL`` would show the password in ``ps``), and reports errors
through safemig's one writer, which masks secrets.
"""

from __future__ import annotations

import math
import os
import sys
import time

DEFAULT_COMMAND = ["safemig", "migrate", "run"]
DEFAULT_TIMEOUT = 60.0
TIMEOUT_VARIABLE = "SAFEMIG_WAIT_TIMEOUT"
# libpq variables that name a server without DATABASE_URL (an empty conninfo then uses them).
_LIBPQ_TARGET_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGSERVICE", "PGDATABASE")


def wait_timeout(environ: dict[str, str]) -> float:
    """Seconds to wait, from ``SAFEMIG_WAIT_TIMEOUT``; a value that is not a number is a usage error."""
    from safemig.errors import UsageError

    raw = environ.get(TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UsageError(
            f"{TIMEOUT_VARIABLE}={raw!r} is not a number of seconds",
            hint=f"e.g. {TIMEOUT_VARIABLE}=60 (0: do not wait for the database)",
        )
    return value


def wait_target(environ: dict[str, str]) -> str | None:
    """The conninfo to wait for: ``DATABASE_URL``, ``""`` for libpq's variables, ``None`` for nothing named."""
    url = environ.get("DATABASE_URL", "")
    if url:
        return url
    if any(environ.get(name) for name in _LIBPQ_TARGET_VARIABLES):
        return ""
    return None


def main(argv: list[str]) -> int:
    """Wait (bounded), then exec ``argv`` (default: ``safemig migrate run``); returns only on failure."""
    from safemig import output
    from safemig.errors import EXIT_INTERRUPTED, DatabaseError, SafemigError, UsageError

    command = argv or DEFAULT_COMMAND
    environ = dict(os.environ)
    try:
        timeout = wait_timeout(environ)
        target = wait_target(environ)
        if timeout > 0 and target is not None:
            from safemig.db import describe, wait_until_ready

            output.echo(f"entrypoint: waiting up to {timeout:g}s for {describe(target)}", err=True)
            started = time.monotonic()
            try:
                wait_until_ready(target, timeout)
            except DatabaseError as exc:
                raise DatabaseError(f"entrypoint: gave up waiting: {exc.message}", hint=exc.hint) from None
            output.echo(
                f"entrypoint: {describe(target)} accepts connections (after {time.monotonic() - started:.1f}s)",
                err=True,
            )
        elif target is None:
            output.echo("entrypoint: neither DATABASE_URL nor PGHOST is set; not waiting for a database", err=True)
    except SafemigError as exc:
        output.error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        output.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    try:
        os.execvp(command[0], command)
    except OSError as exc:  # not found, not executable: exec never returns otherwise
        output.error(
            UsageError(
                f"entrypoint: cannot run {command[0]!r}: {exc.strerror}",
                hint="give a command on PATH, e.g. `docker compose run --rm migrate safemig migrate info`",
            )
        )
        return UsageError.exit_code
    return 0  # pragma: no cover - unreachable: execvp replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
