"""Connections, session timeouts and sqlx's migration advisory lock.

Everything here speaks psycopg 3 and turns its failures into :class:`DatabaseError`
(exit 3) whose messages carry the URL with its password masked. libpq environment
variables (``PGHOST``, ``PGUSER``, ``PGPASSWORD`` ...) and ``.pgpass`` work because an
empty URL, or a URL lacking parts, is completed by libpq itself.

The advisory lock is the very one sqlx's migrator takes
(``sqlx-postgres/src/migrate.rs``, ``generate_lock_id``), so safemig, applications that
call ``sqlx::migrate!().run()`` at start-up and a second safemig never migrate the same
database at once. ``sqlx migrate run`` (sqlx-cli) takes no lock at all
(``sqlx-cli/src/migrate.rs`` never calls ``Migrate::lock``; only ``Migrator::run_direct``
and ``Migrator::undo`` in ``sqlx-core/src/migrate/migrator.rs`` do), so nothing
serialises sqlx-cli against anyone, safemig included.

psycopg is imported inside the functions: ``safemig lint`` must not pay for it.
"""

from __future__ import annotations

import math
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from safemig.errors import CheckFailed, ConfigError, DatabaseError
from safemig.redact import mask_url, redact

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

_LOCK_MULTIPLIER = 0x3D32AD9E  # sqlx: "chosen by fair dice roll"


def describe(url: str) -> str:
    """How a URL is named in messages: masked, or "the libpq defaults" for an empty one."""
    return mask_url(url) if url else "the database given by libpq's PG* variables"


def error_text(exc: BaseException) -> str:
    """One redacted line from a psycopg/libpq error (libpq messages span several lines)."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return redact(text) or type(exc).__name__


DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds, sqlx-cli's --connect-timeout default (sqlx-cli/src/opt.rs)
# libpq's words for the failures sqlx-cli retries (ConnectionRefused/Reset/Aborted in
# sqlx-cli/src/lib.rs, retry_connect_errors), plus a server still starting up (SQLSTATE 57P03)
# and a socket not there yet: what a database container shows in its first seconds.
_TRANSIENT = re.compile(
    r"Connection refused|Connection reset|Connection aborted|the database system is starting up"
    r"|server closed the connection unexpectedly|No such file or directory",
    re.IGNORECASE,
)


def connect(
    url: str,
    *,
    autocommit: bool = False,
    application_name: str = "safemig",
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> psycopg.Connection:
    """Open a connection, retrying like sqlx-cli while the server refuses it, for ``connect_timeout`` s.

    sqlx's URL parameters are translated first (:mod:`safemig.pgurl`). ``application_name``
    is libpq's ``fallback_application_name``: one set by the URL or ``PGAPPNAME`` wins, as
    the user meant it to. A refused connection (server not up yet) is retried with
    exponential backoff (0.5 s, x1.5, like the ``backoff`` crate sqlx-cli uses) until the
    timeout; anything else (wrong password, unknown database) fails at once. Failure is a
    :class:`DatabaseError` naming the masked URL (exit 3).
    """
    import psycopg

    from safemig.pgurl import libpq_url

    deadline = time.monotonic() + max(0.0, connect_timeout)
    delay, attempts = 0.5, 0
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            return psycopg.connect(
                libpq_url(url),
                autocommit=autocommit,
                fallback_application_name=application_name,
                # libpq's own per-attempt timeout: whole seconds, and it treats 1 as 2
                connect_timeout=max(2, math.ceil(remaining)),
            )
        except psycopg.ProgrammingError as exc:  # malformed URL / conninfo
            raise ConfigError(
                f"invalid database URL {describe(url)}: {error_text(exc)}",
                hint="use postgresql://USER@HOST:PORT/DBNAME (password from PGPASSWORD or .pgpass)",
            ) from None
        except psycopg.Error as exc:
            remaining = deadline - time.monotonic()
            if _TRANSIENT.search(str(exc)) and remaining > 0:
                sleep(min(delay, remaining))
                delay = min(delay * 1.5, 5.0)
                continue
            tried = f" (tried {attempts} times over {connect_timeout:g}s)" if attempts > 1 else ""
            raise DatabaseError(
                f"cannot connect to {describe(url)}{tried}: {error_text(exc)}",
                hint="check that PostgreSQL is running and the host, port, user, password and database are right"
                + ("; --connect-timeout SECONDS waits longer for a server that is starting" if tried else ""),
            ) from None


def wait_until_ready(url: str, timeout: float) -> None:
    """Poll the server like ``pg_isready`` until it accepts connections, at most ``timeout`` seconds.

    "Accepting connections" is the server's answer, whatever the credentials: a wrong
    password is found by :func:`connect`, with a clearer message than a timeout.
    """
    from psycopg import pq
    from psycopg.conninfo import make_conninfo

    from safemig.pgurl import libpq_url

    try:
        conninfo = make_conninfo(libpq_url(url), connect_timeout=max(1, min(5, int(timeout) or 1)))
    except Exception as exc:  # psycopg.ProgrammingError for a malformed URL
        raise ConfigError(
            f"invalid database URL {describe(url)}: {error_text(exc)}", hint="use postgresql://USER@HOST:PORT/DBNAME"
        ) from None
    deadline = time.monotonic() + timeout
    status = pq.Ping.NO_RESPONSE
    while True:
        status = pq.Ping(pq.PGconn.ping(conninfo.encode()))
        if status == pq.Ping.OK:
            return
        if status == pq.Ping.NO_ATTEMPT:
            raise ConfigError(f"invalid database URL {describe(url)}", hint="use postgresql://USER@HOST:PORT/DBNAME")
        if time.monotonic() >= deadline:
            break
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
    state = "is rejecting connections (starting up or shutting down)" if status == pq.Ping.REJECT else "does not answer"
    raise DatabaseError(
        f"{describe(url)} {state} after {timeout:g}s",
        hint="check that PostgreSQL is running and reachable from here (pg_isready shows the same)",
    )


def set_timeouts(conn: psycopg.Connection, lock_timeout: str | None, statement_timeout: str | None) -> None:
    """Set the session's ``lock_timeout`` / ``statement_timeout`` (``None`` leaves one as it is).

    Values are PostgreSQL durations (``"5s"``, ``"15min"``, ``"0"`` for none); a value
    PostgreSQL refuses is a :class:`ConfigError` naming the setting.
    """
    import psycopg

    for name, value in (("lock_timeout", lock_timeout), ("statement_timeout", statement_timeout)):
        if value is None:
            continue
        try:
            conn.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
        except psycopg.DataError as exc:
            _rollback_quietly(conn)
            raise ConfigError(
                f"{name} = {value!r} is not a valid duration: {error_text(exc)}",
                hint=f'write {name} like "5s", "500ms" or "15min"',
            ) from None
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot set {name}: {error_text(exc)}") from None


def lock_id(database_name: str) -> int:
    """sqlx's advisory-lock key for a database: ``0x3d32ad9e * crc32(name)`` (CRC-32/ISO-HDLC).

    The product always fits a BIGINT (both factors are below 2**32 and 2**30).
    """
    return _LOCK_MULTIPLIER * zlib.crc32(database_name.encode("utf-8"))


def _scalar(conn: psycopg.Connection, query: str, params: tuple = ()) -> Any:
    """The first column of the one row ``query`` returns."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]


def _rollback_quietly(conn: psycopg.Connection) -> None:
    try:
        if not conn.closed and not conn.autocommit:
            conn.rollback()
    except Exception:  # pragma: no cover - the connection is already gone
        pass


_HOLDER_SQL = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '?'), a.usename
FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
LIMIT 1"""


def lock_holder(conn: psycopg.Connection, key: int) -> str:
    """Who holds advisory lock ``key``: ``pid 123 (sqlx-cli, user app)``, or ``another session``."""
    try:
        row = conn.execute(_HOLDER_SQL, (key,)).fetchone()
    except Exception:  # a view we may not read: the message stays useful without it
        return "another session"
    return f"pid {row[0]} ({row[1]}, user {row[2]})" if row else "another session"


@contextmanager
def advisory_lock(
    conn: psycopg.Connection, *, on_wait: Callable[[], None] | None = None, wait_s: float | None = None
) -> Iterator[int]:
    """Hold sqlx's migration lock for the current database on ``conn`` (a session lock).

    Tries ``pg_try_advisory_lock`` first; when another migrator holds it, calls
    ``on_wait`` (so the user learns why nothing happens) and then waits: without bound
    in ``pg_advisory_lock`` when ``wait_s`` is ``None`` (what sqlx's ``Migrator::run``
    does), else polling ``pg_try_advisory_lock`` for ``wait_s`` seconds (0: not at all)
    and refusing with :class:`CheckFailed` (exit 1) naming the holder. Polling leaves the
    session's ``lock_timeout`` alone, which the migrations then use. Always unlocks, also
    when the body fails. Yields the lock id.

    Session advisory locks survive COMMIT and are re-entrant only on the same
    session: take it once, on the connection that migrates. On a connection that is not
    in autocommit mode, the transaction this opened is committed so that no transaction
    stays open while the lock is held.
    """
    import psycopg
    from psycopg import pq

    was_idle = conn.info.transaction_status == pq.TransactionStatus.IDLE
    try:
        name = _scalar(conn, "SELECT current_database()")
        key = lock_id(name)
        got = _scalar(conn, "SELECT pg_try_advisory_lock(%s)", (key,))
        if not got:
            if on_wait is not None:
                on_wait()
            if wait_s is None:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            else:
                deadline = time.monotonic() + wait_s
                while not got:
                    if time.monotonic() >= deadline:
                        holder = lock_holder(conn, key)
                        _rollback_quietly(conn)
                        raise CheckFailed(
                            f"database {name} is being migrated by another session: the migration lock is held by "
                            f"{holder}" + (f" (waited {wait_s:g}s)" if wait_s > 0 else ""),
                            hint="try again when it has finished, or pass --lock-wait SECONDS to wait for it",
                        )
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                    got = _scalar(conn, "SELECT pg_try_advisory_lock(%s)", (key,))
        if was_idle and not conn.autocommit:
            conn.commit()
    except psycopg.Error as exc:
        _rollback_quietly(conn)
        raise DatabaseError(
            f"cannot take the migration advisory lock: {error_text(exc)}",
            hint="another migrator may hold it for too long; see pg_locks where locktype = 'advisory'",
        ) from None
    try:
        yield key
    finally:
        _unlock(conn, key)


def _unlock(conn: psycopg.Connection, key: int) -> None:
    """Release the lock; a dead connection has released it already (the server ends the session)."""
    import psycopg
    from psycopg import pq

    if conn.closed or conn.broken:
        return
    try:
        if conn.info.transaction_status == pq.TransactionStatus.INERROR:
            conn.rollback()
        was_idle = conn.info.transaction_status == pq.TransactionStatus.IDLE
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))  # session locks ignore transactions
        if was_idle and not conn.autocommit:
            conn.commit()  # close only the transaction this query opened
    except psycopg.Error:
        pass  # the session is unusable; PostgreSQL frees its locks when it ends
