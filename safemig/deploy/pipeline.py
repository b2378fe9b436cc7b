"""``safemig deploy``: the guide's pre-deployment checklist as gates over one frozen context.

Preflight (gate 1) builds a :class:`~safemig.deploy.context.DeployContext` — settings,
URLs, connections (prod's locked with sqlx's migration lock), migrations, rollbacks, the
pending set, the window — and every later gate is a function of that context and of
the outputs of the gates before it: lint, backup (gate 3, a verified dump in S3), the
rehearsal (gate 4, :mod:`safemig.deploy.rehearsal`, on a restore of that very dump by
default), production apply (gate 5), report (the record). The first gate that does not
pass ends the deploy; production's schema is touched only by gate 5, which runs only
after a verified backup and a passed rehearsal that fits in the window.

One prod connection carries the whole deploy: it takes the migration advisory lock in
preflight (so no other safemig, ``sqlx migrate run`` or application start-up migrates
prod meanwhile; session locks are re-entrant only on their own session) and is the
connection the production :class:`~safemig.migrations.engine.Migrator` applies on.

:func:`deploy` never prints (a :class:`~safemig.deploy.gates.Reporter` is told what
happens) and returns a :class:`DeployOutcome` whose record has been written, also when a
gate failed — except for a dry run, which writes none; the caller decides how to exit.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safemig.config import Config, resolve_database_url
from safemig.deploy import settings as deploy_config
from safemig.deploy.context import DeployContext, DeployOptions, rel
from safemig.deploy.gates import GateContext, GateRunner, Reporter
from safemig.deploy.plan import DeployPlan, PlanItem, backup_destination, build_plan
from safemig.deploy.record import DeployRecord, applied_dict, git_state, write_record
from safemig.deploy.rehearsal import RehearsalResult
from safemig.errors import CheckFailed, ConfigError, DatabaseError, SafemigError
from safemig.migrations.files import Migration, discover, find_rollback
from safemig.redact import mask_url
from safemig.window import evaluate, format_delta

if TYPE_CHECKING:  # pragma: no cover
    from safemig.backup import BackupResult

__all__ = ["GATES", "DeployOptions", "DeployOutcome", "DeployPlan", "deploy"]

GATES = (
    ("preflight", "Preflight"),
    ("lint", "Lint"),
    ("backup", "Backup"),
    ("staging", "Staging rehearsal"),
    ("production", "Production apply"),
    ("report", "Report"),
)
TITLES = dict(GATES)


@dataclass
class DeployOutcome:
    """The result of :func:`deploy`: the record (written unless a dry run), its paths, and the error if any."""

    record: DeployRecord
    record_path: Path | None = None
    record_uri: str | None = None
    plan: DeployPlan | None = None
    error: SafemigError | None = None
    upload_warning: str | None = None

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error else 0


def _prefixed(exc: SafemigError, prefix: str) -> SafemigError:
    """The same error (same class, same exit code) with ``prefix`` saying where it happened."""
    return type(exc)(f"{prefix}: {exc.message}", exc.hint)


# -- gate 1: preflight builds the context ---------------------------------------------------


def preflight(
    config: Config, env: str, options: DeployOptions, stack: ExitStack, record: DeployRecord, gate: GateContext
) -> DeployContext:
    """Read and check everything, open and lock the connections; the frozen context of the deploy."""
    from safemig import db
    from safemig.deploy.migration_lock import take_deploy_lock

    settings = deploy_config.deploy_settings(config, env)
    record.staging_env = settings.staging
    prod_url = resolve_database_url(config, env=env)
    record.database = mask_url(prod_url)
    staging_url: str | None = None
    if settings.staging:
        staging_url = resolve_database_url(config, env=settings.staging)
        record.staging_database = mask_url(staging_url)
        if staging_url == prod_url:
            raise ConfigError(
                f"envs.{env} and its staging env {settings.staging} point at the same database {mask_url(prod_url)}",
                hint="the rehearsal must run on a separate database",
            )
    migrations = discover(config.migrations_dir, ignored_chars=config.sqlx.ignored_chars)
    rollbacks = {m.version: find_rollback(m, config.rollbacks_dir) for m in migrations}
    gate.note(f"config {config.source}: {len(migrations)} migrations in {rel(config.migrations_dir, config.root)}")
    destination = backup_destination(config, env)  # a bad [backup] fails here, not after the rehearsal

    def open_connection(name: str, url: str, application_name: str):
        try:
            db.wait_until_ready(url, settings.ready_timeout.seconds)
            return stack.enter_context(_closing(db.connect(url, autocommit=True, application_name=application_name)))
        except SafemigError as exc:
            raise _prefixed(exc, name) from None

    prod = open_connection(env, prod_url, "safemig deploy")
    staging = None
    if staging_url:
        staging = open_connection(f"staging env {settings.staging}", staging_url, "safemig deploy (staging)")
        if _same_database(prod, staging):
            raise ConfigError(
                f"envs.{env} and its staging env {settings.staging} reach the same database "
                f"({mask_url(prod_url)} and {mask_url(staging_url)})",
                hint="the rehearsal rolls migrations back and forth: it must run on a separate database",
            )
    gate.note(
        f"{env} reachable: {mask_url(prod_url)}"
        + (f"; {settings.staging} reachable: {mask_url(staging_url)}" if staging_url else "")
    )
    if staging is not None and settings.rehearsal == "restore":
        from safemig.deploy.scratch import can_create_databases

        role, allowed = can_create_databases(staging)
        if not allowed:
            raise ConfigError(
                f"the rehearsal restores the backup into a new database on {settings.staging}'s server, "
                f"but role {role} may not create databases",
                hint=(
                    f"ALTER ROLE {role} CREATEDB, or rehearse on the staging database itself: rehearsal = "
                    f'"staging" under [envs.{env}]'
                ),
            )

    if not options.dry_run:
        take_deploy_lock(stack, prod, env, options.lock_wait_s, gate)

    pending, prod_applied = _check_ledgers(migrations, prod, env, staging, settings, options, gate, config.sqlx.table)
    record.pending = [PlanItem(m, rollbacks[m.version]).as_dict(config.root) for m in pending]
    window = None
    if pending:
        window = evaluate(settings.maintenance_window, options.now)
        record.window = {"status": window.describe(), "open": window.open, "override_reason": None}
        if not window.open:
            if options.outside_window:
                record.window["override_reason"] = options.reason
                gate.warn(f"{window.describe()}; deploying anyway (--outside-window): {options.reason}")
            elif options.dry_run:
                gate.warn(f"{window.describe()} (a real deploy would stop here)")
            else:
                raise CheckFailed(
                    window.describe(),
                    hint=(
                        "deploy during the window, or pass --outside-window --reason TEXT (the reason goes "
                        "into the deploy record)"
                    ),
                )
        else:
            gate.note(window.describe())
        if not settings.staging:
            where = ', no rehearsal (staging = "none")'
        elif settings.rehearsal == "restore":
            where = f", rehearsal on a restore of the backup on {settings.staging}'s server"
        else:
            where = f", rehearsal on {settings.staging}"
        gate.summary(f"{len(pending)} pending: {', '.join(str(m.version) for m in pending)}{where}")
    else:
        gate.summary(f"nothing to deploy: {env} has all {len(migrations)} migrations applied")
    return DeployContext(
        config=config,
        env=env,
        options=options,
        settings=settings,
        started_at=record.started_at,
        prod_url=prod_url,
        staging_url=staging_url,
        prod=prod,
        staging=staging,
        migrations=tuple(migrations),
        rollbacks=rollbacks,
        pending=tuple(pending),
        prod_applied=frozenset(prod_applied),
        window=window,
        backup_destination=destination,
    )


def _check_ledgers(
    migrations, prod, env, staging, settings, options, gate, table=None
) -> tuple[list[Migration], set[int]]:
    """``table``: sqlx.toml's ``table-name`` (``config.sqlx.table``); None is sqlx's default."""
    from safemig.migrations import ledger

    prod_rows = _read_rows(prod, env, table)
    try:
        pending = ledger.check(migrations, prod_rows, allow_out_of_order=options.allow_out_of_order)
    except SafemigError as exc:
        raise _prefixed(exc, env) from None
    prod_applied = {v for v, row in prod_rows.items() if row.success}
    checked_staging = staging is not None and settings.rehearsal == "staging"
    if checked_staging:
        staging_rows = _read_rows(staging, settings.staging, table)
        # Staging may be ahead of or behind prod (the rehearsal realigns it); anything else is refused.
        found = ledger.problems(ledger.states(migrations, staging_rows), allow_out_of_order=True)
        if found:
            raise _prefixed(found[0], f"staging env {settings.staging}")
    gate.note(
        f"ledger of {env}" + (f" and {settings.staging}" if checked_staging else "") + " consistent with the files"
    )
    return pending, prod_applied


# -- gate 2 ----------------------------------------------------------------------------------


def lint_gate(ctx: DeployContext, gate: GateContext) -> int:
    """Lint the pending files and their rollbacks; an error refuses. Returns the number of warnings."""
    from safemig.lint.engine import lint_paths

    root = ctx.config.root
    paths = [m.path for m in ctx.pending] + [p for m in ctx.pending if (p := ctx.rollbacks[m.version])]
    # env: this deploy sets its lock_timeout; server_major: judge syntax by what prod runs
    # (unless [lint] pg_version says otherwise)
    report = lint_paths(paths, ctx.config, env=ctx.env, server_major=ctx.prod.info.server_version // 10000)
    for f in report.findings:
        line = f"{rel(Path(f.path), root)}:{f.line}:{f.column}: {f.severity} [{f.rule}] {f.message}"
        (gate.note if f.severity == "error" else gate.warn)(f"{line}\n    {f.hint_line}")  # as `safemig lint`
    for note in report.notes:
        gate.note(note)
    errors = [f for f in report.findings if f.severity == "error"]
    if report.has_errors:
        first = errors[0]
        raise CheckFailed(
            f"lint found {len(errors)} error(s) in the pending migrations, first "
            f"{rel(Path(first.path), root)}:{first.line}: "
            f"[{first.rule}] {first.message}",
            hint=first.hint or "fix the findings listed above (`safemig lint` shows them all)",
        )
    gate.summary(
        f"{len(paths)} file(s) linted, {len(report.findings)} warning(s)"
        if report.findings
        else f"{len(paths)} file(s) clean"
    )
    return len(report.findings)


# -- gate 3 ----------------------------------------------------------------------------------


def backup_gate(ctx: DeployContext, record_id: str, gate: GateContext, reporter: Reporter) -> BackupResult:
    """Dump prod into S3 and verify the stored object."""
    from safemig.backup import run_backup

    result = run_backup(
        ctx.config,
        ctx.env,
        database_url=ctx.prod_url,
        label=f"pre-deploy {record_id}",
        progress=reporter.backup_progress(),
    )
    gate.summary(f"{result.uri} ({_size(result.size)}, sha256 {result.sha256[:12]}…, verified)")
    return result


# -- gate 4 ----------------------------------------------------------------------------------


def rehearsal_gate(
    ctx: DeployContext,
    stack: ExitStack,
    backup_uri: str,
    gate: GateContext,
    reporter: Reporter,
    result: RehearsalResult,
) -> RehearsalResult:
    """Rehearse where the settings say, report its locks at prod's sizes, and check it fits in the window."""
    from safemig.deploy.rehearsal import rehearse_on_restore, rehearse_on_staging

    if ctx.settings.rehearsal == "restore":
        rehearse_on_restore(ctx, backup_uri, gate, reporter, result)
    else:
        rehearse_on_staging(ctx, stack, backup_uri, gate, reporter, result)
    _add_prod_sizes(ctx.prod, result.lock_rollup)
    measured = "measured on the restore" if result.mode == "restore" else "on staging"
    shown = [row for row in result.lock_rollup if row.get("exists_on_prod")]
    for row in shown:
        size = (
            f", ~{row['prod_rows_estimate']:,} rows on {ctx.env}" if row.get("prod_rows_estimate") is not None else ""
        )
        text = f"{row['mode']} on {row['relation']} ({row['migration']}, held {row['held_ms']:.0f} ms {measured}{size})"
        if row["mode"] == "ACCESS EXCLUSIVE" and row.get("large"):
            gate.warn(f"{text}: a large table; its reads and writes wait until the migration commits")
        else:
            gate.note(f"lock: {text}")
    created = len(result.lock_rollup) - len(shown)
    if created:
        gate.note(
            f"locks on {created} relation(s) that do not exist on {ctx.env} yet (created by this deploy) are "
            "in the record, not shown"
        )
    _check_fits_window(ctx, result)
    gate.summary(result.summary)
    return result


def _check_fits_window(ctx: DeployContext, result: RehearsalResult) -> None:
    """Stop before prod when the rehearsal's apply time times ``window_margin`` overruns the window."""
    deadline = ctx.deadline
    if deadline is None:
        return
    now = ctx.options.now or datetime.now(UTC)
    left = (deadline - now).total_seconds()
    needed = result.apply_s * ctx.settings.window_margin
    if needed > left:
        raise CheckFailed(
            f"the rehearsal applied the pending migrations in {result.apply_s:.1f}s; with window_margin "
            f"{ctx.settings.window_margin:g} that is {needed:.1f}s, but the maintenance window closes in "
            f"{max(left, 0):.1f}s ({format_delta(deadline - now)}): {ctx.env} was not touched",
            hint="deploy at the start of the next window, or make the migrations faster (batches, CONCURRENTLY)",
        )


def _add_prod_sizes(prod, rollup: list[dict[str, Any]]) -> None:
    """Mark each relation the rehearsal locked with whether prod has it, and prod's size estimates.

    A catalog read that takes no lock. A relation prod does not have yet is created by
    this deploy, so locking it blocks nobody; a name that could not be resolved (dropped
    in the same transaction) is kept as if prod had it.
    """
    from safemig.deploy.locks import LARGE_TABLE_BYTES, LARGE_TABLE_ROWS

    names = sorted({row["relation"] for row in rollup if "." in row["relation"]})
    sizes: dict[str, tuple[int, int]] = {}
    if names:
        cur = prod.execute(
            "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint, c.relpages::bigint * "
            "current_setting('block_size')::bigint "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname || '.' || "
            "c.relname = ANY(%s)",
            (names,),
        )
        sizes = {name: (max(rows, 0), size) for name, rows, size in cur}
    for row in rollup:
        row["exists_on_prod"] = row["relation"] in sizes or "." not in row["relation"]
        if row["relation"] in sizes:
            rows, size = sizes[row["relation"]]
            row["prod_rows_estimate"], row["prod_bytes_estimate"] = rows, size
            row["large"] = row["large"] or rows >= LARGE_TABLE_ROWS or size >= LARGE_TABLE_BYTES


# -- gate 5 ----------------------------------------------------------------------------------


def production_gate(
    ctx: DeployContext,
    backup_uri: str | None,
    gate: GateContext,
    reporter: Reporter,
    applied: list[dict[str, Any]],
    attempts: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Apply the pending migrations to prod in order on the locked connection.

    ``applied`` grows as migrations land and ``attempts`` with every lock_timeout attempt
    (start, duration, outcome, blockers: :mod:`safemig.deploy.observers`); the retries
    never run past the window's end.
    """
    from safemig.deploy.observers import monotonic_deadline, production_migrator

    end = ctx.deadline
    deadline = monotonic_deadline(end, now=ctx.options.now, started_at=ctx.started_at) if end else None
    with production_migrator(
        ctx.prod,
        ctx.prod_url,
        ctx.migrations,
        ctx.config.rollbacks_dir,
        ctx.settings,
        deadline=deadline,
        reporter=reporter,
        env=ctx.env,
        gate=gate,
        attempts=attempts,
    ) as (migrator, _):
        _apply_all(ctx, migrator, backup_uri, gate, applied)
    return applied


def _apply_all(ctx: DeployContext, migrator, backup_uri: str | None, gate: GateContext, applied: list) -> None:
    done: list[int] = []
    for migration in ctx.pending:
        try:
            result = migrator.apply(migration)
        except SafemigError as exc:
            before = (
                f"versions {', '.join(map(str, done))} of this deploy are applied; "
                if done
                else "no migration of this deploy was applied; "
            )
            restore = _restore_hint(ctx, backup_uri)
            raise type(exc)(
                f"{ctx.env}: {exc.message}",
                (exc.hint + "; " if exc.hint else "")
                + before
                + (f"backup taken before the deploy: {backup_uri} (restore: {restore})" if backup_uri else ""),
            ) from None
        done.append(migration.version)
        applied.append(applied_dict(result, migration))
    total_ms = sum(a["duration_ms"] for a in applied)
    gate.summary(f"applied {', '.join(map(str, done))} to {ctx.env} in {total_ms:.0f} ms")


def _restore_hint(ctx: DeployContext, backup_uri: str | None) -> str:
    if not backup_uri:
        return ""
    try:
        from safemig.backup import restore_command

        return restore_command(ctx.config, ctx.env, backup_uri)
    except SafemigError:
        return f"safemig restore --env {ctx.env} --from {backup_uri}"


# -- the run ---------------------------------------------------------------------------------


class _Run:
    """One deploy: runs the gates in order and keeps the record of what they returned."""

    def __init__(self, config: Config, env: str, options: DeployOptions, reporter: Reporter) -> None:
        self.config = config
        self.env = env
        self.options = options
        self.reporter = reporter
        self.runner = GateRunner(reporter)
        self.record = DeployRecord(env=env, started_at=datetime.now(UTC), dry_run=options.dry_run)
        self.backup_uri: str | None = None

    def run(self) -> DeployOutcome:
        outcome = DeployOutcome(record=self.record)
        self.record.git = git_state(self.config.root)
        rehearsal = RehearsalResult()
        try:
            with ExitStack() as stack:
                try:
                    self._gates(stack, outcome, rehearsal)
                finally:
                    if rehearsal.ran_on or rehearsal.applied:
                        self.record.rehearsal = rehearsal.as_dict()
                        self.record.locks = rehearsal.lock_rollup
        except SafemigError as exc:
            outcome.error = exc
            self._failed(exc.message, exc.hint)
        except KeyboardInterrupt:
            self._failed("interrupted", None)
            self._finish(outcome, failed=True)
            raise
        except BaseException as exc:
            self._failed(f"internal error: {type(exc).__name__}", None)
            self._finish(outcome, failed=True)
            raise
        self._finish(outcome, failed=outcome.error is not None)
        return outcome

    def _gates(self, stack: ExitStack, outcome: DeployOutcome, rehearsal: RehearsalResult) -> None:
        runner, record = self.runner, self.record
        with runner.gate("preflight", TITLES["preflight"]) as gate:
            ctx = preflight(self.config, self.env, self.options, stack, record, gate)
        if not ctx.pending:
            record.status = "nothing to deploy"
            self._skip_rest("preflight", "nothing to deploy")
            return
        with runner.gate("lint", TITLES["lint"]) as gate:
            lint_gate(ctx, gate)
        if self.options.dry_run:
            outcome.plan = build_plan(ctx)
            record.status = "dry run"
            self._skip_rest("lint", "dry run")
            return
        with runner.gate("backup", TITLES["backup"]) as gate:
            backup = backup_gate(ctx, record.id, gate, self.reporter)
            self.backup_uri = backup.uri
            record.backup = {
                "uri": backup.uri,
                "size": backup.size,
                "sha256": backup.sha256,
                "duration_s": round(backup.duration_s, 3),
                "newest_version": backup.newest_version,
                "verified": True,
            }
        if ctx.staging is None:
            runner.skip("staging", TITLES["staging"], f'envs.{ctx.env}.staging = "none": no rehearsal')
            self.reporter.warning(f'no staging rehearsal: envs.{ctx.env}.staging = "none"')
        else:
            with runner.gate("staging", TITLES["staging"]) as gate:
                rehearsal_gate(ctx, stack, backup.uri, gate, self.reporter, rehearsal)
        with runner.gate("production", TITLES["production"]) as gate:
            production_gate(ctx, backup.uri, gate, self.reporter, record.applied, record.attempts)
        record.status = "deployed"

    def _failed(self, message: str, hint: str | None) -> None:
        failed = self.runner.failed
        self.record.status = "failed"
        self.record.failed_gate = failed.name if failed else None
        self.record.error = message
        self.record.hint = hint
        if failed is not None:
            self._skip_rest(failed.name, f"not run: {failed.name} failed", announce=True)

    def _skip_rest(self, after: str, reason: str, *, announce: bool = False) -> None:
        names = [name for name, _ in GATES]
        for name in names[names.index(after) + 1 :]:
            if name != "report" and name not in {r.name for r in self.runner.results}:
                self.runner.skip(name, TITLES[name], reason, announce=announce)

    def _finish(self, outcome: DeployOutcome, *, failed: bool) -> None:
        """Gate 6: write the record locally and upload it next to the backup. A dry run writes none.

        After a failure this is no gate that could say "passed": it writes the record and
        says where, under the failed deploy's name.
        """
        if self.options.dry_run:
            return
        self.record.finished_at = datetime.now(UTC)
        if failed:
            self.record.gates = [r.as_dict() for r in self.runner.results]
            warnings: list[str] = []
            self._write(outcome, warnings.append)
            where = rel(outcome.record_path, self.config.root) if outcome.record_path else "not written"
            text = f"deploy FAILED at {self.record.failed_gate or 'start'}; record {where}" + (
                f", uploaded to {outcome.record_uri}" if outcome.record_uri else ""
            )
            for warning in warnings:
                self.reporter.warning(warning)
            self.runner.skip("report", TITLES["report"], text, announce=True)
            return
        with self.runner.gate("report", TITLES["report"]) as gate:
            self.record.gates = [r.as_dict() for r in self.runner.results if r.name != "report"]
            self._write(outcome, gate.warn)
            if outcome.record_path is not None:
                where = rel(outcome.record_path, self.config.root)
                gate.summary(f"record {where}" + (f", uploaded to {outcome.record_uri}" if outcome.record_uri else ""))

    def _write(self, outcome: DeployOutcome, warn) -> None:
        if self.backup_uri:
            try:
                from safemig.backup import put_next_to

                name = f"deploy-{self.record.id}.json"
                outcome.record_uri = put_next_to(
                    self.backup_uri, name, self.record.to_json().encode(), config=self.config
                )
                self.record.record_uri = outcome.record_uri
            except SafemigError as exc:
                outcome.upload_warning = f"deploy record not uploaded to S3: {exc.message}"
                warn(outcome.upload_warning)
        try:
            outcome.record_path = write_record(self.record, self.config.root)
        except OSError as exc:  # the deploy itself is done; say so rather than hide its outcome
            warn(f"deploy record not written to {self.config.root / '.safemig' / 'deploys'}: {exc.strerror or exc}")


class _closing:
    """Close a connection when the deploy ends, whatever happens."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc):
        try:
            self.conn.close()
        except Exception:  # pragma: no cover - already gone
            pass
        return False


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _same_database(a, b) -> bool:
    """True when two connections reach one database (same server start time, port and name).

    URLs can differ and still name one database (host aliases, pgbouncer); these facts are
    readable by any role, unlike the cluster's system identifier.
    """
    query = "SELECT pg_postmaster_start_time(), inet_server_port(), current_database()"
    return a.execute(query).fetchone() == b.execute(query).fetchone()


def _read_rows(conn, env: str, table=None):
    import psycopg

    from safemig.db import error_text
    from safemig.migrations import ledger

    try:
        return ledger.applied_rows(conn, table)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"{env}: cannot read _sqlx_migrations: {error_text(exc)}",
            hint="check the role's privileges on the ledger table",
        ) from None


def deploy(
    config: Config, env: str, options: DeployOptions | None = None, reporter: Reporter | None = None
) -> DeployOutcome:
    """Run the pipeline for ``env``; the outcome's record is written whether it passed or not (not for a dry run)."""
    return _Run(config, env, options or DeployOptions(), reporter or Reporter()).run()
