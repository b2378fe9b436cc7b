"""The engine observer that turns migration progress into what the deploy reports.

Production is applied verbosely, as the guide asks (``--verbose``): every statement with
its duration and rows affected, every lock-timeout retry with its delay, every migration
with its total. The observer hands these to the pipeline's Reporter and gate; it prints
nothing itself.
"""

from __future__ import annotations

from safemig.deploy.gates import GateContext, Reporter
from safemig.migrations.engine import Observer


class ReportingObserver(Observer):
    """Forward statement results and retries of migrations on ``env`` to the reporter."""

    def __init__(
        self,
        reporter: Reporter,
        env: str,
        gate: GateContext,
        *,
        verbose: bool = True,
        phase: str = "apply",
        per_migration: bool = True,
    ) -> None:
        self.reporter = reporter
        self.env = env
        self.gate = gate
        self.verbose = verbose
        self.per_migration = per_migration
        self.phase = phase
        self.retries = 0

    def statement_finished(self, conn, migration, result):
        if self.verbose:
            self.reporter.statement(self.env, migration, result)

    def migration_finished(self, migration, result):
        if not self.per_migration:
            return
        label = migration.name if migration.version else migration.description
        self.gate.note(
            f"{self.env}: {self.phase} {label}: {len(result.statements)} statement(s) in {result.duration_ns / 1e6:.1f} ms"
        )

    def retrying(self, migration, attempt, error, delay):
        self.retries += 1
        self.gate.warn(
            f"{self.env}: {migration.name} hit lock_timeout (attempt {attempt}: {error}); retrying in {delay:g}s"
        )
