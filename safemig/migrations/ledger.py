"""The ``_sqlx_migrations`` ledger, byte-compatible with sqlx-cli, and the checks made against it.

The table DDL, the checksum (SHA-384 of the file's raw bytes) and the rows are exactly
sqlx's (``sqlx-postgres/src/migrate.rs``), so a database can move between sqlx-cli and
safemig in both directions. What safemig adds is refusing clearly where sqlx is terse
or silent: every refusal names the version, says what is wrong and how to resolve it.

State of each version, as :func:`states` reports it:

* ``applied`` - a successful row whose checksum matches the file;
* ``pending`` - a file with no row, newer than every applied version;
* ``out_of_order`` - a file with no row, older than the newest applied version;
* ``modified`` - a row whose checksum differs from the file's (the file was edited);
* ``missing`` - a row with no file (the file was deleted or renamed);
* ``failed`` - a row with ``success = false`` (a migration died half-way; sqlx calls it dirty).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from safemig.errors import DatabaseError, LedgerError
from safemig.migrations.files import Migration, display_path
from safemig.sqlx_config import DEFAULT_TABLE, TableName

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

TABLE = DEFAULT_TABLE  # how messages name the ledger

# Verbatim column list of sqlx's ensure_migrations_table, so both tools create the same table.
CREATE_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS {} (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)"""

STATES = ("applied", "pending", "modified", "missing", "failed", "out_of_order")


@dataclass(frozen=True)
class AppliedRow:
    """One row of ``_sqlx_migrations``."""

    version: int
    description: str
    installed_on: datetime
    success: bool
    checksum: bytes
    execution_time: int  # nanoseconds; sqlx writes -1 when it died before measuring


@dataclass(frozen=True)
class MigrationState:
    """A version as both sides see it: the file (if any), the row (if any) and the verdict."""

    version: int
    description: str
    state: str
    migration: Migration | None
    row: AppliedRow | None


@dataclass(frozen=True)
class Ledger:
    """The one ledger table a session reads and writes, schema-qualified.

    sqlx writes ``_sqlx_migrations`` unqualified: its ``CREATE TABLE IF NOT EXISTS`` makes a
    new table in the first schema of ``search_path`` even when one exists in a later schema,
    and then reads that empty one. safemig resolves the name once per session instead
    (:func:`resolve`) and uses the qualified name for every read and write.
    """

    schema: str
    name: str = DEFAULT_TABLE

    @property
    def ident(self) -> psycopg.sql.Identifier:
        from psycopg import sql

        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def resolve(conn: psycopg.Connection, table: TableName | Ledger | None = None) -> Ledger:
    """The ledger for ``table`` (sqlx.toml's ``table-name``, default ``_sqlx_migrations``) on this session.

    A schema-qualified name is used as given. An unqualified one is the table
    ``search_path`` finds, or, when there is none yet, the one ``CREATE TABLE`` would make
    (in ``current_schema()``), so that reads and writes agree.
    """
    if isinstance(table, Ledger):
        return table
    table = table or TableName()
    if table.schema is not None:
        return Ledger(table.schema, table.name)
    row = conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(quote_ident(%s))",
        (table.name,),
    ).fetchone()
    if row is None:
        row = conn.execute("SELECT current_schema()").fetchone()
        if row is None or row[0] is None:
            raise DatabaseError(
                f"no schema to create {table.name} in: no schema on search_path exists",
                hint='create the schema, fix search_path, or set table-name = "SCHEMA._sqlx_migrations" in sqlx.toml',
            )
    return Ledger(row[0], table.name)


def ensure_table(conn: psycopg.Connection, ledger: Ledger | None = None) -> None:
    """Create the ledger if it does not exist (the same DDL sqlx runs)."""
    from psycopg import sql

    conn.execute(sql.SQL(CREATE_TABLE_SQL).format(resolve(conn, ledger).ident))


def create_schemas(conn: psycopg.Connection, schemas: Iterable[str]) -> None:
    """sqlx.toml's ``create-schemas``: ``CREATE SCHEMA IF NOT EXISTS`` each, before the ledger."""
    from psycopg import sql

    for schema in schemas:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def relation_exists(conn: psycopg.Connection, schema: str, name: str) -> bool:
    """True when ``schema.name`` exists (exact names, no search_path)."""
    row = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, name)
    ).fetchone()
    return bool(row and row[0])


def table_exists(conn: psycopg.Connection, ledger: Ledger | None = None) -> bool:
    """True when the ledger table exists (a dry run creates nothing)."""
    found = resolve(conn, ledger)
    return relation_exists(conn, found.schema, found.name)


def applied_rows(conn: psycopg.Connection, ledger: Ledger | TableName | None = None) -> dict[int, AppliedRow]:
    """Every ledger row by version; an absent table means nothing was applied yet.

    ``ledger``: the resolved table, or sqlx.toml's ``table-name`` (``config.sqlx.table``) to resolve.
    """
    from psycopg import sql

    found = resolve(conn, ledger)
    if not table_exists(conn, found):
        return {}
    cur = conn.execute(
        sql.SQL(
            "SELECT version, description, installed_on, success, checksum, execution_time FROM {} ORDER BY version"
        ).format(found.ident)
    )
    return {row[0]: AppliedRow(row[0], row[1], row[2], row[3], bytes(row[4]), row[5]) for row in cur}


def _ident(ledger: Ledger | None) -> psycopg.sql.Composable:
    from psycopg import sql

    return ledger.ident if ledger is not None else sql.Identifier(TABLE)


def insert_sql(migration: Migration, execution_time_ns: int, ledger: Ledger | None = None) -> psycopg.sql.Composed:
    """sqlx's INSERT for ``migration`` (``installed_on`` by default), values as literals.

    As literals it can share one round trip with the COMMIT that follows it.
    """
    from psycopg import sql

    return sql.SQL(
        "INSERT INTO {} (version, description, success, checksum, execution_time) VALUES ({}, {}, TRUE, {}, {})"
    ).format(
        _ident(ledger),
        sql.Literal(migration.version),
        sql.Literal(migration.description),
        sql.Literal(migration.checksum),
        sql.Literal(execution_time_ns),
    )


def delete_sql(version: int, ledger: Ledger | None = None) -> psycopg.sql.Composed:
    """sqlx's revert bookkeeping: forget ``version``."""
    from psycopg import sql

    return sql.SQL("DELETE FROM {} WHERE version = {}").format(_ident(ledger), sql.Literal(version))


def insert_row(
    conn: psycopg.Connection, migration: Migration, execution_time_ns: int, ledger: Ledger | None = None
) -> None:
    """Record ``migration`` as applied, exactly as sqlx's INSERT does."""
    conn.execute(insert_sql(migration, execution_time_ns, resolve(conn, ledger)))


def delete_row(conn: psycopg.Connection, version: int, ledger: Ledger | None = None) -> None:
    """Forget ``version`` (a revert), as sqlx's revert does."""
    conn.execute(delete_sql(version, resolve(conn, ledger)))


def states(migrations: Iterable[Migration], rows: dict[int, AppliedRow]) -> list[MigrationState]:
    """Every version known to the files or to the ledger, in version order, with its state."""
    by_version = {m.version: m for m in migrations}
    newest_applied = max((v for v, r in rows.items() if r.success), default=None)
    result = []
    for version in sorted(set(by_version) | set(rows)):
        migration, row = by_version.get(version), rows.get(version)
        if row is not None and not row.success:
            state = "failed"
        elif row is None:
            state = "out_of_order" if newest_applied is not None and version < newest_applied else "pending"
        elif migration is None:
            state = "missing"
        elif migration.checksum != row.checksum:
            state = "modified"
        else:
            state = "applied"
        description = migration.description if migration is not None else row.description  # type: ignore[union-attr]
        result.append(MigrationState(version, description, state, migration, row))
    return result


def problems(
    found: list[MigrationState], *, allow_out_of_order: bool = False, ignore_missing: bool = False
) -> list[LedgerError]:
    """One :class:`LedgerError` per version that forbids migrating: failed rows first, then
    missing files, modified files and out-of-order pending ones, each in version order.

    ``ignore_missing`` is sqlx's ``--ignore-missing``: applied rows without a file are
    history that was squashed or deleted on purpose (``validate_applied_migrations`` in
    ``sqlx-cli/src/migrate.rs`` skips its check). Modified and failed rows still refuse.
    """
    makers = {
        "failed": lambda st: _failed(st),
        "missing": lambda st: _missing(st, found),
        "modified": lambda st: _modified(st),
    }
    if ignore_missing:
        del makers["missing"]
    if not allow_out_of_order:
        makers["out_of_order"] = lambda st: _out_of_order(st, found)
    return [makers[state](st) for state in makers for st in found if st.state == state]


def check(
    migrations: Iterable[Migration],
    rows: dict[int, AppliedRow],
    allow_out_of_order: bool = False,
    *,
    ignore_missing: bool = False,
) -> list[Migration]:
    """The migrations still to apply, in version order; refuse (exit 1) when the ledger disagrees.

    The first problem is raised; the message says how many more there are (``safemig
    migrate info`` lists them all).
    """
    found = states(migrations, rows)
    errors = problems(found, allow_out_of_order=allow_out_of_order, ignore_missing=ignore_missing)
    if errors:
        first = errors[0]
        if len(errors) > 1:
            more = f"{len(errors) - 1} more problem{'s' if len(errors) > 2 else ''}"
            first.message += f" (and {more}; `safemig migrate info` lists them)"
        raise first
    return [st.migration for st in found if st.state in ("pending", "out_of_order") and st.migration is not None]


# -- refusal messages ------------------------------------------------------------------


def label(st: MigrationState) -> str:
    """``version 3 (create rls policies)``: how messages name a version."""
    return f"version {st.version} ({st.description})"


def _failed(st: MigrationState) -> LedgerError:
    where = display_path(st.migration.path) if st.migration else "its file"
    return LedgerError(
        f"{label(st)} is recorded as failed (success = false in {TABLE}): it may be half-applied",
        hint=(
            f"inspect the schema, finish or undo what {where} did by hand, then run "
            f"`safemig migrate mark-applied {st.version} --reason ...` (or DELETE its row to retry it)"
        ),
    )


def _missing(st: MigrationState, found: list[MigrationState]) -> LedgerError:
    renamed = next(
        (
            o.migration
            for o in found
            if o.row is None
            and o.migration is not None
            and st.row is not None
            and o.migration.checksum == st.row.checksum
        ),
        None,
    )
    if renamed is not None:
        return LedgerError(
            f"{label(st)} is applied but its file is gone: it was renamed to {renamed.name} "
            f"(same checksum, new version {renamed.version})",
            hint=f"rename {renamed.name} back to a name starting with {st.version}_; never renumber applied migrations",
        )
    return LedgerError(
        f"{label(st)} is applied but no file for it exists: it was deleted or renamed",
        hint="restore the file from version control (git log --diff-filter=D -- <migrations dir>); "
        "applied migrations are history, or pass --ignore-missing if they were squashed or deleted on purpose",
    )


def _modified(st: MigrationState) -> LedgerError:
    assert st.migration is not None and st.row is not None
    return LedgerError(
        f"{display_path(st.migration.path)}: {label(st)} was modified after it was applied: "
        f"applied checksum {st.row.checksum.hex()}, file checksum {st.migration.checksum.hex()}",
        hint="restore the applied content (git checkout <commit> -- <file>) and put the change in a new migration "
        "(`safemig migrate add`)",
    )


def _out_of_order(st: MigrationState, found: list[MigrationState]) -> LedgerError:
    newest = max(o.version for o in found if o.row is not None and o.row.success)
    return LedgerError(
        f"{display_path(st.migration.path) if st.migration else 'ledger'}: {label(st)} is pending but older than "
        f"the newest applied version {newest} (out of order)",
        hint=f"give it a version above {newest} (rename the file), or pass --allow-out-of-order if applying it late is "
        'safe (out_of_order = "warn" or "allow" in safemig.toml to accept such versions always)',
    )
