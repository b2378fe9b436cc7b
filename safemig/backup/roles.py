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
from typing import Any, Literal

from safemig.backup.pgdump import Binary, child_env
from safemig.backup.store import BackupInfo, storage_error
from safemig.errors import CheckFailed, DatabaseError, ToolError

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


def create_missing_roles(client: Any, info: BackupInfo, target_url: str) -> list[str]:
    """Create the backup's roles the target's server lacks (one transaction); return their names."""
    import psycopg

    from safemig.db import connect, describe, error_text

    script = fetch_globals(client, info)
    with connect(target_url, application_name="safemig restore") as conn:
        try:
            existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
            names, statements = plan(script, existing)
            for statement in statements:
                conn.execute(statement.encode())
            conn.commit()
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot create the backup's roles on {describe(target_url)}: {error_text(exc)}",
                hint="the restoring role needs CREATEROLE (superuser for SUPERUSER/REPLICATION/BYPASSRLS roles);"
                " or restore with --no-owner --no-privileges",
            ) from None
    return names


def drop_roles(target_url: str, names: list[str]) -> None:
    """Undo :func:`create_missing_roles` after a refused restore (they own nothing yet); best effort."""
    drop_globals(target_url, "ROLE", names)


def drop_globals(target_url: str, kind: Literal["ROLE", "TABLESPACE"], names: list[str]) -> None:
    """Drop cluster-wide objects a refused restore created, newest first, each on its own; best effort.

    One that cannot go (a tablespace holding what a restore that was not one transaction left)
    stays for the user; the restore's own error is the one reported.
    """
    import psycopg
    from psycopg import sql

    from safemig.db import connect

    if not names:
        return
    try:
        with connect(target_url, autocommit=True, application_name="safemig restore") as conn:
            for name in reversed(names):
                try:
                    conn.execute(sql.SQL("DROP {} IF EXISTS {}").format(sql.SQL(kind), sql.Identifier(name)))
                except psycopg.Error:
                    pass  # e.g. not empty: left for the user
    except psycopg.Error:
        pass  # the restore's own error is the one to report
