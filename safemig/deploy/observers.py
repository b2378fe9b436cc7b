"""The engine observers that turn migration progress into what the deploy reports.

Production is applied verbosely, as the guide asks (``--verbose``): every statement with
its duration and rows affected, every lock-timeout retry with its delay and the sessions
that blocked it, every migration with its total. The observers hand these to the
pipeline's Reporter and gate; they print nothing themselves.

:class:`ProductionObserver` adds gate 5's lock safety: before a statement that will ask
for a lock stronger than ROW EXCLUSIVE on a relation that already exists, it reads prod's
``pg_locks`` / ``pg_stat_activity`` (on the :class:`~safemig.migrations.blockers.LockWatch`
connection, never the migrating one) and names the sessions holding a conflicting lock;
before the first ACCESS EXCLUSIVE it says that readers queue behind the waiting request
for up to ``lock_timeout`` per attempt. It keeps every attempt for the deploy record.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safemig.deploy.expectations import ACCESS_EXCLUSIVE, MODE_ORDER, expected_locks
from safemig.deploy.gates import GateContext, Reporter
from safemig.migrations.blockers import LockWatch, describe_all
from safemig.migrations.engine import Attempt, Migrator, Observer

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from safemig.deploy.settings import DeploySettings
    from safemig.migrations.files import Migration
    from safemig.sqlx_config import TableName

_ROW_EXCLUSIVE = MODE_ORDER.index("ROW EXCLUSIVE")
# First keywords of the statements that can lock a relation more strongly than ROW EXCLUSIVE
# (CREATE: an index, trigger, rule, policy, statistics, a table with a foreign key).
_MAY_LOCK_STRONGLY = frozenset(
    {"ALTER", "CREATE", "DROP", "TRUNCATE", "LOCK", "VACUUM", "ANALYZE", "ANALYSE", "CLUSTER", "REINDEX", "REFRESH",
     "COMMENT", "DO"}
)  # fmt: skip


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
        count = len(result.statements)
        self.gate.note(f"{self.env}: {self.phase} {label}: {count} statement(s) in {result.duration_ns / 1e6:.1f} ms")

    def retrying(self, migration, attempt, error, delay):
        self.retries += 1
        self.gate.warn(
            f"{self.env}: {migration.name} hit lock_timeout (attempt {attempt}: {error}); retrying in {delay:g}s"
        )


class ProductionObserver(ReportingObserver):
    """Gate 5's observer: names prod's blocking sessions before and during each strong lock, keeps every attempt.

    ``pid`` is the migrating backend (its own locks are not conflicts); ``lock_timeout``
    and ``lock_retries`` are the deploy's settings, quoted in the queueing warning.
    """

    def __init__(
        self,
        reporter: Reporter,
        env: str,
        gate: GateContext,
        *,
        watch: LockWatch,
        pid: int,
        lock_timeout: str,
        lock_retries: int,
        record: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(reporter, env, gate)
        self.record = record
        self.watch = watch
        self.pid = pid
        self.lock_timeout = lock_timeout
        self.lock_retries = lock_retries
        self.attempts: list[Attempt] = []
        self._created: set[str] = set()  # tables created by this deploy so far: nobody else uses them
        self._queue_warned = False
        self._error_noted = False
        self._named: set[tuple[int, int, str, frozenset[int]]] = set()
        self._held: dict[str, int] = {}  # table -> strongest mode this migration's transaction already holds

    def migration_started(self, migration, attempt):
        self._held = {}  # a new transaction (or, without one, nothing is kept between statements)

    def statement_started(self, migration, index, statement):
        words = statement.text.split(None, 1)
        if not words or words[0].upper() not in _MAY_LOCK_STRONGLY:
            return  # SELECT, INSERT, UPDATE, DELETE, SET ...: ROW EXCLUSIVE at most; skip the parse
        where = f"{migration.name} #{index} (line {statement.line})"
        for expected in expected_locks(statement.text, self._created):
            if expected.new_table or expected.table.startswith("(") or expected.mode not in MODE_ORDER:
                continue
            strength = MODE_ORDER.index(expected.mode)
            if strength <= _ROW_EXCLUSIVE or self._held.get(expected.table, -1) >= strength:
                continue  # weak, or already held by this very transaction: it cannot wait for it
            if not migration.no_transaction:  # held until the commit: later statements need not look again
                self._held[expected.table] = strength
            holders = self.watch.holders(expected.table, expected.mode, pid=self.pid)
            if expected.mode == ACCESS_EXCLUSIVE and not self._queue_warned:
                self._queue_warned = True
                attempts = self.lock_retries + 1
                # A caveat of every such deploy, not a finding: shown as a warning line, the verdict stays "passed".
                self.reporter.warning(
                    f"{self.env}: {where} asks for ACCESS EXCLUSIVE on {expected.table}: while it waits, every reader "
                    f"and writer of {expected.table} queues behind it, for up to lock_timeout ({self.lock_timeout}) "
                    f"per attempt, {attempts} attempt(s) at most"
                )
            key = (migration.version, index, expected.table, frozenset(h.pid for h in holders))
            if holders and key not in self._named:  # once per statement and set of holders, not per retry
                self._named.add(key)
                self.gate.warn(
                    f"{self.env}: {where} needs {expected.mode} on {expected.table}, which {len(holders)} session(s) "
                    f"hold a conflicting lock on (it waits up to lock_timeout {self.lock_timeout}): "
                    + describe_all(holders)
                )
        if self.watch.error and not self._error_noted:
            self._error_noted = True
            self.gate.warn(f"{self.env}: cannot inspect pg_locks from a second connection: {self.watch.error}")

    def attempt_finished(self, migration, attempt):
        self.attempts.append(attempt)
        if self.record is not None:
            self.record.append(attempt.as_dict())


def monotonic_deadline(window_end: datetime, *, now: datetime | None, started_at: datetime) -> float:
    """The window's end as a :func:`time.monotonic` deadline for :class:`ApplySettings`.

    ``now`` is the clock the window was judged by when the deploy started at ``started_at``
    (``DeployOptions.now``: a test's fixed clock; None for the real one); the time elapsed
    since is counted, so a fixed clock still gives the right time left at gate 5.
    """
    real_now = datetime.now(UTC)
    judged_now = now + (real_now - started_at) if now is not None else real_now
    return time.monotonic() + (window_end - judged_now).total_seconds()


@contextmanager
def production_migrator(
    conn: psycopg.Connection,
    url: str,
    migrations: Sequence[Migration],
    rollbacks_dir: Path,
    settings: DeploySettings,
    *,
    deadline: float | datetime | None,
    reporter: Reporter,
    env: str,
    gate: GateContext,
    attempts: list[dict[str, Any]] | None = None,
    table: TableName | None = None,
    create_schemas: tuple[str, ...] = (),
) -> Iterator[tuple[Migrator, ProductionObserver]]:
    """The Migrator gate 5 applies with, for the ``with`` block: prod's settings, ``deadline`` (the
    window's end: see :func:`monotonic_deadline`) for the retries, a :class:`LockWatch` on a second
    connection (closed at the end of the block) and a :class:`ProductionObserver`; every attempt is
    appended to ``attempts`` (the deploy record's list) as it ends.
    """
    with LockWatch(url) as watch:
        observer = ProductionObserver(
            reporter,
            env,
            gate,
            watch=watch,
            pid=conn.info.backend_pid,
            lock_timeout=settings.lock_timeout,
            lock_retries=settings.lock_retries,
            record=attempts,
        )
        migrator = Migrator(
            conn,
            list(migrations),
            rollbacks_dir=rollbacks_dir,
            settings=dataclasses.replace(settings.apply_settings, deadline=deadline),
            observer=observer,
            lock_watch=watch,
            table=table,  # sqlx.toml's table-name and create-schemas (config.sqlx)
            create_schemas=create_schemas,
        )
        yield migrator, observer
