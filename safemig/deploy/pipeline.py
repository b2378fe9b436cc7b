"""``safemig deploy``: the guide's pre-deployment checklist as one pipeline of gates.

Preflight, lint, backup, staging rehearsal, production apply, report: in that order,
each timed and reported, and the first gate that does not pass ends the deploy. Nothing
after a failed gate runs, and production's schema is touched only by the production gate,
which runs only after a verified backup and a passed rehearsal.

One prod connection carries the whole deploy: it takes sqlx's migration advisory lock in
preflight (so no other safemig, ``sqlx migrate run`` or application start-up migrates
prod meanwhile; session locks are re-entrant only on their own session) and is the
connection the production :class:`~safemig.migrations.engine.Migrator` applies on. The
staging database is locked the same way while it is rehearsed on.

:func:`deploy` never prints (a :class:`~safemig.deploy.gates.Reporter` is told what
happens) and always returns a :class:`DeployOutcome` whose record has been written, also
when a gate failed; the caller decides how to exit (``outcome.error.exit_code``).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safemig.config import Config, resolve_database_url
from safemig.deploy import settings as deploy_config
from safemig.deploy.gates import GateContext, GateRunner, Reporter
from safemig.deploy.record import DeployRecord, git_state, write_record
from safemig.errors import CheckFailed, ConfigError, DatabaseError, SafemigError
from safemig.migrations.files import Migration, discover, find_rollback
from safemig.redact import mask_url
from safemig.window import WindowStatus, evaluate

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from safemig.config import EnvSettings

GATES = (
    ("preflight", "Preflight"),
    ("lint", "Lint"),
    ("backup", "Backup"),
    ("staging", "Staging rehearsal"),
    ("production", "Production apply"),
    ("report", "Report"),
)
TITLES = dict(GATES)


@dataclass(frozen=True)
class DeployOptions:
    """How this run may differ from the plain ``safemig deploy --env NAME``."""

    dry_run: bool = False
    outside_window: bool = False
    reason: str | None = None
    lock_wait_s: float = 0.0  # 0: refuse at once when another migrator holds the lock
    allow_out_of_order: bool = False
    now: datetime | None = None  # the clock the window is judged by (tests)


@dataclass(frozen=True)
class PlanItem:
    """One pending migration as the plan (``--dry-run``) and the runbook show it."""

    migration: Migration
    rollback: Path | None

    def as_dict(self, root: Path) -> dict[str, Any]:
        return {
            "version": self.migration.version,
            "file": _rel(self.migration.path, root),
            "description": self.migration.description,
            "transaction": not self.migration.no_transaction,
            "rollback": _rel(self.rollback, root) if self.rollback else None,
        }


@dataclass
class DeployPlan:
    """What a deploy would do: back up where, apply what in which order, undo it how."""

    env: str
    staging: str | None
    database: str
    backup_destination: str
    items: list[PlanItem] = field(default_factory=list)
    window: str = ""

    def as_dict(self, root: Path) -> dict[str, Any]:
        return {
            "env": self.env,
            "dry_run": True,
            "database": self.database,
            "staging": self.staging,
            "window": self.window,
            "backup_destination": self.backup_destination,
            "pending": [item.as_dict(root) for item in self.items],
        }


@dataclass
class DeployOutcome:
    """The result of :func:`deploy`: the record (already written), its paths, and the error if any."""

    record: DeployRecord
    record_path: Path | None = None
    record_uri: str | None = None
    plan: DeployPlan | None = None
    error: SafemigError | None = None
    upload_warning: str | None = None

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error else 0


def _rel(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _prefixed(exc: SafemigError, prefix: str) -> SafemigError:
    """The same error (same class, same exit code) with ``prefix`` saying where it happened."""
    return type(exc)(f"{prefix}: {exc.message}", exc.hint)


def backup_destination(config: Config, env: str) -> str:
    """``s3://bucket/prefix/env/``: where the backup gate will write (for the plan and runbook)."""
    from safemig.backup.settings import load_settings

    settings = load_settings(config)
    return f"s3://{settings.bucket}/{settings.env_prefix(env)}"


class _Deploy:
    """One run of the pipeline; its attributes are the state the gates hand to each other."""

    def __init__(self, config: Config, env: str, options: DeployOptions, reporter: Reporter) -> None:
        self.config = config
        self.env = env
        self.options = options
        self.reporter = reporter
        self.runner = GateRunner(reporter)
        self.stack = ExitStack()
        self.record = DeployRecord(env=env, started_at=datetime.now(UTC), dry_run=options.dry_run)
        self.settings: EnvSettings | None = None
        self.prod_url = ""
        self.staging_url: str | None = None
        self.prod: psycopg.Connection | None = None
        self.staging: psycopg.Connection | None = None
        self.migrations: list[Migration] = []
        self.rollbacks: dict[int, Path | None] = {}
        self.pending: list[Migration] = []
        self.prod_applied: set[int] = set()
        self.window: WindowStatus | None = None
        self.backup_uri: str | None = None
        self.backup_destination = ""
        self.plan: DeployPlan | None = None

    # -- the pipeline ------------------------------------------------------------------
    def run(self) -> DeployOutcome:
        outcome = DeployOutcome(record=self.record)
        self.record.git = git_state(self.config.root)
        try:
            with self.stack:
                self._preflight()
                if not self.pending:
                    self.record.status = "nothing to deploy"
                    self._skip_rest("preflight", "nothing to deploy")
                else:
                    self._lint()
                    if self.options.dry_run:
                        self.plan = self._plan()
                        self.record.status = "dry run"
                        self._skip_rest("lint", "dry run")
                    else:
                        self._backup()
                        self._rehearse_on_staging()
                        self._apply_to_production()
                        self.record.status = "deployed"
        except SafemigError as exc:
            outcome.error = exc
            self._failed(exc.message, exc.hint)
        except KeyboardInterrupt:
            self._failed("interrupted", None)
            self._finish(outcome)
            raise
        except BaseException as exc:
            self._failed(f"internal error: {type(exc).__name__}", None)
            self._finish(outcome)
            raise
        self._finish(outcome)
        outcome.plan = self.plan
        return outcome

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

    def _finish(self, outcome: DeployOutcome) -> None:
        """Gate 6: write the record locally, upload it next to the backup. A dry run writes none."""
        if self.options.dry_run and outcome.error is None:
            return
        with self.runner.gate("report", TITLES["report"]) as gate:
            self.record.finished_at = datetime.now(UTC)
            self.record.gates = [r.as_dict() for r in self.runner.results if r.name != "report"]
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
                    gate.warn(outcome.upload_warning)
            self.record.gates = [r.as_dict() for r in self.runner.results if r.name != "report"]
            try:
                outcome.record_path = write_record(self.record, self.config.root)
            except OSError as exc:  # the deploy itself is done; say so rather than hide its outcome
                gate.warn(
                    f"deploy record not written to {self.config.root / '.safemig' / 'deploys'}: {exc.strerror or exc}"
                )
                return
            where = _rel(outcome.record_path, self.config.root)
            gate.summary(f"record {where}" + (f", uploaded to {outcome.record_uri}" if outcome.record_uri else ""))

    # -- gate 1 ------------------------------------------------------------------------
    def _preflight(self) -> None:
        with self.runner.gate("preflight", TITLES["preflight"]) as gate:
            settings = self.settings = deploy_config.deploy_settings(self.config, self.env)
            self.record.staging_env = settings.staging
            self.prod_url = resolve_database_url(self.config, env=self.env)
            self.record.database = mask_url(self.prod_url)
            if settings.staging:
                self.staging_url = resolve_database_url(self.config, env=settings.staging)
                self.record.staging_database = mask_url(self.staging_url)
                if self.staging_url == self.prod_url:
                    raise ConfigError(
                        f"envs.{self.env} and its staging env {settings.staging} point at the same database {mask_url(self.prod_url)}",
                        hint="the rehearsal must run on a separate database",
                    )
            self.migrations = discover(self.config.migrations_dir)
            self.rollbacks = {m.version: find_rollback(m, self.config.rollbacks_dir) for m in self.migrations}
            gate.note(
                f"config {self.config.source}: {len(self.migrations)} migrations in {_rel(self.config.migrations_dir, self.config.root)}"
            )

            self.backup_destination = backup_destination(
                self.config, self.env
            )  # a bad [backup] fails here, not after staging

            from safemig import db

            def open_connection(name: str, url: str, application_name: str):
                try:
                    db.wait_until_ready(url, settings.ready_timeout.seconds)
                    return self.stack.enter_context(
                        _closing(db.connect(url, autocommit=True, application_name=application_name))
                    )
                except SafemigError as exc:
                    raise _prefixed(exc, name) from None

            self.prod = open_connection(self.env, self.prod_url, "safemig deploy")
            if self.staging_url:
                self.staging = open_connection(
                    f"staging env {settings.staging}", self.staging_url, "safemig deploy (staging)"
                )
            if self.staging is not None and _same_database(self.prod, self.staging):
                raise ConfigError(
                    f"envs.{self.env} and its staging env {settings.staging} reach the same database "
                    f"({mask_url(self.prod_url)} and {mask_url(self.staging_url)})",
                    hint="the rehearsal rolls migrations back and forth: it must run on a separate database",
                )
            gate.note(
                f"{self.env} reachable: {mask_url(self.prod_url)}"
                + (f"; {settings.staging} reachable: {mask_url(self.staging_url)}" if self.staging_url else "")
            )

            if not self.options.dry_run:
                take_deploy_lock(self.stack, self.prod, self.env, self.options.lock_wait_s, gate)

            self._check_ledgers(gate)
            self.record.pending = [
                PlanItem(m, self.rollbacks[m.version]).as_dict(self.config.root) for m in self.pending
            ]
            if not self.pending:
                gate.summary(f"nothing to deploy: {self.env} has all {len(self.migrations)} migrations applied")
                return

            self.window = evaluate(settings.maintenance_window, self.options.now)
            self.record.window = {"status": self.window.describe(), "open": self.window.open, "override_reason": None}
            if not self.window.open:
                if self.options.outside_window:
                    self.record.window["override_reason"] = self.options.reason
                    gate.warn(f"{self.window.describe()}; deploying anyway (--outside-window): {self.options.reason}")
                elif self.options.dry_run:
                    gate.warn(f"{self.window.describe()} (a real deploy would stop here)")
                else:
                    raise CheckFailed(
                        self.window.describe(),
                        hint="deploy during the window, or pass --outside-window --reason TEXT (the reason goes into the deploy record)",
                    )
            else:
                gate.note(self.window.describe())
            staging_note = (
                f", rehearsal on {settings.staging}"
                if settings.staging
                else ', no staging rehearsal (staging = "none")'
            )
            gate.summary(
                f"{len(self.pending)} pending: {', '.join(str(m.version) for m in self.pending)}{staging_note}"
            )

    def _check_ledgers(self, gate: GateContext) -> None:
        from safemig.migrations import ledger

        prod_rows = _read_rows(self.prod, self.env)
        try:
            self.pending = ledger.check(self.migrations, prod_rows, allow_out_of_order=self.options.allow_out_of_order)
        except SafemigError as exc:
            raise _prefixed(exc, self.env) from None
        self.prod_applied = {v for v, row in prod_rows.items() if row.success}
        if self.staging is not None:
            staging_rows = _read_rows(self.staging, self.settings.staging)
            # Staging may be ahead of or behind prod (the rehearsal realigns it); anything else is refused.
            found = ledger.problems(ledger.states(self.migrations, staging_rows), allow_out_of_order=True)
            if found:
                raise _prefixed(found[0], f"staging env {self.settings.staging}")
        gate.note(
            f"ledger of {self.env}"
            + (f" and {self.settings.staging}" if self.staging is not None else "")
            + " consistent with the files"
        )

    # -- gate 2 ------------------------------------------------------------------------
    def _lint(self) -> None:
        with self.runner.gate("lint", TITLES["lint"]) as gate:
            from safemig.lint.engine import lint_paths

            paths = [m.path for m in self.pending] + [p for m in self.pending if (p := self.rollbacks[m.version])]
            report = lint_paths(paths, self.config, env=self.env)  # env: this deploy sets its lock_timeout
            for f in report.findings:
                line = (
                    f"{_rel(Path(f.path), self.config.root)}:{f.line}:{f.column}: {f.severity} [{f.rule}] {f.message}"
                )
                (gate.note if f.severity == "error" else gate.warn)(f"{line}\n    {f.hint_line}")  # as `safemig lint`
            for note in report.notes:
                gate.note(note)
            errors = (
                report.errors if hasattr(report, "errors") else [f for f in report.findings if f.severity == "error"]
            )
            if report.has_errors:
                first = errors[0]
                raise CheckFailed(
                    f"lint found {len(errors)} error(s) in the pending migrations, first {_rel(Path(first.path), self.config.root)}:{first.line}: "
                    f"[{first.rule}] {first.message}",
                    hint=first.hint or "fix the findings listed above (`safemig lint` shows them all)",
                )
            gate.summary(
                f"{len(paths)} file(s) linted, {len(report.findings)} warning(s)"
                if report.findings
                else f"{len(paths)} file(s) clean"
            )

    def _plan(self) -> DeployPlan:
        return DeployPlan(
            env=self.env,
            staging=self.settings.staging,
            database=mask_url(self.prod_url),
            backup_destination=self.backup_destination,
            items=[PlanItem(m, self.rollbacks[m.version]) for m in self.pending],
            window=self.window.describe() if self.window else "",
        )

    # -- gate 3 ------------------------------------------------------------------------
    def _backup(self) -> None:
        with self.runner.gate("backup", TITLES["backup"]) as gate:
            from safemig.backup import run_backup

            result = run_backup(
                self.config,
                self.env,
                database_url=self.prod_url,
                label=f"pre-deploy {self.record.id}",
                progress=self.reporter.backup_progress(),
            )
            self.backup_uri = result.uri
            self.record.backup = {
                "uri": result.uri,
                "size": result.size,
                "sha256": result.sha256,
                "duration_s": round(result.duration_s, 3),
                "newest_version": result.newest_version,
                "verified": True,
            }
            gate.summary(f"{result.uri} ({_size(result.size)}, sha256 {result.sha256[:12]}…, verified)")

    # -- gate 4 ------------------------------------------------------------------------
    def _rehearse_on_staging(self) -> None:
        if self.staging is None:
            self.runner.skip("staging", TITLES["staging"], f'envs.{self.env}.staging = "none": no rehearsal')
            self.reporter.warning(f'no staging rehearsal: envs.{self.env}.staging = "none"')
            return
        with self.runner.gate("staging", TITLES["staging"]) as gate:
            from safemig.deploy.rehearsal import rehearse

            result = rehearse(
                conn=self.staging,
                url=self.staging_url,
                env=self.settings.staging,
                migrations=self.migrations,
                pending=self.pending,
                prod_applied=self.prod_applied,
                rollbacks=self.rollbacks,
                config=self.config,
                settings=self.settings,
                gate=gate,
                reporter=self.reporter,
                stack=self.stack,
                backup_uri=self.backup_uri,
            )
            self.record.rehearsal = result.as_dict()
            self.record.locks = result.lock_rollup
            self._add_prod_sizes(result.lock_rollup)
            shown = [row for row in result.lock_rollup if row.get("exists_on_prod")]
            for row in shown:
                size = (
                    f", ~{row['prod_rows_estimate']:,} rows on {self.env}"
                    if row.get("prod_rows_estimate") is not None
                    else ""
                )
                text = f"{row['mode']} on {row['relation']} ({row['migration']}, held {row['held_ms']:.0f} ms on staging{size})"
                if row["mode"] == "ACCESS EXCLUSIVE" and row.get("large"):
                    gate.warn(f"{text}: a large table; its reads and writes wait until the migration commits")
                else:
                    gate.note(f"lock: {text}")
            created = len(result.lock_rollup) - len(shown)
            if created:
                gate.note(
                    f"locks on {created} relation(s) that do not exist on {self.env} yet (created by this deploy) are in the record, not shown"
                )
            gate.summary(result.summary)

    def _add_prod_sizes(self, rollup: list[dict[str, Any]]) -> None:
        """Mark each relation staging locked with whether prod has it, and prod's size estimates.

        A catalog read that takes no lock. A relation prod does not have yet is created by
        this deploy, so locking it blocks nobody; a name that could not be resolved (dropped
        in the same transaction) is kept as if prod had it.
        """
        from safemig.deploy.locks import LARGE_TABLE_BYTES, LARGE_TABLE_ROWS

        names = sorted({row["relation"] for row in rollup if "." in row["relation"]})
        sizes: dict[str, tuple[int, int]] = {}
        if names:
            cur = self.prod.execute(
                "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint, c.relpages::bigint * current_setting('block_size')::bigint "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname || '.' || c.relname = ANY(%s)",
                (names,),
            )
            sizes = {name: (max(rows, 0), size) for name, rows, size in cur}
        for row in rollup:
            row["exists_on_prod"] = row["relation"] in sizes or "." not in row["relation"]
            if row["relation"] in sizes:
                rows, size = sizes[row["relation"]]
                row["prod_rows_estimate"], row["prod_bytes_estimate"] = rows, size
                row["large"] = row["large"] or rows >= LARGE_TABLE_ROWS or size >= LARGE_TABLE_BYTES

    def _restore_hint(self) -> str:
        if not self.backup_uri:
            return ""
        try:
            from safemig.backup import restore_command

            return restore_command(self.config, self.env, self.backup_uri)
        except SafemigError:
            return f"safemig restore --env {self.env} --from {self.backup_uri}"

    # -- gate 5 ------------------------------------------------------------------------
    def _apply_to_production(self) -> None:
        with self.runner.gate("production", TITLES["production"]) as gate:
            from safemig.deploy.observers import monotonic_deadline, production_migrator

            end = self.window.current[2] if self.window and self.window.open and self.window.current else None
            deadline = monotonic_deadline(end, now=self.options.now, started_at=self.record.started_at) if end else None
            migrator, _ = self.stack.enter_context(production_migrator(
                self.prod, self.prod_url, self.migrations, self.config.rollbacks_dir, self.settings,
                deadline=deadline, reporter=self.reporter, env=self.env, gate=gate, attempts=self.record.attempts,
            ))  # fmt: skip
            done: list[int] = []
            for migration in self.pending:
                try:
                    applied = migrator.apply(migration)
                except SafemigError as exc:
                    before = (
                        f"versions {', '.join(map(str, done))} of this deploy are applied; "
                        if done
                        else "no migration of this deploy was applied; "
                    )
                    restore = self._restore_hint()
                    raise type(exc)(
                        f"{self.env}: {exc.message}",
                        (exc.hint + "; " if exc.hint else "")
                        + before
                        + (
                            f"backup taken before the deploy: {self.backup_uri} (restore: {restore})"
                            if self.backup_uri
                            else ""
                        ),
                    ) from None
                done.append(migration.version)
                self.record.applied.append(applied_dict(applied, migration))
            total_ms = sum(a["duration_ms"] for a in self.record.applied)
            gate.summary(f"applied {', '.join(map(str, done))} to {self.env} in {total_ms:.0f} ms")


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


def _size(n: int) -> str:
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


def _read_rows(conn, env: str):
    import psycopg

    from safemig.db import error_text
    from safemig.migrations import ledger

    try:
        return ledger.applied_rows(conn)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"{env}: cannot read _sqlx_migrations: {error_text(exc)}",
            hint="check the role's privileges on the ledger table",
        ) from None


def applied_dict(applied, migration: Migration) -> dict[str, Any]:
    """An engine :class:`AppliedMigration` as the deploy record stores it."""
    return {
        "version": applied.version,
        "description": applied.description,
        "file": migration.name,
        "duration_ms": round(applied.duration_ns / 1e6, 2),
        "statements": [
            {
                "index": s.index,
                "line": s.line,
                "first_line": s.first_line,
                "duration_ms": round(s.duration_s * 1000, 2),
                "rows": s.rowcount,
                "status": s.status,
            }
            for s in applied.statements
        ],
    }


_HOLDER_SQL = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '?'), a.usename, a.client_addr::text,
       now() - a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %s AND a.pid <> pg_backend_pid()
"""


def lock_holder(conn, key: int) -> str:
    """Who holds sqlx's migration lock on this database: ``pid 123 (safemig deploy, user app from 10.0.0.5)``."""
    try:
        row = conn.execute(_HOLDER_SQL, (key,)).fetchone()
    except Exception:
        return "another session"
    if row is None:
        return "another session"
    pid, app, user, addr, age = row
    where = f" from {addr}" if addr else ""
    return f"pid {pid} ({app}, user {user}{where}, connected {str(age).split('.')[0]} ago)"


def take_deploy_lock(stack: ExitStack, conn, env: str, wait_s: float, gate: GateContext) -> None:
    """Hold sqlx's migration lock on ``conn`` until the deploy ends; refuse (exit 1) if another holds it.

    ``wait_s`` > 0 waits that long for it first (via the session's ``lock_timeout``, which
    ``pg_advisory_lock`` honours); 0 refuses at once.
    """
    from safemig import db

    (name,) = conn.execute("SELECT current_database()").fetchone()
    key = db.lock_id(name)
    waited = False

    def on_wait() -> None:
        nonlocal waited
        holder = lock_holder(conn, key)
        if wait_s <= 0:
            raise CheckFailed(
                f"{env} is being migrated by another session: the migration lock is held by {holder}",
                hint="wait until it finishes (a second deploy then finds nothing to deploy), or pass --lock-wait SECONDS to wait",
            )
        waited = True
        gate.note(f"waiting up to {wait_s:g}s for the migration lock on {env}, held by {holder}")
        db.set_timeouts(conn, f"{int(wait_s * 1000)}ms", None)

    try:
        stack.enter_context(db.advisory_lock(conn, on_wait=on_wait))
    except DatabaseError as exc:
        if waited and "lock timeout" in exc.message:
            raise CheckFailed(
                f"{env} is still being migrated by another session after waiting {wait_s:g}s for the migration lock",
                hint="try again later; `safemig migrate info --env " + env + "` shows the ledger",
            ) from None
        raise
    gate.note(f"migration lock taken on {env} (held until the deploy ends)")


def deploy(
    config: Config, env: str, options: DeployOptions | None = None, reporter: Reporter | None = None
) -> DeployOutcome:
    """Run the pipeline for ``env``; the outcome's record is written whether it passed or not."""
    return _Deploy(config, env, options or DeployOptions(), reporter or Reporter()).run()
