"""Prod's tablespaces on the staging server for the length of a rehearsal, created in place.

A rehearsal restores prod's objects into a scratch database on staging's server. Where that
server lacks a tablespace prod's objects are in, the restore can leave placement out (the
rehearsal checks schema and data, not where files live), but a pending migration that names
the tablespace (``CREATE INDEX ... TABLESPACE fast``, ``ALTER TABLE ... SET TABLESPACE``)
would then fail the rehearsal although prod can run it. PostgreSQL 15 added
``allow_in_place_tablespaces``: a superuser may create a tablespace with ``LOCATION ''``,
kept as a directory inside the server's own data directory, with no directory to prepare on
the host (which safemig cannot reach). With such a role on such a server, the rehearsal
creates exactly the missing tablespaces that way, under prod's names, and drops them again
once the scratch database is gone, as it does with the roles prod's policies name.
Elsewhere the rehearsal goes on without them and says what a migration naming one needs.
"""

from __future__ import annotations

from typing import Any

_IN_PLACE_SINCE = 150000  # server_version_num of the first release with allow_in_place_tablespaces


def missing(prod: Any, staging: Any) -> list[str]:
    """The user tablespaces of prod's server that staging's server lacks, by name."""
    query = "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')"
    have = {r[0] for r in staging.execute(query)}
    return sorted({r[0] for r in prod.execute(query)} - have)


def why_not(staging: Any) -> str | None:
    """Why the staging connection's role cannot create in-place tablespaces, or None if it can."""
    row = staging.execute(
        "SELECT current_user, rolsuper, current_setting('server_version_num')::int FROM pg_roles"
        " WHERE rolname = current_user"
    ).fetchone()
    assert row is not None  # the connection's own role
    user, superuser, version = row
    if version < _IN_PLACE_SINCE:
        return f"its server is PostgreSQL {version // 10000}, and in-place tablespaces need 15 or later"
    if not superuser:
        return f"role {user} is not a superuser, which creating a tablespace needs"
    return None


def create(staging: Any, names: list[str], created: list[str]) -> None:
    """``CREATE TABLESPACE name LOCATION ''`` for each name, appending each to ``created`` as soon
    as it exists (so that a caller's cleanup drops what was made before a failure)."""
    import psycopg
    from psycopg import sql

    staging.execute("SET allow_in_place_tablespaces = on")
    try:
        for name in names:
            staging.execute(sql.SQL("CREATE TABLESPACE {} LOCATION ''").format(sql.Identifier(name)))
            created.append(name)
    finally:
        try:
            staging.execute("RESET allow_in_place_tablespaces")
        except psycopg.Error:
            pass  # the session is gone or aborted: the setting went with it; the first error is the one to tell

