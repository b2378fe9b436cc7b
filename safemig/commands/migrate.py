"""`safemig migrate ...`: run, info, revert, add, mark-applied (sqlx-cli's commands, made safe).

This module only parses options, calls :mod:`safemig.migrations.operations` and renders
the result through :mod:`safemig.output`. psycopg and the engine are imported inside
the command functions so that ``safemig lint`` never loads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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
    from safemig.migrations.operations import RunReport
    from safemig.migrations.operations import Source as MigrationSource

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
        help="Session lock_timeout while migrating, e.g. 5s "
        "(default: the env's lock_timeout with --env, else the server's).",
        show_default=False,
    ),
]
StatementTimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--statement-timeout",
        help="Session statement_timeout while migrating, e.g. 15min "
        "(default: the env's with --env, else the server's).",
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


LockWaitOption = Annotated[
    float | None,
    typer.Option(
        "--lock-wait",
        metavar="SECONDS",
        min=0,
        help="Wait at most this long for another migrator's lock, then exit 1 naming it (0: refuse at once; "
        "default: wait until it is free, as sqlx's migrate!().run() does).",
        show_default=False,
    ),
]
ConnectTimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--connect-timeout",
        metavar="SECONDS",
        min=0,
        help="Keep retrying a refused connection this long (sqlx-cli's option; default: the env's "
        "connect_timeout, else 10).",
        show_default=False,
    ),
]
YesOption = Annotated[
    bool,
    typer.Option("--yes", "-y", help="On a protected env: go ahead without asking (needed without a terminal)."),
]
OutsideWindowOption = Annotated[
    bool,
    typer.Option(
        "--outside-window", help="On a protected env: run although its maintenance window is closed (needs --reason)."
    ),
]
WindowReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why the window is overridden (with --outside-window).")
]
IgnoreMissingOption = Annotated[
    bool,
    typer.Option(
        "--ignore-missing", help="Accept applied versions whose files are gone (deleted or squashed), as sqlx does."
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
    migrate.callback()(group_options)
    migrate.command("run")(run_command)
    migrate.command("info")(info_command)
    migrate.command("revert")(revert_command)
    migrate.command("add")(add_command)
    migrate.command("mark-applied")(mark_applied_command)
    app.add_typer(migrate)


def group_options(
    config: ConfigOption = None,
    env: EnvOption = None,
    database_url: DatabaseUrlOption = None,
    source: SourceOption = None,
    connect_timeout: ConnectTimeoutOption = None,
) -> None:
    """Apply, inspect and revert migrations; the _sqlx_migrations ledger stays sqlx-compatible.

    The connection and source options may come before the subcommand too
    (``safemig migrate --source DIR info``); the subcommand's own value wins.
    """


# -- helpers -----------------------------------------------------------------------------


def _inherited(ctx: typer.Context, name: str, value):
    """``value`` if the subcommand got it, else what ``safemig migrate`` itself was given."""
    if value is not None:
        return value
    return ctx.parent.params.get(name) if ctx.parent is not None else None


@dataclass
class _Invocation:
    """What every migrate subcommand resolves the same way: config, source, database."""

    ctx: typer.Context
    config: Config
    env: str | None
    source: MigrationSource

    def connection(self, database_url: str | None, connect_timeout: float | None, lock_wait: float | None = None):
        from safemig.config import resolve_database_url
        from safemig.migrations.operations import Connection, connect_timeout_setting

        database_url = _inherited(self.ctx, "database_url", database_url)
        if database_url:  # --database-url is translated here; an env's or DATABASE_URL in resolve_database_url
            _warn_unknown_parameters(database_url)
        url = resolve_database_url(self.config, env=self.env, database_url=database_url)
        if not database_url:
            _warn_dropped(self.config, self.env)
        timeout = _inherited(self.ctx, "connect_timeout", connect_timeout)
        return Connection(
            url,
            connect_timeout=connect_timeout_setting(self.config, self.env) if timeout is None else timeout,
            lock_wait=lock_wait,
            on_wait=_on_wait,
        )

    def out_of_order(self, allow_flag: bool) -> str:
        from safemig.migrations.operations import out_of_order_policy

        return out_of_order_policy(self.config, self.env, allow_flag=allow_flag)


def _invocation(ctx: typer.Context, config: Path | None, source: Path | None, env: str | None) -> _Invocation:
    from safemig.migrations.operations import Source

    cfg = load(_inherited(ctx, "config", config), _inherited(ctx, "source", source))
    return _Invocation(ctx, cfg, _inherited(ctx, "env", env), Source.of(cfg))


def _protect(
    inv: _Invocation,
    action: str,
    *,
    yes: bool,
    outside_window: bool,
    reason: str | None,
    dry_run: bool = False,
    reason_is_note: bool = False,
) -> bool:
    """On a protected ``--env``: the window and the confirmation (:mod:`safemig.protect`); True if protected.

    A dry run changes nothing and is never held up; ``--database-url`` names no env and is not protected.
    """
    from safemig import output, protect

    # mark-applied's --reason is its ledger note; it doubles as the window override's reason
    override = protect.Override(outside_window, reason if outside_window or not reason_is_note else None)
    override.check()
    if dry_run or not inv.env:
        return False
    return protect.guard_env(inv.config, inv.env, action, yes=yes, override=override, warn=output.warn)


def _backup_before_revert(inv: _Invocation, database_url: str | None) -> None:
    """A verified backup of the protected env before a revert changes it (as deploy's gate 3 takes one)."""
    from safemig import output
    from safemig.backup import run_backup
    from safemig.config import resolve_database_url
    from safemig.errors import SafemigError

    assert inv.env is not None
    url = resolve_database_url(inv.config, env=inv.env, database_url=_inherited(inv.ctx, "database_url", database_url))
    try:
        result = run_backup(inv.config, inv.env, database_url=url, label=f"pre-revert {inv.env}")
    except SafemigError as exc:
        raise type(exc)(
            f"backup before the revert failed: {exc.message}; nothing was reverted",
            (exc.hint + "; " if exc.hint else "") + "or pass --no-backup to revert without one",
        ) from None
    output.echo(f"backup before the revert: {result.uri} (sha256 {result.sha256[:12]}…, verified)")


def _warn_dropped(config: Config, env: str | None) -> None:
    """Warn about URL parameters neither sqlx nor libpq knows (resolve_database_url dropped them)."""
    import os

    try:
        template = config.env(env).database_url if env else None
        raw = template.resolve() if template else os.environ.get(config.sqlx.database_url_var)
    except Exception:  # resolve_database_url has already reported a real problem
        return
    _warn_unknown_parameters(raw or "")


def _warn_unknown_parameters(url: str) -> None:
    from safemig import output
    from safemig.pgurl import translate

    for name in translate(url).dropped:
        output.warn(f"database URL parameter {name!r} is unknown to sqlx and libpq; ignored (sqlx ignores it too)")


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


def _on_wait() -> None:
    from safemig import output

    output.echo(
        "waiting for the migration lock: another migrator (safemig or an application's sqlx::migrate!()) "
        "is running on this database ...",
        err=True,
    )


def _warn(text: str) -> None:
    from safemig import output

    output.warn(text)


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
                took, status = duration(result.duration_s), f"{result.status}{rows}"
                output.echo(f"  {result.index:>3}  line {result.line:<4} {took:>8}  {status}  {result.first_line[:90]}")

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
    ctx: typer.Context,
    target_version: TargetOption = None,
    dry_run: DryRunOption = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
    allow_out_of_order: Annotated[
        bool,
        typer.Option(
            "--allow-out-of-order",
            help="Apply pending migrations older than the newest applied one (default: the out_of_order setting).",
        ),
    ] = False,
    ignore_missing: IgnoreMissingOption = False,
    lock_timeout: LockTimeoutOption = None,
    statement_timeout: StatementTimeoutOption = None,
    lock_retries: LockRetriesOption = None,
    lock_wait: LockWaitOption = None,
    connect_timeout: ConnectTimeoutOption = None,
    yes: YesOption = False,
    outside_window: OutsideWindowOption = False,
    reason: WindowReasonOption = None,
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

    inv = _invocation(ctx, config, source, env)

    def run(dry: bool) -> RunReport:
        return operations.run(
            inv.connection(database_url, connect_timeout, lock_wait),
            inv.source,
            target_version=target_version,
            out_of_order=inv.out_of_order(allow_out_of_order),
            ignore_missing=ignore_missing,
            dry_run=dry,
            settings=_settings(inv.config, inv.env, lock_timeout, statement_timeout, lock_retries),
            observer=_observer(verbose, "Applying", "Applied"),
            on_warning=_warn,
        )

    action = "apply pending migrations to"
    if not dry_run and _askable_protected(inv, yes):
        # Nothing pending changes nothing: no prompt, no window. The preview takes no lock and
        # writes nothing; the real run below plans again under the migration lock.
        preview = run(True)
        if not preview.plan:
            _nothing_to_apply(preview)
            return
        versions = [m.version for m in preview.plan]
        action = f"apply {len(versions)} pending migration{'' if len(versions) == 1 else 's'} ({_span(versions)}) to"
    _protect(inv, action, yes=yes, outside_window=outside_window, reason=reason, dry_run=dry_run)
    report = run(dry_run)
    if dry_run:
        for migration in report.plan:
            statements = parse(migration.sql, display_path(migration.path), no_transaction=migration.no_transaction)
            mode = "no transaction, statement by statement" if migration.no_transaction else "in one transaction"
            count = f"{len(statements)} statement{'' if len(statements) == 1 else 's'}"
            output.echo(f"-- Would apply {display_path(migration.path)} ({count}, {mode})")
            for statement in statements:
                output.echo(f"-- line {statement.line}\n{statement.text};")
            output.echo(f"-- then record version {migration.version} in {report.ledger}\n")
        output.echo(f"Dry run: {len(report.plan)} migration(s) would be applied; nothing was changed.")
        return
    if not report.applied:
        _nothing_to_apply(report)
        return
    output.echo(f"{len(report.applied)} migration(s) applied; the database is at version {report.newest_applied}.")


def _askable_protected(inv: _Invocation, yes: bool) -> bool:
    """A protected ``--env`` that the guard would not refuse outright (``--yes``, or a terminal to ask on).

    Without either, :func:`_protect` refuses before anything is contacted, so there is nothing to preview.
    """
    from safemig import protect

    if not inv.env or not protect.is_protected(inv.config.env(inv.env)):
        return False
    return yes or protect.terminal_ask() is not None


def _span(versions: list[int]) -> str:
    """``version 4`` or ``versions 4-7`` for the confirmation's wording."""
    return f"version {versions[0]}" if len(versions) == 1 else f"versions {versions[0]}-{versions[-1]}"


def _nothing_to_apply(report: RunReport) -> None:
    from safemig import output

    at = (
        f"version {report.newest_applied}"
        if report.newest_applied is not None
        else "no version (nothing applied, no migrations pending)"
    )
    output.echo(f"Nothing to apply: the database is at {at}.")


def info_command(
    ctx: typer.Context,
    json_out: JsonOption = False,
    ignore_missing: Annotated[
        bool,
        typer.Option("--ignore-missing", help="Accepted for sqlx's scripts; missing versions are still listed."),
    ] = False,
    connect_timeout: ConnectTimeoutOption = None,
    config: ConfigOption = None,
    env: EnvOption = None,
    database_url: DatabaseUrlOption = None,
    source: SourceOption = None,
) -> None:
    """List every migration with its state: applied, pending, modified, missing, failed, out_of_order."""
    from safemig import output
    from safemig.migrations import operations
    from safemig.migrations.files import display_path

    inv = _invocation(ctx, config, source, env)
    report = operations.info(inv.connection(database_url, connect_timeout), inv.source, on_warning=_warn)
    found = report.states
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
                    "notes": [
                        {
                            "noted_on": n.noted_on.isoformat(),
                            "noted_by": n.noted_by,
                            "action": n.action,
                            "reason": n.reason,
                        }
                        for n in report.notes.get(st.version, [])
                    ],
                }
                for st in found
            ]
        )
        return
    if not found:
        output.echo(f"No migrations in {display_path(inv.config.migrations_dir)} and none applied.")
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
        for note in report.notes.get(st.version, []):
            output.echo(
                f"    marked applied by hand ({note.action}) on {note.noted_on:%Y-%m-%d %H:%M} by {note.noted_by}: "
                f"{note.reason}"
            )


def revert_command(
    ctx: typer.Context,
    target_version: TargetOption = None,
    dry_run: DryRunOption = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
    ignore_missing: IgnoreMissingOption = False,
    lock_timeout: LockTimeoutOption = None,
    statement_timeout: StatementTimeoutOption = None,
    lock_retries: LockRetriesOption = None,
    lock_wait: LockWaitOption = None,
    connect_timeout: ConnectTimeoutOption = None,
    yes: YesOption = False,
    outside_window: OutsideWindowOption = False,
    reason: WindowReasonOption = None,
    no_backup: Annotated[
        bool,
        typer.Option("--no-backup", help="On a protected env: revert without taking a verified backup first."),
    ] = False,
    config: ConfigOption = None,
    env: EnvOption = None,
    database_url: DatabaseUrlOption = None,
    source: SourceOption = None,
) -> None:
    """Revert the newest applied migration (or all above --target-version) with its .down.sql or rollbacks/ script."""
    from safemig import output
    from safemig.migrations import operations
    from safemig.migrations.files import display_path

    inv = _invocation(ctx, config, source, env)
    protected = _protect(
        inv, "revert migrations on", yes=yes, outside_window=outside_window, reason=reason, dry_run=dry_run
    )
    if protected and not no_backup:
        _backup_before_revert(inv, database_url)
    report = operations.revert(
        inv.connection(database_url, connect_timeout, lock_wait),
        inv.source,
        target_version=target_version,
        ignore_missing=ignore_missing,
        dry_run=dry_run,
        settings=_settings(inv.config, inv.env, lock_timeout, statement_timeout, lock_retries),
        observer=_observer(verbose, "Reverting", "Reverted"),
        on_warning=_warn,
    )
    for st in report.skipped:
        output.echo(f"Skipped {st.version}/{st.description}: no rollback script, it stays applied")
    if not report.steps:
        output.echo("No migrations available to revert")
        return
    if dry_run:
        for step in report.steps:
            m = step.migration
            output.echo(f"-- Would revert {m.version}/{m.description} with {display_path(step.script)}")
            output.echo(step.script.read_text(encoding="utf-8").rstrip() + "\n")
        output.echo(f"Dry run: {len(report.steps)} migration(s) would be reverted; nothing was changed.")


def add_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the migration does, e.g. add_user_preferences_table.")],
    reversible: Annotated[
        bool, typer.Option("--reversible", "-r", help="Create an .up.sql/.down.sql pair (sqlx's -r).")
    ] = False,
    simple: Annotated[bool, typer.Option("--simple", help="Create a single .sql file (sqlx's --simple).")] = False,
    timestamp: Annotated[
        bool, typer.Option("--timestamp", "-t", help="Version it with a UTC timestamp, YYYYMMDDHHMMSS.")
    ] = False,
    sequential: Annotated[
        bool, typer.Option("--sequential", "-s", help="Version it with the next number after the newest.")
    ] = False,
    config: ConfigOption = None,
    source: SourceOption = None,
) -> None:
    """Create the next migration (sqlx's rules for its kind and version; the guide's template header)."""
    from safemig import output
    from safemig.errors import UsageError
    from safemig.migrations import operations
    from safemig.migrations.files import display_path

    if reversible and simple:
        raise UsageError("--reversible and --simple exclude each other", hint="give one of them")
    if timestamp and sequential:
        raise UsageError("--timestamp and --sequential exclude each other", hint="give one of them")
    inv = _invocation(ctx, config, source, None)
    paths = operations.add(
        inv.source,
        name,
        reversible=True if reversible else False if simple else None,
        versioning="timestamp" if timestamp else "sequential" if sequential else None,
    )
    for path in paths:
        output.echo(f"Created {display_path(path)}")


def mark_applied_command(
    ctx: typer.Context,
    version: Annotated[int, typer.Argument(help="Version to record as applied without running it.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why, e.g. an incident id; kept in _safemig_notes, shown by info.")
    ],
    lock_wait: LockWaitOption = None,
    connect_timeout: ConnectTimeoutOption = None,
    yes: YesOption = False,
    outside_window: Annotated[
        bool,
        typer.Option("--outside-window", help="On a protected env: record although its maintenance window is closed."),
    ] = False,
    config: ConfigOption = None,
    env: EnvOption = None,
    database_url: DatabaseUrlOption = None,
    source: SourceOption = None,
) -> None:
    """Record a migration fixed by hand as applied, with its file's real checksum (the guide's troubleshooting step)."""
    from safemig import output
    from safemig.migrations import operations

    inv = _invocation(ctx, config, source, env)
    _protect(
        inv, "mark a version as applied on", yes=yes, outside_window=outside_window, reason=reason, reason_is_note=True
    )
    result = operations.mark_applied(
        inv.connection(database_url, connect_timeout, lock_wait), inv.source, version, reason, on_warning=_warn
    )
    m = result.migration
    what = {
        "inserted": f"inserted its {result.ledger} row",
        "repaired": f"turned its failed {result.ledger} row into a successful one",
        "unchanged": "it was already recorded as applied with this checksum; nothing changed",
    }[result.action]
    output.echo(f"Marked version {m.version} ({m.description}) as applied without running it: {what}.")
    output.echo(f"  checksum {m.checksum.hex()}")
    output.echo(f"  reason   {reason} (kept in _safemig_notes; `safemig migrate info` shows it)")
