"""The ``safemig migrate ...`` commands as plain functions: library first, the CLI only renders.

Each function opens its own connection (autocommit; the :class:`Migrator` runs the
transactions), takes sqlx's advisory lock when it writes, and returns what happened.
Nothing here prints: progress reaches the caller through an :class:`Observer` and the
``on_wait`` callback (called when another migrator holds the lock).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from safemig.db import DEFAULT_CONNECT_TIMEOUT, advisory_lock, connect, error_text
from safemig.errors import CheckFailed, ConfigError, DatabaseError, LedgerError, MigrationFileError, UsageError
from safemig.migrations import ledger, notes
from safemig.migrations.blockers import LockWatch
from safemig.migrations.engine import (
    AppliedMigration,
    ApplySettings,
    Migrator,
    Observer,
    rollback_file_name,
)
from safemig.migrations.files import Migration, display_path, find_rollback, scan
from safemig.sqlx_config import SqlxConfig

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from safemig.config import Config

_TIMESTAMP_VERSION = 10**13  # sqlx's timestamp versions look like 20240101120000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\- ]*$")


OUT_OF_ORDER_POLICIES = ("refuse", "warn", "allow")
DEFAULT_SETTINGS = ApplySettings()


@contextmanager
def session(
    url: str,
    *,
    lock: bool,
    on_wait: Callable[[], None] | None = None,
    lock_wait: float | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Iterator[psycopg.Connection]:
    """A connection to ``url`` (autocommit), holding sqlx's migration lock when ``lock``.

    ``lock_wait``: seconds to wait for another migrator's lock (``None``: until it is free,
    as sqlx's ``Migrator::run`` waits; 0: refuse at once).
    """
    conn = connect(url, autocommit=True, connect_timeout=connect_timeout)
    try:
        with advisory_lock(conn, on_wait=on_wait, wait_s=lock_wait) if lock else nullcontext():
            yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class Source:
    """Where the migrations are and how sqlx.toml says to read and record them."""

    migrations_dir: Path
    rollbacks_dir: Path
    sqlx: SqlxConfig = SqlxConfig()

    @classmethod
    def of(cls, config: Config) -> Source:
        return cls(config.migrations_dir, config.rollbacks_dir, config.sqlx)

    def scan(self, on_warning: Callable[[str], None] | None = None) -> list[Migration]:
        """The migrations (checksums with sqlx.toml's ``ignored-chars``); name warnings go to ``on_warning``."""
        found = scan(self.migrations_dir, ignored_chars=self.sqlx.ignored_chars)
        for warning in found.warnings:
            if on_warning is not None:
                on_warning(warning)
        return found.migrations

    def migrator(self, conn: psycopg.Connection, migrations: list[Migration], **kwargs) -> Migrator:
        return Migrator(
            conn,
            migrations,
            rollbacks_dir=self.rollbacks_dir,
            table=self.sqlx.table,
            create_schemas=self.sqlx.create_schemas,
            **kwargs,
        )


@dataclass(frozen=True)
class Connection:
    """How to reach the database and its migration lock."""

    url: str
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    lock_wait: float | None = None
    on_wait: Callable[[], None] | None = None

    def session(self, *, lock: bool) -> AbstractContextManager[psycopg.Connection]:
        return session(
            self.url, lock=lock, on_wait=self.on_wait, lock_wait=self.lock_wait, connect_timeout=self.connect_timeout
        )


def check_out_of_order_policy(value: object, where: str) -> str:
    """``refuse`` / ``warn`` / ``allow``, or a :class:`ConfigError` naming the setting."""
    if value not in OUT_OF_ORDER_POLICIES:
        raise ConfigError(
            f"{where}: out_of_order = {value!r} must be one of {', '.join(OUT_OF_ORDER_POLICIES)}",
            hint='e.g. out_of_order = "warn" (apply late versions, say so) for teams with timestamped branches',
        )
    return str(value)


def connect_timeout_setting(config: Config, env: str | None) -> float:
    """``envs.ENV.connect_timeout`` in seconds (checked when the config was read), else sqlx-cli's 10."""
    return config.env(env).connect_timeout.seconds if env else DEFAULT_CONNECT_TIMEOUT


def out_of_order_policy(config: Config, env: str | None, *, allow_flag: bool = False) -> str:
    """``--allow-out-of-order`` (``allow``), else ``envs.ENV.out_of_order``, else the top-level
    ``out_of_order``, else ``refuse``. For ``safemig deploy`` as much as ``migrate run``."""
    if allow_flag:
        return "allow"
    env_policy = config.env(env).out_of_order if env else None  # checked when the config was read
    if env_policy is not None:
        return env_policy
    if "out_of_order" in config.sections:
        return check_out_of_order_policy(config.sections["out_of_order"], f"out_of_order in {config.source}")
    return "refuse"


@dataclass
class RunReport:
    """What ``migrate run`` planned and applied (a dry run applies nothing)."""

    plan: list[Migration]
    applied: list[AppliedMigration] = field(default_factory=list)
    dry_run: bool = False
    newest_applied: int | None = None
    late: list[Migration] = field(default_factory=list)  # pending versions older than the newest applied
    ledger: str = ledger.TABLE


def run(
    db: Connection,
    source: Source,
    *,
    target_version: int | None = None,
    out_of_order: str = "refuse",
    ignore_missing: bool = False,
    dry_run: bool = False,
    settings: ApplySettings = DEFAULT_SETTINGS,
    observer: Observer | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> RunReport:
    """Apply pending migrations in version order; a dry run checks and plans but touches nothing.

    ``out_of_order``: ``refuse`` a pending version older than the newest applied one
    (exit 1), ``warn`` (apply it and say so through ``on_warning``) or ``allow`` (apply it,
    as sqlx does silently).
    """
    check_out_of_order_policy(out_of_order, "out_of_order")
    migrations = source.scan(on_warning)
    with db.session(lock=not dry_run) as conn, LockWatch(db.url) as watch:  # names lock blockers
        migrator = source.migrator(
            conn, migrations, settings=settings, observer=observer, ignore_missing=ignore_missing, lock_watch=watch
        )
        plan = migrator.plan(target_version, allow_out_of_order=out_of_order != "refuse")
        newest = max((v for v, r in migrator.rows().items() if r.success), default=None)
        report = RunReport(plan=plan, dry_run=dry_run, ledger=str(migrator.ledger_table))
        report.late = [m for m in plan if newest is not None and m.version < newest]
        if out_of_order == "warn" and on_warning is not None:
            for m in report.late:
                on_warning(
                    f"{display_path(m.path)}: version {m.version} is older than the newest applied version {newest}; "
                    'applied out of order (out_of_order = "warn")'
                )
        if not dry_run:
            report.applied = [migrator.apply(m) for m in plan]
        report.newest_applied = max((v for v, r in migrator.rows().items() if r.success), default=None)
        return report


@dataclass
class InfoReport:
    """Every version with its state, the notes mark-applied left, and the ledger read."""

    states: list[ledger.MigrationState]
    notes: dict[int, list[notes.Note]]
    ledger: str


def info(db: Connection, source: Source, *, on_warning: Callable[[str], None] | None = None) -> InfoReport:
    """Every version with its state; reads only (no lock, no table created, unlike sqlx-cli's info)."""
    import psycopg

    migrations = source.scan(on_warning)
    with db.session(lock=False) as conn:
        try:
            table = ledger.resolve(conn, source.sqlx.table)
            rows = ledger.applied_rows(conn, table)
            found_notes = notes.read(conn, table)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot read {source.sqlx.table}: {error_text(exc)}") from None
    return InfoReport(ledger.states(migrations, rows), found_notes, str(table))


@dataclass
class RevertStep:
    """One migration to revert and the script that undoes it."""

    migration: Migration
    script: Path
    result: AppliedMigration | None = None


@dataclass
class RevertReport:
    """What ``migrate revert`` reverted (or would), and the applied versions it skipped (no script)."""

    steps: list[RevertStep]
    skipped: list[ledger.MigrationState] = field(default_factory=list)


def revert(
    db: Connection,
    source: Source,
    *,
    target_version: int | None = None,
    ignore_missing: bool = False,
    dry_run: bool = False,
    settings: ApplySettings = DEFAULT_SETTINGS,
    observer: Observer | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> RevertReport:
    """Revert the newest applied migration, or every one above ``target_version`` (0: all), newest first.

    As sqlx (``sqlx-cli/src/migrate.rs``, ``revert``), applied versions with no rollback
    script (no ``.down.sql``, no ``rollbacks/`` script) are skipped, and none to revert
    is no error. Stricter where it protects data: sqlx would then revert an *older*
    version underneath one that stays applied (and may depend on it); safemig refuses
    that. Every rollback script is found before anything runs.
    """
    migrations = source.scan(on_warning)
    if target_version is not None and target_version != 0 and target_version not in {m.version for m in migrations}:
        raise UsageError(
            f"--target-version {target_version} is not a migration in {display_path(source.migrations_dir)}",
            hint="pick a version listed by `safemig migrate info` (0 reverts everything)",
        )
    with db.session(lock=not dry_run) as conn, LockWatch(db.url) as watch:  # names lock blockers
        migrator = source.migrator(
            conn, migrations, settings=settings, observer=observer, ignore_missing=ignore_missing, lock_watch=watch
        )
        found = migrator.states()
        errors = ledger.problems(found, allow_out_of_order=True, ignore_missing=ignore_missing)
        if errors:
            raise errors[0]
        applied = [st for st in found if st.row is not None and st.row.success]
        newest = applied[-1].version if applied else 0
        if target_version is not None and target_version > newest:
            raise UsageError(
                f"--target-version {target_version} is newer than the newest applied version {newest}",
                hint="revert goes back: give a version at or below the newest applied one",
            )
        floor = target_version if target_version is not None else -(2**63)
        report = RevertReport(steps=[])
        kept: ledger.MigrationState | None = None  # the newest applied version that has no script
        for st in reversed([st for st in applied if st.version > floor]):
            script = find_rollback(st.migration, source.rollbacks_dir) if st.migration is not None else None
            if script is None:
                kept = kept or st
                report.skipped.append(st)
                continue
            if kept is not None:
                example = (
                    display_path(source.rollbacks_dir / rollback_file_name(kept.migration.path.name))
                    if kept.migration
                    else "a .down.sql"
                )
                raise CheckFailed(
                    f"cannot revert {ledger.label(st)} while {ledger.label(kept)} stays applied above it: "
                    f"version {kept.version} has no rollback script",
                    hint=f"write a rollback for version {kept.version} (e.g. {example}) so it is reverted first; "
                    "sqlx would revert the older version underneath it",
                )
            assert st.migration is not None  # a script was found for its file
            report.steps.append(RevertStep(st.migration, script))
            if target_version is None:
                break
        if not dry_run:
            for step in report.steps:
                step.result = migrator.revert(step.migration)
        return report


def _newest_distinct(migrations: list[Migration]) -> list[int]:
    return sorted({m.version for m in migrations})


def next_version_prefix(migrations: list[Migration], versioning: str = "inferred") -> str:
    """The next version: ``timestamp``, ``sequential`` or ``inferred`` from the existing files.

    Inferred: a timestamp (UTC ``YYYYMMDDHHMMSS``) in an empty directory and after
    timestamp versions, else the next number with the existing zero-padding (``0042``).
    sqlx infers from the last two versions only (``sqlx-cli/src/opt.rs``,
    ``version_prefix``), which turns ``1, 3`` or a lone ``0041`` into a timestamp; safemig
    follows the scheme the files show. A timestamp never goes below the newest version.
    """
    versions = _newest_distinct(migrations)
    newest = versions[-1] if versions else None
    if versioning == "inferred":
        versioning = "timestamp" if newest is None or newest >= _TIMESTAMP_VERSION else "sequential"
    if versioning == "timestamp":
        stamp = int(datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
        return str(max(stamp, (newest or 0) + 1))
    if newest is None:
        return "0001"  # sqlx's fmt_sequential width
    width = max((len(m.path.name.split("_", 1)[0]) for m in migrations if m.version == newest), default=4)
    return str(newest + 1).zfill(width)


def add(
    source: Source,
    name: str,
    *,
    reversible: bool | None = None,
    versioning: str | None = None,
    today: date | None = None,
) -> list[Path]:
    """Create the next migration (the guide's template header) and its rollback; return the paths.

    Like ``sqlx migrate add``: ``reversible`` (``-r``) makes an ``.up.sql``/``.down.sql``
    pair; ``None`` follows sqlx.toml's ``migration-type``, else the newest migration's kind.
    ``versioning`` (``-t``/``-s``) picks timestamp or sequential; ``None`` follows
    sqlx.toml's ``migration-versioning``, else :func:`next_version_prefix`'s inference.
    A simple migration gets the guide's rollback stub in ``rollbacks/`` when that directory
    exists (a stock sqlx repository has none, and gets none).
    """
    name = name.strip()
    if not _NAME.match(name):
        raise UsageError(
            f"migration name {name!r} must be letters, digits, '_', '-' or spaces",
            hint="e.g. safemig migrate add add_user_preferences_table",
        )
    slug = re.sub(r"\s+", "_", name)
    source.migrations_dir.mkdir(parents=True, exist_ok=True)
    migrations = source.scan()
    if reversible is None:
        kind = source.sqlx.migration_type
        reversible = kind == "reversible" or (kind == "inferred" and bool(migrations) and migrations[-1].reversible)
    prefix = next_version_prefix(migrations, versioning or source.sqlx.migration_versioning)
    description = slug.replace("_", " ")
    created = (today or date.today()).isoformat()
    header = (
        f"-- Migration: {description}\n"
        f"-- Created: {created}\n"
        "--\n"
        "-- Describe what this migration does and why. Keep it idempotent:\n"
        "-- CREATE TABLE / INDEX IF NOT EXISTS, CREATE OR REPLACE FUNCTION, "
        "existence checks for triggers and policies.\n"
        "\n"
    )
    if reversible:
        migration_path = source.migrations_dir / f"{prefix}_{slug}.up.sql"
        rollback_path: Path | None = source.migrations_dir / f"{prefix}_{slug}.down.sql"
    else:
        migration_path = source.migrations_dir / f"{prefix}_{slug}.sql"
        rollback_path = (
            source.rollbacks_dir / rollback_file_name(migration_path.name) if source.rollbacks_dir.is_dir() else None
        )
    paths = [migration_path] + ([rollback_path] if rollback_path is not None else [])
    for path in paths:
        if path.exists():
            raise MigrationFileError(f"{path} already exists", hint="choose another name")
    migration_path.write_text(header, encoding="utf-8")
    if rollback_path is not None:
        rollback_path.write_text(
            f"-- Rollback for {migration_path.name}\n"
            f"-- Created: {created}\n"
            "--\n"
            "-- Undo the migration with DROP ... IF EXISTS, newest object first. "
            "Warn above any statement that deletes data.\n"
            "\n",
            encoding="utf-8",
        )
    return paths


@dataclass(frozen=True)
class MarkResult:
    """What ``mark-applied`` did: ``inserted`` a row, ``repaired`` a failed one, or ``unchanged``."""

    migration: Migration
    action: str
    previous: ledger.AppliedRow | None
    ledger: str = ledger.TABLE


def mark_applied(
    db: Connection, source: Source, version: int, reason: str, *, on_warning: Callable[[str], None] | None = None
) -> MarkResult:
    """Record ``version`` as applied without running it, with the file's real checksum.

    The guide's troubleshooting step for a migration fixed by hand. A failed row is
    turned into a successful one; an applied row with another checksum is refused
    (that is a modified migration, not a failed one). ``execution_time`` is 0 so such
    rows stay recognisable, and the reason is kept in ``_safemig_notes``
    (:mod:`safemig.migrations.notes`), written in the same transaction, where ``info``
    shows it.
    """
    if not reason.strip():
        raise UsageError(
            "--reason must say why the migration is marked applied",
            hint='e.g. --reason "index built by hand, INC-1234"',
        )
    migrations = {m.version: m for m in source.scan(on_warning)}
    migration = migrations.get(version)
    if migration is None:
        raise MigrationFileError(
            f"no migration file with version {version} in {display_path(source.migrations_dir)}",
            hint="mark-applied records a file's real checksum, so the file must exist",
        )
    import psycopg

    with db.session(lock=True) as conn:
        try:
            table = ledger.resolve(conn, source.sqlx.table)
            ledger.create_schemas(conn, source.sqlx.create_schemas)
            ledger.ensure_table(conn, table)
            with conn.transaction():
                previous = ledger.applied_rows(conn, table).get(version)
                action = _record_as_applied(conn, table, migration, previous)
                notes.add(conn, table, version, action, reason.strip(), migration.checksum)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot update {source.sqlx.table}: {error_text(exc)}") from None
    return MarkResult(migration, action, previous, str(table))


def _record_as_applied(
    conn: psycopg.Connection, table: ledger.Ledger, migration: Migration, previous: ledger.AppliedRow | None
) -> str:
    """Write (or repair) the row for ``migration``; say which of the three things happened."""
    from psycopg import sql

    if previous is None:
        ledger.insert_row(conn, migration, 0, table)
        return "inserted"
    if not previous.success:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET success = TRUE, checksum = %s, description = %s, execution_time = 0 WHERE version = %s"
            ).format(table.ident),
            (migration.checksum, migration.description, migration.version),
        )
        return "repaired"
    if previous.checksum == migration.checksum:
        return "unchanged"
    raise LedgerError(
        f"version {migration.version} is already applied with checksum {previous.checksum.hex()}, "
        f"but {display_path(migration.path)} has {migration.checksum.hex()}",
        hint="that is a modified migration: restore the applied file and add a new migration instead",
    )
