"""Gate 4, the rehearsal: do to a copy of prod exactly what production is about to get, and more.

Two places to rehearse (``[envs.PROD] rehearsal``):

* ``"restore"`` (the default): the backup gate 3 just stored and verified is restored into
  a new scratch database on the staging env's server (:mod:`safemig.deploy.scratch`) —
  the whole schema and the rows of the tables the pending migrations touch
  (:mod:`safemig.deploy.scope`), or everything with ``rehearsal_data = "all"`` — so a
  constraint prod's rows violate fails here, and lock hold times are prod-size. The
  restore is also the proof that the backup restores. The scratch database is dropped
  at the end, whatever happens; the staging env's own database is not touched.
* ``"staging"``: on the staging env's own database. It is first aligned with prod's applied
  set (versions prod has are applied; versions only staging has are reverted, newest
  first), then its schema is compared with prod's for the objects the pending migrations
  touch (a difference refuses: the rehearsal would prove nothing). A failed rehearsal
  reverts what it applied, so fixing the file and deploying again works.

Then, on either: apply the pending migrations with prod's engine and session settings
(lock_timeout, statement_timeout, retries), recording each statement's locks and
duration (:mod:`safemig.deploy.locks`); revert them newest first with their rollback
scripts, comparing the schema after each rollback with the schema before that migration
(:mod:`safemig.deploy.schema`); apply them again; and run each one's SQL a second time
without touching the ledger (the guide's promise that re-running is safe).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from safemig.deploy import inplace
from safemig.deploy.context import DeployContext
from safemig.deploy.gates import GateContext, Reporter
from safemig.deploy.locks import LockRecorder, StatementLocks, strongest_per_relation
from safemig.deploy.observers import ReportingObserver
from safemig.deploy.record import applied_dict
from safemig.deploy.settings import apply_settings
from safemig.errors import CheckFailed, DatabaseError, SafemigError
from safemig.migrations.files import Migration
from safemig.redact import mask_url

T = TypeVar("T")
_MAX_COUNTED = 50  # row counts of at most this many relations go into the report


@dataclass
class RehearsalResult:
    """What the rehearsal did, for the gate summary and the deploy record (filled as it goes)."""

    mode: str = "restore"
    ran_on: dict[str, Any] = field(default_factory=dict)
    aligned_applied: list[int] = field(default_factory=list)
    aligned_reverted: list[int] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    rollbacks_rehearsed: list[int] = field(default_factory=list)
    without_rollback: list[int] = field(default_factory=list)
    rollback_schema: list[dict[str, Any]] = field(default_factory=list)
    idempotent: list[int] = field(default_factory=list)
    staging_restored: list[int] = field(default_factory=list)  # standing staging: what a failure reverted
    statements: list[StatementLocks] = field(default_factory=list)
    lock_rollup: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    phases_s: dict[str, float] = field(default_factory=dict)  # restore, apply, rollback, re-apply, second run

    def timed(self, phase: str, started: float) -> None:
        self.phases_s[phase] = round(self.phases_s.get(phase, 0.0) + time.monotonic() - started, 3)

    @property
    def apply_s(self) -> float:
        """How long the forward apply of the pending set took: what prod is about to spend."""
        return sum(a["duration_ms"] for a in self.applied) / 1000

    @property
    def summary(self) -> str:
        parts = [f"applied {_versions(v['version'] for v in self.applied)} in {self.apply_s * 1000:.0f} ms"]
        if self.rollbacks_rehearsed:
            parts.append(f"rolled back and re-applied {_versions(self.rollbacks_rehearsed)}")
        left = [r for r in self.rollback_schema if r["differences"]]
        if left:
            parts.append(f"rollback of {_versions(r['version'] for r in left)} does not restore the schema")
        if self.without_rollback:
            parts.append(f"NO rollback script for {_versions(self.without_rollback)}")
        parts.append(f"re-ran {_versions(self.idempotent)} (idempotent)")
        if self.aligned_applied or self.aligned_reverted:
            parts.insert(0, "aligned with prod first")
        where = self.ran_on.get("database")
        if self.mode == "restore" and where:
            parts.insert(0, f"on {where}, a restore of {self.ran_on.get('backup_uri')}")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "ran_on": self.ran_on,
            "aligned_applied": self.aligned_applied,
            "aligned_reverted": self.aligned_reverted,
            "applied": self.applied,
            "rollbacks_rehearsed": self.rollbacks_rehearsed,
            "without_rollback": self.without_rollback,
            "rollback_schema": self.rollback_schema,
            "idempotent": self.idempotent,
            "staging_restored": self.staging_restored,
            "statements": [s.as_dict() for s in self.statements],
            "notes": self.notes,
            "phases_s": self.phases_s,
        }


def _versions(versions) -> str:
    listed = [str(v) for v in versions]
    return ", ".join(listed) if listed else "none"


class _Steps:
    """Runs one step of the rehearsal, turning its error into one that says where it happened."""

    def __init__(self, prefix: str, hint: str | None) -> None:
        self.prefix = prefix
        self.hint = hint

    def __call__(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except SafemigError as exc:
            hint = "; ".join(h for h in (exc.hint, self.hint) if h)
            raise type(exc)(f"{self.prefix}, {what}: {exc.message}", hint or None) from None


# -- restore mode -------------------------------------------------------------------------


def rehearse_on_restore(
    ctx: DeployContext, backup_uri: str, gate: GateContext, reporter: Reporter, result: RehearsalResult
) -> RehearsalResult:
    """Restore ``backup_uri`` into a scratch database on the staging server, rehearse there, drop it."""
    from psycopg import sql

    from safemig import db
    from safemig.backup import restore_backup
    from safemig.deploy import scratch
    from safemig.deploy.scope import migration_targets, resolve_scope

    assert ctx.staging is not None and ctx.staging_url is not None and ctx.settings.staging
    result.mode = "restore"
    staging_env = ctx.settings.staging
    scope = resolve_scope(
        ctx.prod,
        migration_targets(ctx.pending),
        everything=ctx.settings.rehearsal_data == "all",
        ledger=_regclass_text(ctx.config.sqlx.table),
    )
    row = ctx.prod.execute(
        "SELECT current_database(), pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None  # the connection's own database
    database, encoding = row
    name = scratch.scratch_name(database, ctx.started_at)
    result.ran_on = {
        "backup_uri": backup_uri,
        "database": name,
        "server": mask_url(scratch.with_database(ctx.staging_url, name)),
        "scope": scope.as_dict(),
        "kept": ctx.options.keep_rehearsal,
    }
    if scope.everything:
        gate.note(f"restoring all of {ctx.env}'s data: {scope.everything_because}")
    else:
        gate.note(
            f"restoring the schema and the rows of {len(scope.relations)} relation(s): "
            + ", ".join(sorted(scope.relations)[:8])
            + (" …" if len(scope.relations) > 8 else "")
        )
    result.ran_on["roles_created"] = []
    result.ran_on["tablespaces_created"] = []
    started = time.monotonic()
    try:
        # Before the restore, which would fail on a policy's TO naming a missing role. Recorded at
        # once, so that the finally below drops them whatever happens next.
        for role in _policy_roles_missing(ctx, staging_env, gate):
            ctx.staging.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            result.ran_on["roles_created"].append(role)
        if result.ran_on["roles_created"]:
            gate.note(
                f"created role(s) {', '.join(result.ran_on['roles_created'])} (NOLOGIN) on {staging_env}'s server "
                "for the policies that name them (dropped again after the rehearsal)"
            )
        cannot_place = _tablespaces_in_place(ctx, staging_env, gate, result)
        with scratch.scratch_database(
            ctx.staging, ctx.staging_url, name, encoding=encoding, keep=ctx.options.keep_rehearsal, warn=gate.warn
        ) as url:
            result.timed("create", started)
            started = time.monotonic()
            # Streamed into pg_restore, its checksum checked once the whole object was read: the
            # scratch database is read by nothing before restore_backup returns, and a mismatch
            # raises here, before any migration ran on it; the with-block drops it. Not with
            # --keep-rehearsal, which would keep a database restored from a damaged object.
            streamed = not ctx.options.keep_rehearsal
            try:
                restored = restore_backup(
                    ctx.config,
                    ctx.env,
                    source=backup_uri,
                    target_url=url,
                    no_owner=True,
                    no_privileges=True,
                    select=scope.select,
                    jobs=_restore_jobs(scope, streamed),
                    verify_before_commit=not streamed,
                    # a rehearsal checks schema and data, not where they are stored
                    tablespaces="none-if-missing",
                )
            except SafemigError as exc:
                raise type(exc)(
                    f"the backup {backup_uri} cannot be restored into {name} on {staging_env}'s server: {exc.message}",
                    "; ".join(h for h in (exc.hint, f"{ctx.env} is untouched") if h),
                ) from None
            result.ran_on["restore_s"] = round(restored.duration_s, 3)
            result.ran_on["restore_mode"] = restored.mode
            result.ran_on["restore_prepare_s"] = round(restored.prepare_s, 3)
            if restored.tablespaces_omitted:
                result.ran_on["tablespaces_omitted"] = list(restored.tablespaces_omitted)
                gate.note(
                    f"{staging_env}'s server lacks tablespace(s) {', '.join(restored.tablespaces_omitted)} that"
                    f" {ctx.env}'s objects are in: restored into the scratch database's default tablespace"
                    " (the rehearsal checks schema and data, not placement)"
                    + (
                        f"; they cannot be created in place there ({cannot_place}), so a migration that names"
                        f" one fails here: create it on {staging_env}'s server"
                        if cannot_place
                        else ""
                    )
                )
            result.timed("restore", started)
            with closing(db.connect(url, autocommit=True, application_name="safemig deploy (rehearsal)")) as conn:
                started = time.monotonic()
                counts = _row_counts(conn, scope.targets)
                result.timed("row counts", started)
                result.ran_on["row_counts"] = counts
                gate.note(
                    f"restored {backup_uri} into {name} in {restored.duration_s:.1f}s"
                    + (": " + ", ".join(f"{r} {n:,} rows" for r, n in counts.items()) if counts else "")
                )
                steps = _Steps(f"rehearsal on {name} (a restore of {backup_uri})", f"{ctx.env} is untouched")
                _exercise(ctx, conn, url, name, gate, reporter, result, steps)
            if ctx.options.keep_rehearsal:
                kept = result.ran_on["tablespaces_created"]
                gate.warn(
                    f"rehearsal database kept (--keep-rehearsal): {mask_url(url)}; drop it when done"
                    + (f", then the tablespace(s) {', '.join(kept)} it is in" if kept else "")
                )
            started = time.monotonic()
        result.timed("drop", started)
    finally:  # after the scratch database is gone: nothing depends on the roles or tablespaces any more
        if not ctx.options.keep_rehearsal:
            _drop_created(ctx, staging_env, gate, result)
    return result


def _drop_created(ctx: DeployContext, staging_env: str, gate: GateContext, result: RehearsalResult) -> None:
    """Drop the tablespaces, then the roles, the rehearsal created on staging's server, each wait
    bounded by ``backup.stall_timeout`` (a lock another session holds must not hang the deploy);
    what is left is named in a warning."""
    from safemig.backup.roles import undo_created
    from safemig.backup.settings import load_settings

    assert ctx.staging_url is not None
    spaces, roles = result.ran_on["tablespaces_created"], result.ran_on["roles_created"]
    if not spaces and not roles:
        return
    left = undo_created(ctx.staging_url, roles, spaces, load_settings(ctx.config).stall_timeout, by="the rehearsal")
    if left:
        gate.warn(f"on {staging_env}'s server, {left} (DROP TABLESPACE / DROP ROLE)")


def _tablespaces_in_place(ctx: DeployContext, staging_env: str, gate: GateContext, result: RehearsalResult) -> str:
    """Create, in place, the tablespaces prod's server has and staging's lacks (:mod:`safemig.deploy.inplace`),
    recording each in ``ran_on["tablespaces_created"]`` as it exists; return why they could not be
    created ("" when none is missing or all were), for the note on what the restore left out."""
    import psycopg

    from safemig.db import error_text

    assert ctx.staging is not None
    try:
        names = inplace.missing(ctx.prod, ctx.staging)
        why = inplace.why_not(ctx.staging) if names else None
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot compare the tablespaces of {ctx.env}'s and {staging_env}'s servers: {error_text(exc)}",
            hint=f"check that both servers are up; {ctx.env} is untouched",
        ) from None
    if not names:
        return ""
    if why:
        return why
    try:
        inplace.create(ctx.staging, names, result.ran_on["tablespaces_created"])
    except psycopg.Error as exc:
        return f"creating one failed: {error_text(exc)}"
    gate.note(
        f"created tablespace(s) {', '.join(names)} in place on {staging_env}'s server (inside its data directory),"
        f" as {ctx.env}'s server has them, for the rehearsal's restore and migrations (dropped again after it)"
    )
    return ""


def _policy_roles_missing(ctx: DeployContext, staging_env: str, gate: GateContext) -> list[str]:
    """The roles prod's row-level security policies name that the staging server lacks
    (``--no-owner --no-privileges`` skips owners and GRANTs, not a policy's ``TO``).

    Exactly those are created, NOLOGIN and with no other attribute of prod's role (prod's
    superusers and passwords never reach staging), and dropped after the rehearsal; a
    staging role that may not create roles is refused with what to do.
    """
    assert ctx.staging is not None
    named = {
        r[0]
        for r in ctx.prod.execute(
            "SELECT DISTINCT r.rolname FROM pg_policy p CROSS JOIN LATERAL unnest(p.polroles) AS x(oid) "
            "JOIN pg_roles r ON r.oid = x.oid"
        )
    }
    if not named:
        return []
    existing = {
        r[0] for r in ctx.staging.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (sorted(named),))
    }
    missing = sorted(named - existing)
    if not missing:
        return []
    row = ctx.staging.execute(
        "SELECT current_user, rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    if not row[1]:
        raise CheckFailed(
            f"{ctx.env}'s row-level security policies name role(s) {', '.join(missing)}, which {staging_env}'s "
            f"server lacks, and role {row[0]} may not create them: the restore would fail",
            hint=f"create the role(s) on {staging_env}'s server (NOLOGIN is enough), grant {row[0]} CREATEROLE, "
            'or set rehearsal = "staging"',
        )
    return missing


def _regclass_text(table) -> str:
    """sqlx.toml's ledger table as ``to_regclass`` reads it: each part quoted (unqualified: the search path)."""
    parts = [table.schema, table.name] if table.schema else [table.name]
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def _restore_jobs(scope, streamed: bool) -> int:
    """pg_restore's jobs: one when streamed (a pipe is read by one process; no disk, and no download
    to wait for before pg_restore starts). Otherwise (--keep-rehearsal) a selective restore is
    spooled to a verified local file, from which parallel jobs cost nothing more; a full one
    streams in one job, in one transaction."""
    import os

    return 1 if streamed or scope.everything else max(1, min(4, os.cpu_count() or 1))


def _row_counts(conn, relations: list[str]) -> dict[str, int]:
    """Exact row counts of the touched relations in the scratch database (for the report and record)."""
    from psycopg import sql

    counts: dict[str, int] = {}
    for relation in relations[:_MAX_COUNTED]:
        schema, _, table = relation.partition(".")
        (n,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()
        counts[relation] = int(n)
    return counts


# -- standing staging ---------------------------------------------------------------------


def rehearse_on_staging(
    ctx: DeployContext,
    stack: ExitStack,
    backup_uri: str | None,
    gate: GateContext,
    reporter: Reporter,
    result: RehearsalResult,
) -> RehearsalResult:
    """Align staging with prod, compare the touched schema, rehearse; revert what was applied on failure."""
    from safemig.deploy.migration_lock import take_deploy_lock
    from safemig.migrations import ledger

    assert ctx.staging is not None and ctx.staging_url is not None and ctx.settings.staging
    conn, env = ctx.staging, ctx.settings.staging
    result.mode = "staging"
    result.ran_on = {"env": env, "database": mask_url(ctx.staging_url)}
    by_version = {m.version: m for m in ctx.migrations}
    take_deploy_lock(stack, conn, f"staging env {env}", 0, gate)
    reset = f"reset {env} from {ctx.env}'s pre-deploy backup {backup_uri} (safemig restore)" if backup_uri else None
    steps = _Steps(f"staging rehearsal on {env}", None)
    quiet = _migrator(
        ctx, conn, ReportingObserver(reporter, env, gate, verbose=False, per_migration=False, phase="align: apply")
    )

    # 1. align staging with prod's applied set
    staging_applied = {v for v, row in ledger.applied_rows(conn, ctx.config.sqlx.table).items() if row.success}
    for version in sorted(staging_applied - ctx.prod_applied, reverse=True):
        migration = by_version[version]
        if ctx.rollbacks.get(version) is None:
            raise CheckFailed(
                f"staging env {env} has version {version} applied, which {ctx.env} has not, and it has no "
                "rollback script: "
                f"staging cannot be brought to {ctx.env}'s state",
                hint=(
                    f"reset {env} from a backup of {ctx.env} (safemig restore), or write a rollback script "
                    f"for version {version}"
                ),
            )
        _Steps(f"staging rehearsal on {env}", reset)(
            f"aligning (reverting {migration.name}, applied on staging only)", quiet.revert, migration
        )
        result.aligned_reverted.append(version)
    for version in sorted(ctx.prod_applied - staging_applied):
        migration = by_version[version]
        _Steps(f"staging rehearsal on {env}", reset)(
            f"aligning (applying {migration.name}, already on prod)", quiet.apply, migration
        )
        result.aligned_applied.append(version)
    if result.aligned_applied or result.aligned_reverted:
        gate.note(
            f"{env} aligned with {ctx.env}: applied {_versions(result.aligned_applied)}, reverted "
            f"{_versions(result.aligned_reverted)}"
        )

    # 2. staging must look like prod where the pending migrations act, or the rehearsal proves nothing
    _compare_with_prod(ctx, conn, env, gate)

    try:
        _exercise(ctx, conn, ctx.staging_url, env, gate, reporter, result, steps)
    except SafemigError as exc:
        restored, problem = _put_back(ctx, conn, env, reporter, gate)
        result.staging_restored = restored
        if problem is None:
            note = f"{env} was put back as this rehearsal found it" + (
                f" (reverted {_versions(restored)})" if restored else ""
            )
        else:
            note = f"{env} may be left part-way ({problem})" + (f": {reset}" if reset else "")
        raise type(exc)(exc.message, "; ".join(h for h in (exc.hint, note) if h)) from None
    return result


def _compare_with_prod(ctx: DeployContext, conn, env: str, gate: GateContext) -> None:
    """Refuse when staging's schema differs from prod's for the objects the pending migrations touch."""
    from safemig.deploy import schema
    from safemig.deploy.scope import migration_targets

    targets = migration_targets(ctx.pending)
    ledger_name = ctx.config.sqlx.table.name
    prod_snap, staging_snap = schema.snapshot(ctx.prod, ledger_name), schema.snapshot(conn, ledger_name)
    if targets.unknown:
        relations: set[str] | None = None  # cannot know: compare everything
    else:
        relations = _qualified(ctx.prod, targets.names) | _qualified(conn, targets.names)
        relations |= {n if "." in n else f"public.{n}" for n in targets.names}
        prod_snap = schema.restricted(prod_snap, relations, relations)
        staging_snap = schema.restricted(staging_snap, relations, relations)
    differences = schema.diff(prod_snap, staging_snap, left="only on staging", gone="missing on staging")
    if differences:
        shown = "; ".join(d.describe() for d in differences[:10])
        more = f" (and {len(differences) - 10} more)" if len(differences) > 10 else ""
        raise CheckFailed(
            f"staging env {env}'s schema differs from {ctx.env}'s where the pending migrations act: {shown}{more}",
            hint=(
                f"re-seed {env} from a backup of {ctx.env} (safemig restore), or rehearse on a restore of "
                'the backup: rehearsal = "restore"'
            ),
        )
    scope = "everything" if relations is None else f"{len(relations)} relation(s)"
    gate.note(f"{env}'s schema matches {ctx.env}'s for {scope} the pending migrations touch")


def _qualified(conn, names) -> set[str]:
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM unnest(%s::text[]) AS t(name) "
        "JOIN pg_class c ON c.oid = to_regclass(t.name) JOIN pg_namespace n ON n.oid = c.relnamespace",
        (sorted(names),),
    )
    return {r[0] for r in rows}


def _put_back(
    ctx: DeployContext, conn, env: str, reporter: Reporter, gate: GateContext
) -> tuple[list[int], str | None]:
    """Revert, newest first, every pending version the failed rehearsal left applied on staging.

    Returns the versions reverted and, if one could not be, why. A ``-- no-transaction``
    migration that failed part-way has no ledger row; its rollback script (written to be
    re-runnable, ``IF EXISTS``) is run once without the ledger to remove what it did.
    """
    from safemig.migrations import ledger
    from safemig.migrations.files import read_sql

    try:
        conn.rollback()  # an aborted transaction of our own must not block the clean-up
    except Exception:  # noqa: S110 - autocommit connections have none
        pass
    observer = ReportingObserver(reporter, env, gate, verbose=False, per_migration=False, phase="put back: revert")
    undo = _migrator(ctx, conn, observer)
    reverted: list[int] = []
    try:
        applied = {v for v, row in ledger.applied_rows(conn, ctx.config.sqlx.table).items() if row.success}
        for migration in reversed(ctx.pending):
            script = ctx.rollbacks.get(migration.version)
            if migration.version in applied:
                if script is None:
                    return reverted, f"{migration.name} has no rollback script"
                undo.revert(migration)
                reverted.append(migration.version)
            elif migration.no_transaction and script is not None:
                _, sql = read_sql(script)
                undo.execute_sql(sql, no_transaction=True, label=f"{script.name} (clean-up)", migration=migration)
    except SafemigError as exc:
        return reverted, exc.message
    return reverted, None


# -- the exercise, common to both ---------------------------------------------------------


def _migrator(ctx: DeployContext, conn, observer):
    from safemig.migrations.engine import Migrator

    return Migrator(
        conn,
        list(ctx.migrations),
        rollbacks_dir=ctx.config.rollbacks_dir,
        settings=apply_settings(ctx.settings),
        observer=observer,
        table=ctx.config.sqlx.table,  # sqlx.toml's table-name and create-schemas
        create_schemas=ctx.config.sqlx.create_schemas,
    )


def _exercise(
    ctx: DeployContext,
    conn,
    url: str,
    where: str,
    gate: GateContext,
    reporter: Reporter,
    result: RehearsalResult,
    step: _Steps,
) -> None:
    """Apply (locks recorded, schema captured first), roll back (schema compared), re-apply, re-run."""
    from safemig.deploy import schema

    pending = list(ctx.pending)

    def observer(phase: str) -> ReportingObserver:
        return ReportingObserver(reporter, where, gate, verbose=False, per_migration=False, phase=phase)

    # apply the pending migrations, recording locks; the schema before each one is kept
    started = time.monotonic()
    before: dict[int, schema.Snapshot] = {}
    recorder = LockRecorder(conn.info.backend_pid, url, forward=observer("apply"))
    try:
        recording = _migrator(ctx, conn, recorder)
        for migration in pending:
            before[migration.version] = schema.snapshot(conn, ctx.config.sqlx.table.name)
            applied = step(f"applying {migration.name}", recording.apply, migration)
            result.applied.append(applied_dict(applied, migration))
    finally:
        recorder.close()
        result.statements = recorder.statements
        result.notes.extend(recorder.notes)
        result.lock_rollup = strongest_per_relation(recorder.statements)
        result.timed("apply", started)
    gate.note(
        f"{where}: applied {_versions(m.version for m in pending)} in {result.apply_s * 1000:.0f} ms (locks recorded)"
    )

    # roll back each, newest first, comparing the schema with the one before it; then re-apply
    started = time.monotonic()
    reverter = _migrator(ctx, conn, observer("rollback of"))
    reverted: list[Migration] = []
    for migration in reversed(pending):
        if ctx.rollbacks.get(migration.version) is None:
            result.without_rollback.append(migration.version)
            gate.warn(
                f"{migration.name} has no rollback script (.down.sql or "
                f"{Path(ctx.config.rollbacks_dir).name}/{migration.version:0>3}_*.sql)"
                + ("; older pending migrations cannot be rolled back past it" if migration is not pending[0] else "")
            )
            break
        step(f"running the rollback of {migration.name}", reverter.revert, migration)
        reverted.append(migration)
        differences = schema.diff(before[migration.version], schema.snapshot(conn, ctx.config.sqlx.table.name))
        result.rollback_schema.append(
            {"version": migration.version, "file": migration.name, "differences": [d.as_dict() for d in differences]}
        )
        if differences:
            listed = "; ".join(d.describe() for d in differences)
            if ctx.settings.rollback_must_restore_schema:
                raise CheckFailed(
                    f"{step.prefix}: the rollback of {migration.name} does not restore the schema: {listed}",
                    hint="make the rollback script undo exactly what the migration does, or set "
                    f"envs.{ctx.env}.rollback_must_restore_schema = false to accept it with a warning",
                )
            gate.warn(f"the rollback of {migration.name} does not restore the schema: {listed}")
    result.timed("rollback", started)
    started = time.monotonic()
    reapplier = _migrator(ctx, conn, observer("re-apply"))
    for migration in reversed(reverted):
        step(f"re-applying {migration.name} after its rollback", reapplier.apply, migration)
        result.rollbacks_rehearsed.append(migration.version)
    result.rollbacks_rehearsed.sort()
    result.timed("re-apply", started)
    if reverted:
        gate.note(
            f"{where}: rolled back {_versions(m.version for m in reverted)} (newest first, schema compared) "
            "and re-applied them"
        )
    result.without_rollback.extend(
        m.version for m in pending if ctx.rollbacks.get(m.version) is None and m.version not in result.without_rollback
    )
    result.without_rollback.sort()

    # idempotency: each migration's SQL once more, ledger untouched
    started = time.monotonic()
    rerunner = _migrator(ctx, conn, observer("second run of"))
    for migration in pending:
        step(
            f"re-running {migration.name} (the guide promises migrations are idempotent)",
            lambda m=migration: rerunner.execute_sql(
                m.sql, no_transaction=m.no_transaction, label=f"{m.name} (second run)", migration=m
            ),
        )
        result.idempotent.append(migration.version)
    result.timed("second run", started)
    gate.note(f"{where}: second run of {_versions(result.idempotent)} succeeded (idempotent)")
