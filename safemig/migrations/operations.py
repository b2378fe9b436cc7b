"""The ``safemig migrate ...`` commands as plain functions: library first, the CLI only renders.

Each function opens its own connection (autocommit; the :class:`Migrator` runs the
transactions), takes sqlx's advisory lock when it writes, and returns what happened.
Nothing here prints: progress reaches the caller through an :class:`Observer` and the
``on_wait`` callback (called when another migrator holds the lock).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from safemig.db import advisory_lock, connect, error_text
from safemig.errors import DatabaseError, LedgerError, MigrationFileError, UsageError
from safemig.migrations import ledger
from safemig.migrations.blockers import LockWatch
from safemig.migrations.engine import (
    AppliedMigration,
    ApplySettings,
    Migrator,
    Observer,
    no_rollback_error,
    rollback_file_name,
)
from safemig.migrations.files import Migration, discover, display_path, find_rollback

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

_TIMESTAMP_VERSION = 10**13  # sqlx's timestamp versions look like 20240101120000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\- ]*$")


@contextmanager
def session(url: str, *, lock: bool, on_wait: Callable[[], None] | None = None) -> Iterator[psycopg.Connection]:
    """A connection to ``url`` (autocommit), holding sqlx's migration lock when ``lock``."""
    conn = connect(url, autocommit=True)
    try:
        with advisory_lock(conn, on_wait=on_wait) if lock else nullcontext():
            yield conn
    finally:
        conn.close()


@dataclass
class RunReport:
    """What ``migrate run`` planned and applied (a dry run applies nothing)."""

    plan: list[Migration]
    applied: list[AppliedMigration] = field(default_factory=list)
    dry_run: bool = False
    newest_applied: int | None = None


def run(
    url: str,
    migrations_dir: Path,
    rollbacks_dir: Path,
    *,
    target_version: int | None = None,
    allow_out_of_order: bool = False,
    dry_run: bool = False,
    settings: ApplySettings = ApplySettings(),
    observer: Observer | None = None,
    on_wait: Callable[[], None] | None = None,
) -> RunReport:
    """Apply pending migrations in version order; a dry run checks and plans but touches nothing."""
    migrations = discover(migrations_dir)
    with session(url, lock=not dry_run, on_wait=on_wait) as conn, LockWatch(url) as watch:  # names lock blockers
        migrator = Migrator(
            conn, migrations, rollbacks_dir=rollbacks_dir, settings=settings, observer=observer, lock_watch=watch
        )
        plan = migrator.plan(target_version, allow_out_of_order)
        report = RunReport(plan=plan, dry_run=dry_run)
        if not dry_run:
            report.applied = [migrator.apply(m) for m in plan]
        report.newest_applied = max((v for v, r in migrator.rows().items() if r.success), default=None)
        return report


def info(url: str, migrations_dir: Path) -> list[ledger.MigrationState]:
    """Every version with its state; reads only (no lock, no table created)."""
    import psycopg

    migrations = discover(migrations_dir)
    with session(url, lock=False) as conn:
        try:
            rows = ledger.applied_rows(conn)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot read {ledger.TABLE}: {error_text(exc)}") from None
    return ledger.states(migrations, rows)


@dataclass
class RevertStep:
    """One migration to revert and the script that undoes it."""

    migration: Migration
    script: Path
    result: AppliedMigration | None = None


def revert(
    url: str,
    migrations_dir: Path,
    rollbacks_dir: Path,
    *,
    target_version: int | None = None,
    dry_run: bool = False,
    settings: ApplySettings = ApplySettings(),
    observer: Observer | None = None,
    on_wait: Callable[[], None] | None = None,
) -> list[RevertStep]:
    """Revert the newest applied migration, or every one above ``target_version`` (0: all), newest first.

    Every rollback script is found before anything runs, so a missing one stops the
    command before it reverts anything.
    """
    migrations = discover(migrations_dir)
    if target_version is not None and target_version != 0 and target_version not in {m.version for m in migrations}:
        raise UsageError(
            f"--target-version {target_version} is not a migration in {display_path(migrations_dir)}",
            hint="pick a version listed by `safemig migrate info` (0 reverts everything)",
        )
    with session(url, lock=not dry_run, on_wait=on_wait) as conn, LockWatch(url) as watch:  # names lock blockers
        migrator = Migrator(
            conn, migrations, rollbacks_dir=rollbacks_dir, settings=settings, observer=observer, lock_watch=watch
        )
        found = migrator.states()
        errors = ledger.problems(found, allow_out_of_order=True)
        if errors:
            raise errors[0]
        applied = [st.migration for st in found if st.state == "applied" and st.migration is not None]
        newest = applied[-1].version if applied else 0
        if target_version is not None and target_version > newest:
            raise UsageError(
                f"--target-version {target_version} is newer than the newest applied version {newest}",
                hint="revert goes back: give a version at or below the newest applied one",
            )
        if target_version is None:
            chosen = applied[-1:]
        else:
            chosen = [m for m in applied if m.version > target_version]
        steps = []
        for migration in reversed(chosen):
            script = find_rollback(migration, rollbacks_dir)
            if script is None:
                raise no_rollback_error(migration, rollbacks_dir)
            steps.append(RevertStep(migration, script))
        if not dry_run:
            for step in steps:
                step.result = migrator.revert(step.migration)
        return steps


def next_version_prefix(migrations: list[Migration]) -> str:
    """The next version, zero-padded like the existing files (timestamps stay timestamps)."""
    if not migrations:
        return "001"
    newest = max(migrations, key=lambda m: m.version)
    if newest.version >= _TIMESTAMP_VERSION:
        stamp = int(datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
        return str(max(stamp, newest.version + 1))
    width = max(len(m.path.name.split("_", 1)[0]) for m in migrations)
    return str(newest.version + 1).zfill(width)


def add(migrations_dir: Path, rollbacks_dir: Path, name: str, *, today: date | None = None) -> tuple[Path, Path]:
    """Create the next migration (the guide's template header) and its rollback stub; return both paths."""
    name = name.strip()
    if not _NAME.match(name):
        raise UsageError(
            f"migration name {name!r} must be letters, digits, '_', '-' or spaces",
            hint="e.g. safemig migrate add add_user_preferences_table",
        )
    slug = re.sub(r"\s+", "_", name)
    migrations_dir.mkdir(parents=True, exist_ok=True)
    migrations = discover(migrations_dir)
    prefix = next_version_prefix(migrations)
    migration_path = migrations_dir / f"{prefix}_{slug}.sql"
    rollback_path = rollbacks_dir / rollback_file_name(migration_path.name)
    for path in (migration_path, rollback_path):
        if path.exists():
            raise MigrationFileError(f"{path} already exists", hint="choose another name")
    description = slug.replace("_", " ")
    created = (today or date.today()).isoformat()
    migration_path.write_text(
        f"-- Migration: {description}\n"
        f"-- Created: {created}\n"
        "--\n"
        "-- Describe what this migration does and why. Keep it idempotent:\n"
        "-- CREATE TABLE / INDEX IF NOT EXISTS, CREATE OR REPLACE FUNCTION, existence checks for triggers and policies.\n"
        "\n",
        encoding="utf-8",
    )
    rollbacks_dir.mkdir(parents=True, exist_ok=True)
    rollback_path.write_text(
        f"-- Rollback for {migration_path.name}\n"
        f"-- Created: {created}\n"
        "--\n"
        "-- Undo the migration with DROP ... IF EXISTS, newest object first. Warn above any statement that deletes data.\n"
        "\n",
        encoding="utf-8",
    )
    return migration_path, rollback_path


@dataclass(frozen=True)
class MarkResult:
    """What ``mark-applied`` did: ``inserted`` a row, ``repaired`` a failed one, or ``unchanged``."""

    migration: Migration
    action: str
    previous: ledger.AppliedRow | None


def mark_applied(
    url: str, migrations_dir: Path, version: int, reason: str, *, on_wait: Callable[[], None] | None = None
) -> MarkResult:
    """Record ``version`` as applied without running it, with the file's real checksum.

    The guide's troubleshooting step for a migration fixed by hand. A failed row is
    turned into a successful one; an applied row with another checksum is refused
    (that is a modified migration, not a failed one). ``execution_time`` is 0 so such
    rows stay recognisable.
    """
    if not reason.strip():
        raise UsageError(
            "--reason must say why the migration is marked applied",
            hint='e.g. --reason "index built by hand, INC-1234"',
        )
    migrations = {m.version: m for m in discover(migrations_dir)}
    migration = migrations.get(version)
    if migration is None:
        raise MigrationFileError(
            f"no migration file with version {version} in {display_path(migrations_dir)}",
            hint="mark-applied records a file's real checksum, so the file must exist",
        )
    import psycopg

    with session(url, lock=True, on_wait=on_wait) as conn:
        try:
            ledger.ensure_table(conn)
            with conn.transaction():
                previous = ledger.applied_rows(conn).get(version)
                action = _record_as_applied(conn, migration, previous)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot update {ledger.TABLE}: {error_text(exc)}") from None
    return MarkResult(migration, action, previous)


def _record_as_applied(conn: psycopg.Connection, migration: Migration, previous: ledger.AppliedRow | None) -> str:
    """Write (or repair) the row for ``migration``; say which of the three things happened."""
    if previous is None:
        ledger.insert_row(conn, migration, 0)
        return "inserted"
    if not previous.success:
        conn.execute(
            f"UPDATE {ledger.TABLE} SET success = TRUE, checksum = %s, description = %s, execution_time = 0 WHERE version = %s",
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
