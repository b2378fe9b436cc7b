"""Roles beside a backup: ``pg_dumpall --globals-only`` at backup time, missing roles created on restore.

pg_dump holds no roles, so a restore onto a new server fails on ``ALTER ... OWNER TO
app_owner`` (role does not exist). The backup therefore stores the cluster's globals beside the
dump (without password hashes unless ``backup.role_passwords = true``), and ``restore
--create-roles`` creates the roles the target lacks, with their attributes, memberships and
settings, in one transaction. Roles that exist on the target are never altered. The
tablespaces in the same script are :mod:`safemig.backup.tablespaces`' business.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from safemig.backup.pgdump import Binary, child_env
from safemig.backup.store import BackupInfo, storage_error
from safemig.errors import CheckFailed, DatabaseError, SafemigError, ToolError

if TYPE_CHECKING:  # pragma: no cover
    from safemig.backup.fetch import RestoreBound

_CREATE = re.compile(r'^CREATE ROLE (?P<name>"(?:[^"]|"")+"|[^\s;]+);$')
_ROLE_LINE = re.compile(r'^ALTER ROLE (?P<name>"(?:[^"]|"")+"|[^\s;]+) ')
_GRANT = re.compile(r'^GRANT (?P<role>"(?:[^"]|"")+"|[^\s;]+) TO (?P<member>"(?:[^"]|"")+"|[^\s;]+)')


def dump_globals(pg_dumpall: Binary, conninfo: str, password: str | None, *, role_passwords: bool) -> bytes:
    """``pg_dumpall --globals-only`` of the server (roles, memberships, role settings, tablespaces)."""
    args = [pg_dumpall.path, "--globals-only", "--no-password", f"--dbname={conninfo}"]
    if not role_passwords:
        args.append("--no-role-passwords")  # also lets a non-superuser read the roles (pg_roles, not pg_authid)
    try:
        done = subprocess.run(args, env=child_env(password), capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"cannot run pg_dumpall: {exc}", hint="check backup.pg_bin_dir or PATH") from None
    if done.returncode != 0:
        from safemig.redact import redact

        said = redact(" ".join(done.stderr.decode("utf-8", "replace").split()))[-1500:]
        raise ToolError(
            f"pg_dumpall --globals-only exited with status {done.returncode}: {said}",
            hint="the backup role must be able to read pg_roles; nothing was stored",
        )
    return done.stdout


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def stored_roles(script: str) -> set[str]:
    """The names of the roles a globals script creates."""
    return {_unquote(m["name"]) for line in script.splitlines() if (m := _CREATE.match(line))}


def plan(script: str, existing: set[str]) -> tuple[list[str], list[str]]:
    """(roles to create, statements creating them) for the roles of ``script`` not in ``existing``."""
    lines = script.splitlines()
    missing = [m["name"] for line in lines if (m := _CREATE.match(line)) and _unquote(m["name"]) not in existing]
    created = set(missing)
    statements = [f"CREATE ROLE {name}" for name in missing]
    for line in lines:
        role = _ROLE_LINE.match(line)
        if role and role["name"] in created:
            statements.append(line.rstrip(";"))
        grant = _GRANT.match(line)
        if grant and (grant["role"] in created or grant["member"] in created):
            if {_unquote(grant["role"]), _unquote(grant["member"])} <= existing | {_unquote(n) for n in created}:
                statements.append(line.rstrip(";"))
    return [_unquote(n) for n in missing], statements


def fetch_globals(client: Any, info: BackupInfo) -> str:
    """The globals script (roles, tablespaces) stored beside ``info``, checked against the SHA-256 in its manifest."""
    from botocore.exceptions import BotoCoreError, ClientError

    stored = info.globals
    if not stored:
        raise CheckFailed(
            f"{info.uri} has no roles stored beside it (a backup made before roles were kept)",
            hint="create the roles by hand, or restore with --no-owner --no-privileges",
        )
    key = str(stored["key"])
    try:
        body = client.get_object(Bucket=info.bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, "reading", info.bucket, key) from None
    if hashlib.sha256(body).hexdigest() != stored.get("sha256"):
        raise CheckFailed(
            f"s3://{info.bucket}/{key} does not match its recorded checksum: no role or tablespace was created",
            hint="the object was changed or damaged in storage; restore with --no-owner --no-privileges instead",
        )
    return body.decode("utf-8")


def create_missing_roles(
    client: Any, info: BackupInfo, target_url: str, bound: RestoreBound | None = None
) -> list[str]:
    """Create the backup's roles the target's server lacks (one transaction); return their names.

    Under ``bound`` (the restore's stall bound) a wait for a lock another session holds on
    ``pg_authid`` (a transaction creating the same role, say) ends at ``stall_timeout`` with
    :class:`~safemig.backup.fetch.RestoreStalled`; the transaction is rolled back, so no role is
    left half-made or made after the restore gave up.
    """
    import psycopg

    from safemig.db import describe, error_text

    script = fetch_globals(client, info)
    with target_session(target_url, bound, autocommit=False) as conn:
        try:
            existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
            names, statements = plan(script, existing)
            for statement in statements:
                conn.execute(statement.encode())
                if bound is not None:
                    bound.beat()
            conn.commit()
        except psycopg.Error as exc:
            doing = f"creating the backup's roles on {describe(target_url)}"
            raise_if_stalled(bound, exc, doing, "no role was created, nothing was restored")
            raise DatabaseError(
                f"cannot create the backup's roles on {describe(target_url)}: {error_text(exc)}",
                hint="the restoring role needs CREATEROLE (superuser for SUPERUSER/REPLICATION/BYPASSRLS roles);"
                " or restore with --no-owner --no-privileges",
            ) from None
    return names


@contextmanager
def target_session(url: str, bound: RestoreBound | None, *, autocommit: bool) -> Iterator[Any]:
    """A connection for a step of the restore: under ``bound`` when there is one (its waits end at
    ``stall_timeout``, a stall cancels its statement), else a plain one."""
    from safemig.db import connect

    if bound is not None:
        with bound.session(url, autocommit=autocommit) as conn:
            yield conn
        return
    with connect(url, autocommit=autocommit, application_name="safemig restore") as conn:
        yield conn


def raise_if_stalled(bound: RestoreBound | None, exc: BaseException, doing: str, consequence: str) -> None:
    """Raise the :class:`~safemig.backup.fetch.RestoreStalled` that ``exc`` (from a
    :func:`target_session`) stands for, if it was the bound that ended the statement; else return."""
    stalled = bound.step_error(exc, doing, consequence) if bound is not None else None
    if stalled is not None:
        raise stalled from None


def left_behind(tablespaces: list[str], roles: list[str], by: str = "this restore") -> str:
    """The sentence naming what ``by`` created and could not drop again ("" if nothing)."""
    said = [f"{kind}(s) {', '.join(names)}" for kind, names in (("tablespace", tablespaces), ("role", roles)) if names]
    if not said:
        return ""
    return f"{' and '.join(said)} created by {by} could not be dropped again: drop them by hand"


def drop_roles(target_url: str, names: list[str], timeout: float | None = None) -> list[str]:
    """Undo :func:`create_missing_roles` after a refused restore (they own nothing yet); best effort.

    Returns the roles left. ``timeout``: each wait (a lock, a statement) ends after that long.
    """
    return drop_globals(target_url, "ROLE", names, timeout)


def drop_globals(
    target_url: str, kind: Literal["ROLE", "TABLESPACE"], names: list[str], timeout: float | None = None
) -> list[str]:
    """Drop cluster-wide objects a refused restore created, newest first, each on its own; best effort.

    One that cannot go (a tablespace holding what a restore that was not one transaction left,
    a lock another session holds) stays for the user, and is returned; the restore's own error
    is the one reported. ``timeout`` (the restore's ``stall_timeout``): how long a lock or a
    statement may be waited for, and, doubled, for all of it (a frozen server).
    """
    if not names:
        return []
    left = list(names)
    if timeout is None:
        _drop_each(target_url, kind, left, None)
        return left
    from safemig.backup.watchdog import run_bounded

    run_bounded(lambda: _drop_each(target_url, kind, left, timeout), 2 * timeout + 10.0)
    return list(left)


def _drop_each(target_url: str, kind: str, left: list[str], timeout: float | None) -> None:
    """Drop each of ``left`` (newest first), removing from it the ones dropped."""
    import psycopg
    from psycopg import sql

    from safemig.backup.fetch import bounded_session
    from safemig.db import connect

    try:
        if timeout is None:
            opened: Any = connect(target_url, autocommit=True, application_name="safemig restore")
        else:
            opened = bounded_session(target_url, timeout)
        with opened as conn:
            for name in reversed(list(left)):
                try:
                    conn.execute(sql.SQL("DROP {} IF EXISTS {}").format(sql.SQL(kind), sql.Identifier(name)))
                    left.remove(name)
                except psycopg.Error:
                    pass  # e.g. not empty, or locked: left for the user
    except (psycopg.Error, SafemigError):
        pass  # the restore's own error is the one to report


def undo_created(
    target_url: str, roles: list[str], tablespaces: list[str], timeout: float, by: str = "this restore"
) -> str:
    """Drop what a failed restore (or ``by``) created, tablespaces first (created roles may own them),
    each wait bounded by ``timeout``; return a sentence naming what could not be dropped ("" if nothing)."""
    spaces_left = drop_globals(target_url, "TABLESPACE", tablespaces, timeout)
    return left_behind(spaces_left, drop_globals(target_url, "ROLE", roles, timeout), by)
