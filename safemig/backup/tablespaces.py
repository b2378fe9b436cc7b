"""Tablespaces on restore: those the archive's objects use that the target's server lacks.

pg_dump records, in each TOC entry of a table, index, constraint or materialized view, the
tablespace it lives in, and pg_restore runs ``SET default_tablespace = NAME`` before creating
it. On a server without that tablespace the SET fails ("invalid value for parameter
default_tablespace"): a one-transaction restore rolls back at that object, a spooled one
(``-j N``, not one transaction) stops there with part of the backup committed. So the restore
finds them first and, per ``policy``:

* ``"keep"`` (the default): refuse before anything is done (exit 2), naming them, the objects
  that use them and where they were on the source;
* ``"none"``: pg_restore ``--no-tablespaces``, everything in the target database's default
  tablespace (no check);
* ``"none-if-missing"``: keep the placement when the target has every tablespace used, else
  ``--no-tablespaces`` and report the ones left out (the deploy's rehearsal: it checks schema
  and data, not placement);
* ``"create"``: create the missing ones from the ``CREATE TABLESPACE`` statements stored in the
  backup's globals (``pg_dumpall --globals-only``), with their options, comment and grants, at
  their stored directory or one given per name (``locations``). The directory must exist on
  the target's host, be empty and belong to the server's OS user; that is the server's
  business, so PostgreSQL's refusal is reported with what to do. Superuser only.

How the used tablespaces are found, cheaply: the globals list every tablespace of the source
cluster (pg_default and pg_global are never dumped). When they name none, or the target has
all of them, nothing in the archive can be missing and no more is read. Otherwise (and for a
backup without globals) ``pg_restore --schema-only`` reads the archive's TOC from the start
of the object and exits (the data are not downloaded), and the ``SET default_tablespace``
line before each object's header says where it goes. Why not a mapping ``old=new`` to an
existing tablespace: pg_restore has no such option (its TOC says where each object goes), and
moving the objects afterwards (``ALTER ... SET TABLESPACE``) copies every table's and index's
files again under an ACCESS EXCLUSIVE lock; creating the tablespace under the same name
elsewhere (``locations``) gives the same placement at no cost.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from safemig.backup.pgdump import Binary, ChildProcess, child_env, write_all
from safemig.backup.store import BackupInfo
from safemig.errors import CheckFailed, DatabaseError, ToolError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from safemig.backup.fetch import RestoreBound

POLICIES: tuple[str, ...] = ("keep", "none", "none-if-missing", "create")

# pg_restore's output: ``SET default_tablespace = NAME;`` (fmtId-quoted, '' for the database's
# default) whenever the next object's tablespace differs from the previous one's, then other
# SETs, then each object's header, which ends in "; Tablespace: NAME" for an object placed in
# one. The SET counts only when an object's header follows it, so a function body holding such
# a line is not taken for one; the header says which objects are in the current tablespace.
_PLACEMENT = re.compile(
    r"^SET default_tablespace = (?P<set>''|\"(?:[^\"]|\"\")+\"|[^\s;']+);\n\n"
    r"(?=(?:SET [a-z_]+ = [^\n]*;\n\n)*--\n-- Name: )"
    r"|^-- Name: (?P<object>[^\n]*); Type: (?P<type>[^;\n]*); Schema: (?P<schema>[^;\n]*); Owner: [^\n]*; Tablespace: ",
    re.M,
)
_TABLESPACE_STATEMENT = re.compile(
    r"^\s*(?:CREATE TABLESPACE|ALTER TABLESPACE|COMMENT ON TABLESPACE|(?:GRANT|REVOKE)\s.*\sON TABLESPACE)\s",
    re.S,
)
_DIRECTORY_HINT = (
    "create the directory on the target server's host (empty, owned by the server's OS user, e.g. postgres),"
    " or pass --tablespace-location NAME=DIR, or restore with --no-tablespaces"
)


@dataclass(frozen=True)
class StoredTablespace:
    """A tablespace as ``pg_dumpall --globals-only`` stored it."""

    name: str
    owner: str | None
    location: str
    statements: tuple[str, ...] = ()  # ALTER ... SET (options), COMMENT, GRANT/REVOKE, as stored
    roles: frozenset[str] = frozenset()  # the roles those statements name (grantees, grantors)


@dataclass(frozen=True)
class Placement:
    """What a restore does about tablespaces: pg_restore's options, what to create first, what is left out."""

    options: tuple[str, ...] = ()
    to_create: tuple[StoredTablespace, ...] = ()
    locations: Mapping[str, str] = field(default_factory=dict)  # name -> directory (the stored one unless given)
    no_owner: bool = False
    no_privileges: bool = False
    omitted: tuple[str, ...] = ()  # used, missing on the target, restored into its default ("none-if-missing")


def stored_tablespaces(script: str) -> dict[str, StoredTablespace]:
    """The tablespaces of a ``pg_dumpall --globals-only`` script, with the statements that set them up.

    Split with safemig's own splitter (a ``COMMENT`` may span lines), parsed per statement
    with pglast (libpg_query, PostgreSQL's own grammar); psql meta-commands (``\\restrict``)
    are dropped first. ``SECURITY LABEL`` is left out: its provider may not exist on the target.
    """
    if "TABLESPACE" not in script:
        return {}  # the usual case: no parser to load
    import pglast
    from pglast import ast, enums

    from safemig.sql.split import split_statements

    text = "\n".join("" if line.startswith("\\") else line for line in script.splitlines())
    created: dict[str, StoredTablespace] = {}
    extra: dict[str, list[str]] = {}
    named: dict[str, set[str]] = {}
    for statement in split_statements(text):
        if not _TABLESPACE_STATEMENT.match(statement.text):
            continue
        sql = statement.text.strip().rstrip(";")
        try:
            node = pglast.parse_sql(sql)[0].stmt
        except pglast.parser.ParseError as exc:
            raise ToolError(
                f"cannot read the stored globals' statement on line {statement.line}: {exc}",
                hint="restore with --no-tablespaces, or create the tablespaces by hand",
            ) from None
        names: list[str]
        if isinstance(node, ast.CreateTableSpaceStmt):
            owner = node.owner.rolename if node.owner is not None else None
            created[str(node.tablespacename)] = StoredTablespace(str(node.tablespacename), owner, node.location or "")
            continue
        if isinstance(node, ast.AlterTableSpaceOptionsStmt):
            names = [str(node.tablespacename)]
        elif isinstance(node, ast.CommentStmt) and node.objtype == enums.ObjectType.OBJECT_TABLESPACE:
            names = [str(getattr(node.object, "sval", ""))]
        elif isinstance(node, ast.GrantStmt) and node.objtype == enums.ObjectType.OBJECT_TABLESPACE:
            names = [str(getattr(obj, "sval", "")) for obj in node.objects or ()]
            specs = [*(node.grantees or ()), node.grantor]
            roles = {spec.rolename for spec in specs if spec is not None and spec.rolename}  # PUBLIC has none
            for name in names:
                named.setdefault(name, set()).update(roles)
        else:
            continue
        for name in names:
            extra.setdefault(name, []).append(sql)
    return {
        name: StoredTablespace(
            name, space.owner, space.location, tuple(extra.get(name, ())), frozenset(named.get(name, ()))
        )
        for name, space in created.items()
    }


def archive_tablespaces(
    chunks: Iterable[bytes], pg_restore: Binary, where: str, started: Callable[[ChildProcess], None] | None = None
) -> dict[str, list[str]]:
    """The tablespaces the archive's objects are placed in -> those objects ("TABLE public.a").

    ``pg_restore --schema-only`` over the object's first bytes: it reads the TOC (every
    definition is there), needs no data block, and exits; feeding stops when it does.
    ``started`` is handed that pg_restore (the stall bound stops it if it stops moving).
    """
    with tempfile.TemporaryFile() as out:
        child = ChildProcess(
            [pg_restore.path, "--schema-only", "--file=-"], env=child_env(None), stdin=-1, stdout=out.fileno()
        )
        try:
            if started is not None:
                started(child)
            for chunk in chunks:
                try:
                    write_all(child.stdin, chunk)
                except (BrokenPipeError, ValueError):
                    break  # it has the TOC and exited; its status says whether that was fine
            try:
                child.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        except BaseException:
            child.kill()
            raise
        problem = child.failure("reading the archive's table of contents")
        if problem:
            raise ToolError(f"{where}: {problem}", hint="the object is not a pg_dump archive pg_restore can read")
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    used: dict[str, list[str]] = {}
    current = ""
    for match in _PLACEMENT.finditer(text):
        if match["set"] is not None:
            current = _unquote(match["set"])
        elif current:
            schema = "" if match["schema"] == "-" else match["schema"] + "."
            used.setdefault(current, []).append(f"{match['type']} {schema}{match['object']}")
    return used


def check_options(policy: str, locations: Mapping[str, str]) -> None:
    """Refuse (exit 2) a policy or locations that cannot work, before anything is looked at."""
    if policy not in POLICIES:
        raise UsageError(f"unknown tablespace policy {policy!r}", hint=f"one of {', '.join(POLICIES)}")
    if locations and policy != "create":
        raise UsageError("--tablespace-location needs --create-tablespaces", hint="add --create-tablespaces")
    for name, directory in locations.items():
        if not PurePosixPath(directory).is_absolute():
            raise UsageError(
                f"--tablespace-location {name}={directory}: the directory must be an absolute path",
                hint=f"e.g. --tablespace-location {name}=/srv/postgresql/{name}",
            )


def plan_placement(
    client: Any,
    info: BackupInfo,
    pg_restore: Binary,
    target_url: str,
    *,
    policy: str = "keep",
    locations: Mapping[str, str] | None = None,
    create_roles: bool = False,
    no_owner: bool = False,
    no_privileges: bool = False,
    head: Iterable[bytes] | None = None,
    bound: RestoreBound | None = None,
) -> Placement:
    """Decide, before anything is restored or created, what the restore does about tablespaces.

    ``head``: the object's first bytes, already read by the caller and holding the whole TOC
    (:func:`safemig.backup.verify.toc_from_head`'s ``taken``); without it, when the archive must
    be looked at, its start is read from S3 again.

    Raises :class:`UsageError` (exit 2) for ``"keep"`` when the target lacks a tablespace the
    archive uses, and for ``"create"`` when one cannot be created as asked (no stored
    statement, a location not absolute or naming a tablespace the backup does not have, an
    owner or grantee the target lacks without ``--create-roles``/``--no-owner``/
    ``--no-privileges``); :class:`DatabaseError` (exit 3) when the restoring role is no superuser.
    Under ``bound`` its query of the target and its pg_restore end at ``stall_timeout``
    (:class:`~safemig.backup.fetch.RestoreStalled`).
    """
    from safemig.backup.roles import fetch_globals

    locations = dict(locations or {})
    check_options(policy, locations)
    if policy == "none":
        return Placement(options=("--no-tablespaces",))
    script: str | None = None
    if info.globals:
        try:
            script = fetch_globals(client, info)
        except CheckFailed:
            if policy == "create":
                raise
            # damaged: it only says where to look; read the archive itself
    stored = stored_tablespaces(script) if script is not None else None
    unknown = sorted(set(locations) - set(stored or {}))
    if unknown:
        raise UsageError(
            f"--tablespace-location names {', '.join(unknown)}, which the backup's globals do not hold",
            hint="the names are those of the source's tablespaces (see the refusal without --create-tablespaces)",
        )
    if stored == {}:
        return Placement()  # the source had no tablespace of its own: nothing can be missing
    facts = _target_facts(target_url, bound)
    if stored is not None and set(stored) <= facts.tablespaces:
        return Placement()  # the archive can only use the source's tablespaces: the target has them all
    used = _used(client, info, pg_restore, head, bound)
    missing = {name: objects for name, objects in used.items() if name not in facts.tablespaces}
    if not missing:
        return Placement()
    names = sorted(missing)
    if policy == "none-if-missing":
        return Placement(options=("--no-tablespaces",), omitted=tuple(names))
    if policy == "keep":
        raise UsageError(_refusal(names, missing, stored, target_url), hint=_refusal_hint(names, stored))
    from safemig.backup.roles import stored_roles

    coming = stored_roles(script) if create_roles and script is not None else set()  # created before the tablespaces
    return _creation(names, stored, locations, facts, coming, no_owner, no_privileges, info, target_url)


def _used(
    client: Any, info: BackupInfo, pg_restore: Binary, head: Iterable[bytes] | None, bound: RestoreBound | None
) -> dict[str, list[str]]:
    """The archive's tablespaces, from ``head`` or the object's start; its pg_restore watched by ``bound``."""
    from contextlib import nullcontext

    watching: Any = nullcontext(None)
    if bound is not None:
        watching = bound.watching(f"pg_restore --schema-only reading the table of contents of {info.uri}")
    with watching as started:
        if head is not None:
            return archive_tablespaces(head, pg_restore, info.uri, started)
        from safemig.backup.verify import iter_object

        chunks = iter_object(client, info.bucket, info.key, "reading the table of contents of")
        try:
            return archive_tablespaces(chunks, pg_restore, info.uri, started)
        finally:
            chunks.close()


@dataclass(frozen=True)
class _Facts:
    tablespaces: set[str]
    roles: set[str]
    superuser: bool
    user: str


def _target_facts(url: str, bound: RestoreBound | None = None) -> _Facts:
    import psycopg

    from safemig.backup.roles import raise_if_stalled, target_session
    from safemig.db import describe, error_text

    with target_session(url, bound, autocommit=True) as conn:
        try:
            spaces = {row[0] for row in conn.execute("SELECT spcname FROM pg_tablespace").fetchall()}
            roles = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
            row = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        except psycopg.Error as exc:
            raise_if_stalled(bound, exc, f"reading the tablespaces of {describe(url)}", "nothing was restored")
            raise DatabaseError(f"cannot inspect {describe(url)}: {error_text(exc)}") from None
    assert row is not None  # the session's own role
    return _Facts(spaces, roles, bool(row[1]), row[0])


def _refusal(
    names: list[str], missing: dict[str, list[str]], stored: dict[str, StoredTablespace] | None, url: str
) -> str:
    from safemig.db import describe

    said = []
    for name in names:
        objects = missing[name]
        where = f" at {stored[name].location}" if stored and name in stored and stored[name].location else ""
        example = objects[0] + (f" and {len(objects) - 1} more" if len(objects) > 1 else "")
        said.append(f"{name} ({example}{where + ' on the source' if where else ''})")
    return (
        f"the backup's objects are in tablespace(s) the target's server ({describe(url)}) lacks: "
        + ", ".join(said)
        + ": nothing was restored"
    )


def _refusal_hint(names: list[str], stored: dict[str, StoredTablespace] | None) -> str:
    create = (
        f"--create-tablespaces [--tablespace-location {names[0]}=DIR] to create them (superuser; an empty directory"
        " owned by the server's OS user)"
        if stored is not None and all(name in stored for name in names)
        else "create them on the target (CREATE TABLESPACE, superuser)"
    )
    return f"restore with --no-tablespaces (everything in the target's default tablespace), or {create}"


def _creation(
    names: list[str],
    stored: dict[str, StoredTablespace] | None,
    locations: Mapping[str, str],
    facts: _Facts,
    coming_roles: Iterable[str],
    no_owner: bool,
    no_privileges: bool,
    info: BackupInfo,
    url: str,
) -> Placement:
    from safemig.db import describe

    absent = [name for name in names if stored is None or name not in stored]
    if absent:
        raise UsageError(
            f"{info.uri} has no stored CREATE TABLESPACE for {', '.join(absent)}"
            " (a backup made before the globals were kept beside it): nothing was restored",
            hint="create them on the target by hand (CREATE TABLESPACE), or restore with --no-tablespaces",
        )
    assert stored is not None
    if not facts.superuser:
        raise DatabaseError(
            f"creating tablespace(s) {', '.join(names)} needs a superuser, and {facts.user} on {describe(url)} is not:"
            " nothing was restored",
            hint="restore as a superuser, have one create them first, or restore with --no-tablespaces",
        )
    roles = facts.roles | set(coming_roles)
    spaces = tuple(stored[name] for name in names)
    for space in spaces:
        lacking = set()
        if not no_owner and space.owner and space.owner not in roles:
            lacking.add(space.owner)
        if not no_privileges:
            lacking |= set(space.roles) - roles
        if lacking:
            raise UsageError(
                f"tablespace {space.name} is owned by or granted to role(s) {', '.join(sorted(lacking))},"
                f" which {describe(url)} lacks: nothing was restored",
                hint="add --create-roles, or --no-owner --no-privileges",
            )
    return Placement(
        to_create=spaces,
        locations={space.name: locations.get(space.name, space.location) for space in spaces},
        no_owner=no_owner,
        no_privileges=no_privileges,
    )


def create_tablespaces(
    target_url: str, placement: Placement, bound: RestoreBound | None = None, created: list[str] | None = None
) -> list[str]:
    """Create ``placement.to_create`` on the target's server; return their names.

    ``created``: the caller's list, which holds each name as soon as it exists and, after a
    failure, those that could not be dropped again; so a caller that gave up waiting for this
    (a stall) still knows what to undo and to name.

    ``CREATE TABLESPACE`` cannot run inside a transaction block, so each runs on its own; if one
    fails, those created before it are dropped again (they are empty) and the error says what
    to do. The stored ``ALTER TABLESPACE ... SET``, ``COMMENT`` and grants follow each one
    (grants not with ``no_privileges``; owned by the restoring role with ``no_owner``).
    Under ``bound`` a wait for a lock another session holds on ``pg_tablespace`` ends at
    ``stall_timeout`` (:class:`~safemig.backup.fetch.RestoreStalled`, the ones created dropped).
    A wait for a lock happens before PostgreSQL touches the directory, so none is left half-made.
    """
    import psycopg
    from psycopg import sql

    from safemig.backup.roles import left_behind, raise_if_stalled, target_session
    from safemig.db import describe, error_text

    created = [] if created is None else created
    if not placement.to_create:
        return created
    timeout = bound.timeout if bound is not None else None
    with target_session(target_url, bound, autocommit=True) as conn:
        for space in placement.to_create:
            location = placement.locations.get(space.name, space.location)
            statement = sql.SQL("CREATE TABLESPACE {}").format(sql.Identifier(space.name))
            if space.owner and not placement.no_owner:
                statement += sql.SQL(" OWNER {}").format(sql.Identifier(space.owner))
            statement += sql.SQL(" LOCATION {}").format(sql.Literal(location))
            try:
                conn.execute(statement)
                created.append(space.name)
                for extra in space.statements:
                    if placement.no_privileges and re.match(r"\s*(GRANT|REVOKE)\s", extra):
                        continue
                    conn.execute(extra.encode())
                if bound is not None:
                    bound.beat()
            except psycopg.Error as exc:
                left = drop_tablespaces(target_url, created, timeout)
                created[:] = left
                undone = "; ".join(filter(None, ("nothing was restored", left_behind(left, []))))
                doing = f"creating tablespace {space.name} at {location} on {describe(target_url)}"
                raise_if_stalled(bound, exc, doing, undone)
                raise DatabaseError(
                    f"cannot create tablespace {space.name} at {location} on {describe(target_url)}:"
                    f" {error_text(exc)}: {undone}",
                    hint=_DIRECTORY_HINT,
                ) from None
    return created


def drop_tablespaces(target_url: str, names: list[str], timeout: float | None = None) -> list[str]:
    """Undo :func:`create_tablespaces` after a refused restore; best effort (a partial restore may use them).

    Returns the ones left; ``timeout`` bounds each wait (see :func:`safemig.backup.roles.drop_globals`).
    """
    from safemig.backup.roles import drop_globals

    return drop_globals(target_url, "TABLESPACE", names, timeout)


def _unquote(name: str) -> str:
    if name == "''":
        return ""
    return name[1:-1].replace('""', '"') if name.startswith('"') else name
