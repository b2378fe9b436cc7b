"""The scratch database a restore-mode rehearsal runs in: named, created, and always dropped.

It lives on the staging env's server (its role must be allowed to create databases),
is named after prod's database and the deploy's timestamp so an operator who sees one
knows where it came from (``forgeerp_rehearsal_20261201t193000z``), and is dropped when
the rehearsal ends: on success, on failure, and on Ctrl-C or SIGTERM (the command layer
turns SIGTERM into KeyboardInterrupt, so both take the same ``finally``). While it is
being dropped a second Ctrl-C is held back until the drop is done: an impatient second
press must not leave the database behind. ``keep`` (``--keep-rehearsal``) leaves it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from safemig.errors import CheckFailed, DatabaseError, SafemigError

MAX_NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1


def scratch_name(database: str, moment: datetime) -> str:
    """``<prod database>_rehearsal_<UTC timestamp>``, cut (at a character boundary) to 63 bytes."""
    suffix = f"_rehearsal_{moment.astimezone(UTC):%Y%m%dt%H%M%S}z"
    room = MAX_NAME_BYTES - len(suffix.encode())
    head = database.encode("utf-8")[:room].decode("utf-8", "ignore")
    return head + suffix


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server, as the same role (URL or conninfo)."""
    from urllib.parse import quote, urlsplit, urlunsplit

    if url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + quote(name, safe="")))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=name)


def can_create_databases(conn) -> tuple[str, bool]:
    """The connection's role and whether it may create databases (CREATEDB or superuser)."""
    role, allowed = conn.execute(
        "SELECT current_user, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    return role, bool(allowed)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while the body runs; re-raise Ctrl-C afterwards if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda s, _f: came.append(s))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if came:
        raise KeyboardInterrupt


def _create(conn, name: str, encoding: str) -> None:
    import psycopg
    from psycopg import sql

    from safemig.db import error_text

    try:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(
                sql.Identifier(name), sql.Literal(encoding)
            )
        )
    except psycopg.errors.DuplicateDatabase:
        raise CheckFailed(
            f"the rehearsal database {name} already exists on the staging server",
            hint=(
                "a kept rehearsal (--keep-rehearsal) of a deploy started in the same second: drop it, or wait a second"
            ),
        ) from None
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot create the rehearsal database {name} on the staging server: {error_text(exc)}",
            hint='check the staging role may create databases, or set rehearsal = "staging"',
        ) from None


def drop(admin_url: str, name: str) -> None:
    """Drop ``name`` (and end every session in it) from a fresh connection to the staging server."""
    from psycopg import sql

    from safemig import db

    with db.connect(admin_url, autocommit=True, application_name="safemig deploy (rehearsal cleanup)") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def exists(admin_url: str, name: str) -> bool:
    from safemig import db

    with db.connect(admin_url, autocommit=True, application_name="safemig deploy") as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@contextmanager
def scratch_database(
    admin_conn, admin_url: str, name: str, *, encoding: str, keep: bool, warn: Callable[[str], None]
) -> Iterator[str]:
    """Create database ``name`` on ``admin_conn``'s server; yield its URL; drop it at the end unless ``keep``.

    A failed drop while another error is on its way out is told to ``warn`` (the first
    error is the one that matters); on the success path it is raised.
    """
    try:
        _create(admin_conn, name, encoding)
    except KeyboardInterrupt:  # during CREATE DATABASE: it may exist or not
        with _signals_held():
            _drop_or_warn(admin_url, name, warn)
        raise
    ok = False
    try:
        yield with_database(admin_url, name)
        ok = True
    finally:
        if not keep:
            with _signals_held():
                if ok:
                    drop(admin_url, name)
                else:
                    _drop_or_warn(admin_url, name, warn)


def _drop_or_warn(admin_url: str, name: str, warn: Callable[[str], None]) -> None:
    try:
        drop(admin_url, name)
    except SafemigError as exc:
        warn(f"the rehearsal database {name} could not be dropped: {exc.message}; drop it by hand")
    except Exception as exc:  # psycopg.Error: a server gone away
        from safemig.db import error_text

        warn(f"the rehearsal database {name} could not be dropped: {error_text(exc)}; drop it by hand")
