"""The staging rehearsal: do to staging exactly what production is about to get, and more.

1. Align: staging is brought to prod's applied set. Versions prod has and staging lacks
   are applied; versions staging has and prod lacks (an earlier rehearsal, or someone
   testing by hand) are reverted with their rollback scripts, newest first, so the
   pending migrations run on staging from the same starting point as on prod.
2. Apply the pending migrations with the same engine and the same session settings
   (lock_timeout, statement_timeout, retries) as prod, recording each statement's locks
   and duration (:mod:`safemig.deploy.locks`).
3. Rollbacks: revert the pending migrations newest first with their ``.down.sql`` or
   ``rollbacks/`` scripts, then apply them again: a rollback that fails is found here,
   not during an incident. A migration without a rollback script ends this step (older
   ones cannot be reverted past it) and is reported.
4. Idempotency: run each pending migration's SQL a second time without touching the
   ledger, proving the guide's promise that re-running is safe.

``-- no-transaction`` files go through every step the same way (statement by statement
in autocommit). Any error stops the deploy with the migration, statement and PostgreSQL
error, prefixed with the step it happened in.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safemig.config import Config, EnvSettings
from safemig.deploy.gates import GateContext, Reporter
from safemig.deploy.locks import LockRecorder, StatementLocks, strongest_per_relation
from safemig.deploy.observers import ReportingObserver
from safemig.deploy.settings import apply_settings
from safemig.errors import CheckFailed, SafemigError
from safemig.migrations.files import Migration


@dataclass
class RehearsalResult:
    """What the rehearsal did, for the gate summary and the deploy record."""

    aligned_applied: list[int] = field(default_factory=list)
    aligned_reverted: list[int] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    rollbacks_rehearsed: list[int] = field(default_factory=list)
    without_rollback: list[int] = field(default_factory=list)
    idempotent: list[int] = field(default_factory=list)
    statements: list[StatementLocks] = field(default_factory=list)
    lock_rollup: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        parts = [f"applied {_versions(v['version'] for v in self.applied)}"]
        if self.rollbacks_rehearsed:
            parts.append(f"rolled back and re-applied {_versions(self.rollbacks_rehearsed)}")
        if self.without_rollback:
            parts.append(f"NO rollback script for {_versions(self.without_rollback)}")
        parts.append(f"re-ran {_versions(self.idempotent)} (idempotent)")
        if self.aligned_applied or self.aligned_reverted:
            parts.insert(0, "aligned with prod first")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "aligned_applied": self.aligned_applied,
            "aligned_reverted": self.aligned_reverted,
            "applied": self.applied,
            "rollbacks_rehearsed": self.rollbacks_rehearsed,
            "without_rollback": self.without_rollback,
            "idempotent": self.idempotent,
            "statements": [s.as_dict() for s in self.statements],
            "notes": self.notes,
        }


def _versions(versions) -> str:
    listed = [str(v) for v in versions]
    return ", ".join(listed) if listed else "none"


def rehearse(
    *,
    conn,
    url: str,
    env: str,
    migrations: list[Migration],
    pending: list[Migration],
    prod_applied: set[int],
    rollbacks: dict[int, Path | None],
    config: Config,
    settings: EnvSettings,
    gate: GateContext,
    reporter: Reporter,
    stack: ExitStack,
    backup_uri: str | None = None,
) -> RehearsalResult:
    """Run steps 1-4 on the staging connection ``conn`` (locked here for the rest of the deploy)."""
    from safemig.deploy.pipeline import applied_dict, take_deploy_lock
    from safemig.migrations import ledger
    from safemig.migrations.engine import Migrator

    result = RehearsalResult()
    by_version = {m.version: m for m in migrations}
    take_deploy_lock(stack, conn, f"staging env {env}", 0, gate)

    def migrator(observer) -> Migrator:
        return Migrator(
            conn, migrations, rollbacks_dir=config.rollbacks_dir, settings=apply_settings(settings), observer=observer
        )

    quiet = migrator(ReportingObserver(reporter, env, gate, verbose=False, per_migration=False, phase="align: apply"))

    def step(what: str, fn, *args):
        try:
            return fn(*args)
        except SafemigError as exc:
            hint = exc.hint or ""
            if backup_uri:
                hint += (
                    ("; " if hint else "")
                    + f"{env} may be left part-way: reset it from {settings.env}'s pre-deploy backup {backup_uri} (safemig restore)"
                )
            raise type(exc)(f"staging rehearsal on {env}, {what}: {exc.message}", hint or None) from None

    # 1. align staging with prod's applied set
    staging_applied = {v for v, row in ledger.applied_rows(conn).items() if row.success}
    for version in sorted(staging_applied - prod_applied, reverse=True):
        migration = by_version[version]
        if rollbacks.get(version) is None:
            raise CheckFailed(
                f"staging env {env} has version {version} applied, which {settings.env} has not, and it has no rollback script: "
                f"staging cannot be brought to {settings.env}'s state",
                hint=f"reset {env} from a backup of {settings.env} (safemig restore), or write a rollback script for version {version}",
            )
        step(f"aligning (reverting {migration.name}, applied on staging only)", quiet.revert, migration)
        result.aligned_reverted.append(version)
    for version in sorted(prod_applied - staging_applied):
        migration = by_version[version]
        step(f"aligning (applying {migration.name}, already on prod)", quiet.apply, migration)
        result.aligned_applied.append(version)
    if result.aligned_applied or result.aligned_reverted:
        gate.note(
            f"{env} aligned with {settings.env}: applied {_versions(result.aligned_applied)}, reverted {_versions(result.aligned_reverted)}"
        )

    # 2. apply the pending migrations, recording locks
    recorder = LockRecorder(
        conn.info.backend_pid,
        url,
        forward=ReportingObserver(reporter, env, gate, verbose=False, per_migration=False, phase="apply"),
    )
    try:
        recording = migrator(recorder)
        for migration in pending:
            applied = step(f"applying {migration.name}", recording.apply, migration)
            result.applied.append(applied_dict(applied, migration))
    finally:
        recorder.close()
    result.statements = recorder.statements
    result.notes.extend(recorder.notes)
    result.lock_rollup = strongest_per_relation(recorder.statements)
    gate.note(
        f"{env}: applied {_versions(m.version for m in pending)} in {sum(a['duration_ms'] for a in result.applied):.0f} ms (locks recorded)"
    )

    # 3. rollback each, newest first, then re-apply
    reverter = migrator(ReportingObserver(reporter, env, gate, verbose=False, per_migration=False, phase="rollback of"))
    reapplier = migrator(ReportingObserver(reporter, env, gate, verbose=False, per_migration=False, phase="re-apply"))
    rerunner = migrator(
        ReportingObserver(reporter, env, gate, verbose=False, per_migration=False, phase="second run of")
    )
    reverted: list[Migration] = []
    for migration in reversed(pending):
        if rollbacks.get(migration.version) is None:
            result.without_rollback.append(migration.version)
            gate.warn(
                f"{migration.name} has no rollback script (.down.sql or {Path(config.rollbacks_dir).name}/{migration.version:0>3}_*.sql)"
                + ("; older pending migrations cannot be rolled back past it" if migration is not pending[0] else "")
            )
            break
        step(f"running the rollback of {migration.name}", reverter.revert, migration)
        reverted.append(migration)
    for migration in reversed(reverted):
        step(f"re-applying {migration.name} after its rollback", reapplier.apply, migration)
        result.rollbacks_rehearsed.append(migration.version)
    result.rollbacks_rehearsed.sort()
    if reverted:
        gate.note(f"{env}: rolled back {_versions(m.version for m in reverted)} (newest first) and re-applied them")
    result.without_rollback.extend(
        m.version for m in pending if rollbacks.get(m.version) is None and m.version not in result.without_rollback
    )
    result.without_rollback.sort()

    # 4. idempotency: each migration's SQL once more, ledger untouched
    for migration in pending:
        step(
            f"re-running {migration.name} (the guide promises migrations are idempotent)",
            lambda m=migration: rerunner.execute_sql(
                m.sql, no_transaction=m.no_transaction, label=f"{m.name} (second run)", migration=m
            ),
        )
        result.idempotent.append(migration.version)
    gate.note(f"{env}: second run of {_versions(result.idempotent)} succeeded (idempotent)")
    return result
