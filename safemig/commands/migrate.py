"""`safemig migrate ...`: run, info, revert, add, mark-applied (sqlx-cli's commands, made safe).

This module only parses options, calls :mod:`safemig.migrations.operations` and renders
the result through :mod:`safemig.output`. psycopg and the engine are imported inside
the command functions so that ``safemig lint`` never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from safemig.commands.common import (
    ConfigOption,
    DatabaseUrlOption,
    EnvOption,
    JsonOption,
    QuietOption,
    SourceOption,
    load,
)

if TYPE_CHECKING:  # pragma: no cover
    from safemig.config import Config
    from safemig.migrations.engine import ApplySettings, Observer

TargetOption = Annotated[
    int | None,
    typer.Option(
        "--target-version",
        help="Stop at this version (run: apply up to it; revert: revert down to it, 0 = all).",
        show_default=False,
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show the plan and the SQL that would run; touch nothing.")
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Print each statement with its duration and rows affected.")
]
LockTimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--lock-timeout",
        help="Session lock_timeout while migrating, e.g. 5s (default: the env's lock_timeout with --env, else the server's).",
        show_default=False,
    ),
]
StatementTimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--statement-timeout",
        help="Session statement_timeout while migrating, e.g. 15min (default: the env's with --env, else the server's).",
        show_default=False,
    ),
]
LockRetriesOption = Annotated[
    int | None,
    typer.Option(
        "--lock-retries",
        min=0,
        help="Retries after a lock_timeout, 0-100, with exponential backoff (default: the env's lock_retries, else 0).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``safemig migrate`` and its subcommands to the root app."""
    migrate = typer.Typer(
        name="migrate",
        help="Apply, inspect and revert migrations; the _sqlx_migrations ledger stays sqlx-compatible.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    migrate.command("run")(run_command)
    migrate.command("info")(info_command)
    migrate.command("revert")(revert_command)
    migrate.command("add")(add_command)
    migrate.command("mark-applied")(mark_applied_command)
    app.add_typer(migrate)


# -- helpers -----------------------------------------------------------------------------


def _database(config: Config, env: str | None, database_url: str | None) -> str:
    from safemig.config import resolve_database_url

    return resolve_database_url(config, env=env, database_url=database_url)


def _settings(
    config: Config, env: str | None, lock_timeout: str | None, statement_timeout: str | None, lock_retries: int | None
) -> ApplySettings:
    """The env's settings (the very ones deploy uses) with the CLI options over them.

    With no env, the server's own timeouts apply and nothing is retried; options are checked by
    the env keys' own parsers either way (``--lock-timeout 30d`` is refused like ``lock_timeout = "30d"``).
    """
    from safemig.config import EnvSettings, parse_options
    from safemig.deploy.settings import apply_settings
    from safemig.migrations.engine import ApplySettings

    options = {"lock_timeout": lock_timeout, "statement_timeout": statement_timeout, "lock_retries": lock_retries}
    if env:
        return apply_settings(config.env(env).with_options(**options))
    given = parse_options(**options)
    return ApplySettings(
        lock_timeout=str(given["lock_timeout"]) if "lock_timeout" in given else None,
        statement_timeout=str(given["statement_timeout"]) if "statement_timeout" in given else None,
        lock_retries=given.get("lock_retries", 0),
        retry_backoff=EnvSettings(env="").retry_backoff.seconds,
    )


def _writer_arguments(
    config, source, env, database_url, lock_timeout, statement_timeout, lock_retries
) -> tuple[Config, dict]:
    """The config, and the keyword arguments ``operations.run`` and ``operations.revert`` share."""
    cfg = load(config, source)
    return cfg, {
        "url": _database(cfg, env, database_url),
        "migrations_dir": cfg.migrations_dir,
        "rollbacks_dir": cfg.rollbacks_dir,
        "settings": _settings(cfg, env, lock_timeout, statement_timeout, lock_retries),
        "on_wait": _on_wait,
    }


def _on_wait() -> None:
    from safemig import output

    output.echo(
        "waiting for the migration lock: another migrator (safemig, sqlx-cli or an application) is running on this database ...",
        err=True,
    )


def duration(seconds: float) -> str:
    """``850µs``, ``12.3ms``, ``4.20s``: short and readable."""
    if seconds < 0.001:
        return f"{seconds * 1_000_000:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds:.2f}s"


def _observer(verbose: bool, doing: str, done: str) -> Observer:
    from safemig import output
    from safemig.migrations.engine import Observer
    from safemig.migrations.files import display_path

    class CliObserver(Observer):
        """Renders progress: one line per migration, and per statement with ``-v``."""

        def migration_started(self, migration, attempt):
            if verbose:
                suffix = f" (attempt {attempt})" if attempt > 1 else ""
                output.echo(f"{doing} {display_path(migration.path)}{suffix}")

        def statement_finished(self, conn, migration, result):
            if verbose:
                rows = (
                    f", {result.rowcount} row{'s' if result.rowcount != 1 else ''}"
                    if result.rowcount is not None
                    else ""
                )
                output.echo(
                    f"  {result.index:>3}  line {result.line:<4} {duration(result.duration_s):>8}  {result.status}{rows}  {result.first_line[:90]}"
                )

        def migration_finished(self, migration, result):
            count = len(result.statements)
            output.echo(
                f"{done} {migration.version}/{migration.description} "
                f"({duration(result.duration_ns / 1e9)}, {count} statement{'s' if count != 1 else ''})",
                style="green",
            )

        def retrying(self, migration, attempt, error, delay):
            output.warn(f"version {migration.version}: {error}; retrying in {delay:g}s (retry {attempt})")

    return CliObserver()


# -- commands ----------------------------------------------------------------------------


def run_command(
    target_version: TargetOption = None,
    dry_run: DryRunOption = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
    allow_out_of_order: Annotated[
        bool, typer.Option("--allow-out-of-order", help="Apply pending migrations older than the newest applied one.")
    ] = False,
    lock_timeout: LockTimeoutOption = None,
    statement_timeout: StatementTimeoutOption = None,
    lock_retries: LockRetriesOption = None,
    config: ConfigOption = None,
    env: EnvOption = None,
    database_url: DatabaseUrlOption = None,
    source: SourceOption = None,
) -> None:
    """Apply pending migrations in version order, each with its _sqlx_migrations row in the same transaction."""
    from safemig import output
    from safemig.migrations import operations
    from safemig.migrations.engine import parse
    from safemig.migrations.files import display_path

    _, common = _writer_arguments(config, source, env, database_url, lock_timeout, statement_timeout, lock_retries)
    report = operations.run(
        **common,
        target_version=target_version,
        allow_out_of_order=allow_out_of_order,
        dry_run=dry_run,
        observer=_observer(verbose, "Applying", "Applied"),
    )
    if dry_run:
        for migration in report.plan:
            statements = parse(migration.sql, display_path(migration.path), no_transaction=migration.no_transaction)
            mode = "no transaction, statement by statement" if migration.no_transaction else "in one transaction"
            output.echo(
                f"-- Would apply {display_path(migration.path)} ({len(statements)} statement{'' if len(statements) == 1 else 's'}, {mode})"
            )
            for statement in statements:
                output.echo(f"-- line {statement.line}\n{statement.text};")
            output.echo(f"-- then record version {migration.version} in _sqlx_migrations\n")
        output.echo(f"Dry run: {len(report.plan)} migration(s) would be applied; nothing was changed.")
        return
    if not report.applied:
        at = (
            f"version {report.newest_applied}"
            if report.newest_applied is not None
            else "no version (nothing applied, no migrations pending)"
        )
        output.echo(f"Nothing to apply: the database is at {at}.")
        return
    output.echo(f"{len(report.applied)} migration(s) applied; the database is at version {report.newest_applied}.")


def info_command(
    json_out: JsonOption = False,
    config: ConfigOption = None,
    env: EnvOption = None,
    database_url: DatabaseUrlOption = None,
    source: SourceOption = None,
) -> None:
    """List every migration with its state: applied, pending, modified, missing, failed, out_of_order."""
    from safemig import output
    from safemig.migrations import operations
    from safemig.migrations.files import display_path

    cfg = load(config, source)
    found = operations.info(_database(cfg, env, database_url), cfg.migrations_dir)
    if json_out:
        output.print_json(
            [
                {
                    "version": st.version,
                    "description": st.description,
                    "state": st.state,
                    "file": display_path(st.migration.path) if st.migration else None,
                    "installed_on": st.row.installed_on.isoformat() if st.row else None,
                    "execution_time_ns": st.row.execution_time if st.row else None,
                    "checksum": st.migration.checksum.hex() if st.migration else None,
                    "applied_checksum": st.row.checksum.hex() if st.row else None,
                    "no_transaction": st.migration.no_transaction if st.migration else None,
                }
                for st in found
            ]
        )
        return
    if not found:
        output.echo(f"No migrations in {display_path(cfg.migrations_dir)} and none applied.")
        return
    styles = {"applied": "green", "pending": "yellow", "out_of_order": "yellow"}
    output.echo(f"{'VERSION':<15} {'STATE':<13} {'INSTALLED ON':<20} {'TIME':>9}  DESCRIPTION")
    for st in found:
        installed = st.row.installed_on.strftime("%Y-%m-%d %H:%M:%S") if st.row else "-"
        took = duration(st.row.execution_time / 1e9) if st.row and st.row.execution_time >= 0 else "-"
        output.echo(
            f"{st.version:<15} {st.state:<13} {installed:<20} {took:>9}  {st.description}",
            style=styles.get(st.state, "red"),
        )
        if st.state == "modified":
            output.echo(f"    applied checksum {st.row.checksum.hex()}")  # type: ignore[union-attr]
            output.echo(f"    file checksum    {st.migration.checksum.hex()}")  # type: ignore[union-attr]


def revert_command(
    target_version: TargetOption = None,
    dry_run: DryRunOption = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
    lock_timeout: LockTimeoutOption = None,
    statement_timeout: StatementTimeoutOption = None,
    lock_retries: LockRetriesOption = None,
    config: ConfigOption = None,
    env: EnvOption = None,
    database_url: DatabaseUrlOption = None,
    source: SourceOption = None,
) -> None:
    """Revert the newest applied migration (or all above --target-version) with its .down.sql or rollbacks/ script."""
    from safemig import output
    from safemig.migrations import operations
    from safemig.migrations.files import display_path

    _, common = _writer_arguments(config, source, env, database_url, lock_timeout, statement_timeout, lock_retries)
    steps = operations.revert(
        **common, target_version=target_version, dry_run=dry_run, observer=_observer(verbose, "Reverting", "Reverted")
    )
    if not steps:
        output.echo("No migrations available to revert.")
        return
    if dry_run:
        for step in steps:
            output.echo(
                f"-- Would revert {step.migration.version}/{step.migration.description} with {display_path(step.script)}"
            )
            output.echo(step.script.read_text(encoding="utf-8").rstrip() + "\n")
        output.echo(f"Dry run: {len(steps)} migration(s) would be reverted; nothing was changed.")


def add_command(
    name: Annotated[str, typer.Argument(help="What the migration does, e.g. add_user_preferences_table.")],
    config: ConfigOption = None,
    source: SourceOption = None,
) -> None:
    """Create the next migration file (same zero-padding, the guide's template header) and its rollback stub."""
    from safemig import output
    from safemig.migrations import operations
    from safemig.migrations.files import display_path

    cfg = load(config, source)
    migration, rollback = operations.add(cfg.migrations_dir, cfg.rollbacks_dir, name)
    output.echo(f"Created {display_path(migration)}")
    output.echo(f"Created {display_path(rollback)}")


def mark_applied_command(
    version: Annotated[int, typer.Argument(help="Version to record as applied without running it.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (printed, for the deploy log), e.g. an incident id.")],
    config: ConfigOption = None,
    env: EnvOption = None,
    database_url: DatabaseUrlOption = None,
    source: SourceOption = None,
) -> None:
    """Record a migration fixed by hand as applied, with its file's real checksum (the guide's troubleshooting step)."""
    from safemig import output
    from safemig.migrations import operations

    cfg = load(config, source)
    result = operations.mark_applied(
        _database(cfg, env, database_url), cfg.migrations_dir, version, reason, on_wait=_on_wait
    )
    m = result.migration
    what = {
        "inserted": "inserted its _sqlx_migrations row",
        "repaired": "turned its failed _sqlx_migrations row into a successful one",
        "unchanged": "it was already recorded as applied with this checksum; nothing changed",
    }[result.action]
    output.echo(f"Marked version {m.version} ({m.description}) as applied without running it: {what}.")
    output.echo(f"  checksum {m.checksum.hex()}")
    output.echo(f"  reason   {reason}")
