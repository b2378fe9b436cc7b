"""Apply and revert migrations statement by statement, with the ledger row in the same transaction.

sqlx sends a whole file as one simple query. safemig splits it first
(:func:`safemig.sql.split.split_statements`) and runs one statement at a time on the
same transaction, which buys three things: an error names the statement and its line;
observers (``-v`` output, the deploy pipeline's lock inspection in ``pg_locks``) see
each statement while its transaction is still open; and a ``-- no-transaction`` file
with several ``CREATE INDEX CONCURRENTLY`` statements works (sqlx's single simple query
becomes an implicit transaction, which CONCURRENTLY refuses).

Guarantees:

* transactional migration: the statements and the ``_sqlx_migrations`` row commit
  together or not at all; a failure rolls back everything and writes no row;
* ``-- no-transaction`` migration: statements run in autocommit mode; if one fails,
  the error lists exactly which statements already ran (they cannot be undone) and no
  row is written;
* ``lock_timeout`` (SQLSTATE 55P03) is retried ``lock_retries`` times with exponential
  backoff: the whole migration when transactional, the failing statement otherwise. Every
  attempt (start, duration, outcome, the sessions that blocked it) is an :class:`Attempt`,
  reported to the observer (:meth:`Observer.attempt_finished`) and kept on the result; a
  :class:`~safemig.migrations.blockers.LockWatch` given to the Migrator names the blockers;
* ``ApplySettings.deadline`` (the maintenance window's end): no retry starts whose backoff
  plus ``lock_timeout`` could end after it, and no migration starts after it; the failure
  names the blockers and says the deadline stopped it;
* a ``CREATE INDEX CONCURRENTLY`` must end with a valid index: one that timed out leaves
  an INVALID index, which ``IF NOT EXISTS`` would silently accept on the next run, so the
  engine checks ``pg_index.indisvalid`` after it (and drops its own leftover before a retry).

The caller owns the connection and takes the advisory lock (:func:`safemig.db.advisory_lock`);
the :class:`Migrator` never takes it, because deploy holds it for a whole pipeline on the
same session. The Migrator puts the connection in autocommit mode and manages transactions
itself.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safemig.db import error_text, set_timeouts
from safemig.errors import CheckFailed, DatabaseError, LedgerError, MigrationFailed, MigrationFileError, UsageError
from safemig.migrations import ledger
from safemig.migrations.blockers import Blocker, LockWatch, describe_all
from safemig.migrations.files import NO_TRANSACTION_MARKER, Migration, display_path, find_rollback, read_sql
from safemig.sql.split import Statement, split_statements
from safemig.sqlx_config import TableName

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"
MAX_RETRY_DELAY = 60.0
_BEGIN = "BEGIN;\n"
_TRANSACTION_CONTROL = {"begin", "start", "commit", "end", "rollback", "abort"}
_CONCURRENT_INDEX = re.compile(
    r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>\"(?:[^\"]|\"\")+\"|[A-Za-z_][\w$]*)",
    re.IGNORECASE,
)


def concurrent_index_name(statement_text: str) -> str | None:
    """The index a ``CREATE INDEX CONCURRENTLY`` statement builds, as written (quotes kept)."""
    match = _CONCURRENT_INDEX.match(statement_text)
    return match.group("name") if match else None


class InvalidIndexError(Exception):
    """A ``CREATE INDEX CONCURRENTLY`` left (or found, and skipped with IF NOT EXISTS) an INVALID index."""

    sqlstate = None

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class ApplySettings:
    """Session timeouts and lock-timeout retries for applying migrations (``None``: leave as is).

    ``deadline`` is when the work must be over (the maintenance window's end): either a
    :func:`time.monotonic` value (what a caller that computed "seconds left" should pass:
    immune to clock changes) or a timezone-aware :class:`~datetime.datetime` (compared
    with the current UTC time). The engine starts no retry whose backoff plus
    ``lock_timeout`` could end after it, and no migration once it has passed; a statement
    already running is not interrupted (``statement_timeout`` bounds that).
    """

    lock_timeout: str | None = None
    statement_timeout: str | None = None
    lock_retries: int = 0
    retry_backoff: float = 1.0  # seconds before the first retry; doubles each time
    deadline: float | datetime | None = None

    def __post_init__(self) -> None:
        if isinstance(self.deadline, datetime) and self.deadline.tzinfo is None:
            raise ValueError("ApplySettings.deadline must be timezone-aware (or a time.monotonic() value)")

    def seconds_left(self) -> float | None:
        """Seconds until the deadline (negative once passed); None without one."""
        if self.deadline is None:
            return None
        if isinstance(self.deadline, datetime):
            return (self.deadline - datetime.now(UTC)).total_seconds()
        return self.deadline - time.monotonic()


@dataclass(frozen=True)
class Attempt:
    """One try of a migration (or, without a transaction, of its failing statement).

    ``outcome``: ``"ok"``, ``"lock_timeout"`` (55P03, retried unless it was the last) or
    ``"failed"`` (any other error). ``blockers`` are the sessions seen blocking its
    statements while they waited (a :class:`LockWatch` is needed to see them).
    """

    version: int
    number: int  # 1-based
    started_at: datetime  # UTC
    duration_s: float
    outcome: str
    statement: int | None = None  # the statement it ended at, when it failed
    line: int | None = None
    error: str | None = None
    blockers: tuple[Blocker, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "attempt": self.number,
            "started_at": self.started_at.isoformat(),
            "duration_ms": round(self.duration_s * 1000, 2),
            "outcome": self.outcome,
            "statement": self.statement,
            "line": self.line,
            "error": self.error,
            "blockers": [b.as_dict() for b in self.blockers],
        }


class LockTimeoutFailed(MigrationFailed):
    """A migration gave up on a lock (retries spent, or the deadline stops the next one).

    Carries every attempt and the sessions that blocked it, for the caller's record.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        attempts: list[Attempt] | None = None,
        blockers: list[Blocker] | None = None,
        deadline: bool = False,
    ) -> None:
        # (message, hint) alone must work: callers re-raise errors as type(exc)(prefixed message, hint)
        super().__init__(message, hint)
        self.attempts = attempts or []
        self.blockers = blockers or []
        self.deadline = deadline


@dataclass(frozen=True)
class StatementResult:
    """What one statement did: where it is, how long it took, what PostgreSQL answered."""

    index: int  # 1-based position in the file
    line: int
    text: str
    first_line: str
    duration_s: float
    rowcount: int | None  # rows affected, None when PostgreSQL reports none (DDL)
    status: str  # PostgreSQL's command tag: "CREATE TABLE", "INSERT 0 3"


@dataclass(frozen=True)
class AppliedMigration:
    """One migration applied (or reverted, or rehearsed): its statements and total time."""

    version: int
    description: str
    duration_ns: int
    statements: list[StatementResult] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)  # every try, the successful last one included


class Observer:
    """Hooks called while migrating; every method is a no-op here, override what you need.

    ``statement_finished`` runs on the migration's own connection right after the
    statement, inside its transaction when the migration is transactional, so an
    observer can inspect ``pg_locks`` while the locks are still held.
    """

    def migration_started(self, migration: Migration, attempt: int) -> None:
        pass

    def statement_started(self, migration: Migration, index: int, statement: Statement) -> None:
        pass

    def statement_finished(self, conn: psycopg.Connection, migration: Migration, result: StatementResult) -> None:
        pass

    def migration_finished(self, migration: Migration, result: AppliedMigration) -> None:
        pass

    def retrying(self, migration: Migration, attempt: int, error: str, delay: float) -> None:
        """Attempt ``attempt`` hit lock_timeout; the next starts after ``delay`` s (``error`` names the blockers)."""

    def attempt_finished(self, migration: Migration, attempt: Attempt) -> None:
        """An attempt ended (before :meth:`retrying` or the failure is raised, or after the last statement)."""


def rollback_file_name(migration_file_name: str) -> str:
    """The guide's rollback name: ``004_create_read_models.sql`` -> ``004_rollback_read_models.sql``."""
    prefix, _, rest = migration_file_name.partition("_")
    rest = rest.removesuffix(".up.sql").removesuffix(".sql")
    if rest.startswith("create_") and len(rest) > len("create_"):
        rest = rest[len("create_") :]
    return f"{prefix}_rollback_{rest}.sql"


def no_rollback_error(migration: Migration, rollbacks_dir: Path) -> CheckFailed:
    """The refusal for reverting a migration that has neither a .down.sql nor a rollbacks/ script."""
    return CheckFailed(
        f"{display_path(migration.path)}: version {migration.version} has no rollback script",
        hint=(
            f"write {display_path(rollbacks_dir / rollback_file_name(migration.path.name))} "
            "(or a .down.sql next to an .up.sql) that undoes it"
        ),
    )


def parse(sql: str, label: str, *, no_transaction: bool) -> list[Statement]:
    """The statements of a script; refuse (exit 2) unterminated input and, in a transactional
    script, transaction control statements that would commit half a migration."""
    statements = split_statements(sql)
    for st in statements:
        if st.unterminated:
            raise MigrationFileError(
                f"{label}:{st.line}: {st.unterminated}", hint="close the string, comment or dollar quote"
            )
        words = st.text.split(None, 2)
        keyword = words[0].lower().rstrip(";") if words else ""
        follower = words[1].lower() if len(words) > 1 else ""
        if not no_transaction and keyword in _TRANSACTION_CONTROL and not (keyword == "rollback" and follower == "to"):
            raise MigrationFileError(
                f"{label}:{st.line}: transaction control statement `{st.first_line}` in a transactional migration",
                hint="remove it: safemig (like sqlx) runs the file in one transaction; "
                f"or make `{NO_TRANSACTION_MARKER}` the first line",
            )
    return statements


class _StatementError(Exception):
    """A statement failed; carries what is needed to decide on a retry and to explain."""

    def __init__(
        self, index: int, statement: Statement, exc: Exception, done: list[StatementResult], position_shift: int = 0
    ) -> None:
        super().__init__(str(exc))
        self.index, self.statement, self.exc, self.done = index, statement, exc, done
        self.sqlstate = getattr(exc, "sqlstate", None)
        self.position_shift = position_shift  # characters sent before the statement in the same query


class Migrator:
    """Apply, revert and rehearse migrations on one connection the caller owns (and has locked)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        migrations: list[Migration],
        *,
        rollbacks_dir: Path,
        settings: ApplySettings = ApplySettings(),
        observer: Observer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        table: TableName | ledger.Ledger | None = None,
        create_schemas: tuple[str, ...] = (),
        ignore_missing: bool = False,
        lock_watch: LockWatch | None = None,
    ) -> None:
        """``lock_watch`` (a second connection to the same database) names the sessions a
        statement waits for; without one, attempts and errors carry no blockers."""
        from psycopg import pq

        if not conn.autocommit:
            if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                raise RuntimeError(
                    "Migrator needs a connection without an open transaction (commit or roll back first)"
                )
            conn.autocommit = True
        self.conn = conn
        self.migrations = sorted(migrations, key=lambda m: m.version)
        self.rollbacks_dir = Path(rollbacks_dir)
        self.settings = settings
        self.observer = observer or Observer()
        self._sleep = sleep
        self.lock_watch = lock_watch
        self.lock_timeout_s = 0.0  # the session's, read from the server once prepared
        self._prepared = False
        self._ledger_ready = False
        self._table = table
        self._ledger: ledger.Ledger | None = None
        self.create_schemas = tuple(create_schemas)
        self.ignore_missing = ignore_missing
        self._blockers: dict[int, Blocker] = {}  # seen during the current attempt
        self._attempts: list[Attempt] = []  # of the migration being run

    # -- ledger ----------------------------------------------------------------------
    @property
    def ledger_table(self) -> ledger.Ledger:
        """The one ledger table this session reads and writes (resolved once, schema-qualified)."""
        if self._ledger is None:
            self._ledger = self._db(lambda: ledger.resolve(self.conn, self._table), "find the ledger table")
        return self._ledger

    def rows(self) -> dict[int, ledger.AppliedRow]:
        """The ledger's rows (empty when the table does not exist yet)."""
        return self._db(lambda: ledger.applied_rows(self.conn, self.ledger_table), f"read {self.ledger_table}")

    def states(self) -> list[ledger.MigrationState]:
        """Every version with its state (see :mod:`safemig.migrations.ledger`)."""
        return ledger.states(self.migrations, self.rows())

    def check(self, allow_out_of_order: bool = False) -> list[Migration]:
        """The pending migrations in order; LedgerError (exit 1) when the ledger disagrees."""
        return ledger.check(
            self.migrations, self.rows(), allow_out_of_order=allow_out_of_order, ignore_missing=self.ignore_missing
        )

    def plan(self, target_version: int | None = None, allow_out_of_order: bool = False) -> list[Migration]:
        """What :meth:`run` would apply, checked like sqlx checks ``--target-version``."""
        rows = self.rows()
        pending = ledger.check(
            self.migrations, rows, allow_out_of_order=allow_out_of_order, ignore_missing=self.ignore_missing
        )
        if target_version is None:
            return pending
        if target_version not in {m.version for m in self.migrations}:
            raise UsageError(
                f"--target-version {target_version} is not a migration in the source directory",
                hint="pick a version listed by `safemig migrate info`",
            )
        newest = max((v for v, r in rows.items() if r.success), default=0)
        if target_version < newest:
            raise UsageError(
                f"--target-version {target_version} is older than the newest applied version {newest}",
                hint="use `safemig migrate revert --target-version` to go back",
            )
        return [m for m in pending if m.version <= target_version]

    # -- applying --------------------------------------------------------------------
    def run(self, target_version: int | None = None, allow_out_of_order: bool = False) -> list[AppliedMigration]:
        """Apply every pending migration (up to ``target_version``) in version order."""
        return [self.apply(m) for m in self.plan(target_version, allow_out_of_order)]

    def apply(self, migration: Migration) -> AppliedMigration:
        """Apply one migration and record it in ``_sqlx_migrations`` in the same transaction."""
        label = display_path(migration.path)
        statements = parse(migration.sql, label, no_transaction=migration.no_transaction)
        self._prepare()
        self.ensure_ledger()
        return self._execute(
            migration,
            statements,
            label=label,
            no_transaction=migration.no_transaction,
            bookkeeping=lambda duration_ns: ledger.insert_sql(migration, duration_ns, self.ledger_table),
            action="apply",
        )

    def revert(self, migration: Migration) -> AppliedMigration:
        """Run the migration's ``.down.sql`` or ``rollbacks/`` script and delete its ledger row with it."""
        script = find_rollback(migration, self.rollbacks_dir)
        if script is None:
            raise no_rollback_error(migration, self.rollbacks_dir)
        if migration.version not in self.rows():
            raise LedgerError(
                f"version {migration.version} ({migration.description}) is not applied; nothing to revert",
                hint="`safemig migrate info` shows what is applied",
            )
        _, sql = read_sql(script)
        label = display_path(script)
        no_transaction = sql.startswith(NO_TRANSACTION_MARKER)
        statements = parse(sql, label, no_transaction=no_transaction)
        self._prepare()
        return self._execute(
            migration,
            statements,
            label=label,
            no_transaction=no_transaction,
            bookkeeping=lambda _ns: ledger.delete_sql(migration.version, self.ledger_table),
            action="revert",
        )

    def execute_sql(
        self, sql: str, *, no_transaction: bool, label: str, migration: Migration | None = None
    ) -> list[StatementResult]:
        """Run ``sql`` statement by statement without touching the ledger (rehearsals on staging).

        Same timeouts, retries and observer as :meth:`apply`; observers receive
        ``migration``, or a stand-in named ``label`` with version 0 when none is given.
        """
        statements = parse(sql, label, no_transaction=no_transaction)
        subject = migration or Migration(
            version=0,
            description=label,
            path=Path(label),
            sql=sql,
            checksum=hashlib.sha384(sql.encode("utf-8")).digest(),
            no_transaction=no_transaction,
        )
        self._prepare()
        result = self._execute(
            subject, statements, label=label, no_transaction=no_transaction, bookkeeping=None, action="run"
        )
        return result.statements

    def ensure_ledger(self) -> None:
        """sqlx's order: ``create-schemas`` first, then the ledger table (both idempotent), once."""
        if not self._ledger_ready:

            def create() -> None:
                ledger.create_schemas(self.conn, self.create_schemas)
                ledger.ensure_table(self.conn, self.ledger_table)

            self._db(create, f"create {self._table or ledger.TABLE}")
            self._ledger_ready = True

    # -- internals -------------------------------------------------------------------
    def _prepare(self) -> None:
        if not self._prepared:
            set_timeouts(self.conn, self.settings.lock_timeout, self.settings.statement_timeout)
            row = self._db(
                lambda: self.conn.execute(
                    "SELECT setting::float8 / 1000 FROM pg_settings WHERE name = 'lock_timeout'", prepare=False
                ).fetchone(),
                "read lock_timeout",
            )
            self.lock_timeout_s = float(row[0]) if row else 0.0
            self._prepared = True

    def _db(self, fn, what: str):
        import psycopg

        try:
            return fn()
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot {what}: {error_text(exc)}") from None

    def _delay(self, attempt: int) -> float:
        return min(self.settings.retry_backoff * 2 ** (attempt - 1), MAX_RETRY_DELAY)

    def _execute(
        self,
        migration: Migration,
        statements: list[Statement],
        *,
        label: str,
        no_transaction: bool,
        bookkeeping: Callable[[int], psycopg.sql.Composable] | None,
        action: str,
    ) -> AppliedMigration:
        """Run the statements, then ``bookkeeping(duration_ns)`` (the ledger write) in the same transaction."""
        left = self.settings.seconds_left()
        if left is not None and left <= 0:
            raise MigrationFailed(
                f"{label}: not starting the {action} of version {migration.version}: the deadline "
                f"(the maintenance window's end) passed {-left:.1f}s ago",
                hint="nothing of it ran; run it in the next window",
            )
        self._attempts = []
        run = self._run_autocommit if no_transaction else self._run_transaction
        results, duration_ns = run(migration, statements, label, bookkeeping, action)
        applied = AppliedMigration(migration.version, migration.description, duration_ns, results, self._attempts)
        self.observer.migration_finished(migration, applied)
        return applied

    def _begin_attempt(self) -> tuple[datetime, float]:
        self._blockers = {}
        return datetime.now(UTC), time.perf_counter()

    def _end_attempt(
        self, migration: Migration, started: tuple[datetime, float], outcome: str, err: Exception | None = None
    ) -> Attempt:
        at, began = started
        statement = err.index if isinstance(err, _StatementError) else None
        line = err.statement.line if isinstance(err, _StatementError) else None
        error = _pg_error(err.exc if isinstance(err, _StatementError) else err) if err is not None else None
        attempt = Attempt(
            version=migration.version,
            number=len(self._attempts) + 1,
            started_at=at,
            duration_s=time.perf_counter() - began,
            outcome=outcome,
            statement=statement,
            line=line,
            error=error,
            blockers=tuple(self._blockers.values()),
        )
        self._attempts.append(attempt)
        self.observer.attempt_finished(migration, attempt)
        return attempt

    def _run_transaction(self, migration, statements, label, bookkeeping, action):
        """BEGIN, the statements, then the ledger write and COMMIT in one round trip (as psql would)."""
        import psycopg
        from psycopg import pq
        from psycopg import sql as pgsql

        conn = self.conn
        attempt = 1
        while True:
            self.observer.migration_started(migration, attempt)
            started = self._begin_attempt()
            start = time.perf_counter_ns()
            stage = "begin"
            try:
                if statements:  # BEGIN travels with the first statement: one round trip fewer
                    stage = "statement"
                    results = self._statements(migration, statements, 0, [], prefix=_BEGIN)
                else:
                    conn.execute("BEGIN", prepare=False)
                    stage = "statement"
                    results = []
                duration_ns = time.perf_counter_ns() - start
                stage = "ledger"
                if bookkeeping is not None:
                    conn.execute(pgsql.SQL("{}; COMMIT").format(bookkeeping(duration_ns)), prepare=False)
                else:
                    conn.execute("COMMIT", prepare=False)
                self._end_attempt(migration, started, "ok")
                return results, duration_ns
            except BaseException as exc:
                # COMMIT that fails ends the transaction itself; anything before it leaves it open.
                committed_or_gone = conn.info.transaction_status == pq.TransactionStatus.IDLE
                self._rollback()
                if isinstance(exc, _StatementError):
                    locked = exc.sqlstate == LOCK_NOT_AVAILABLE
                    self._end_attempt(migration, started, "lock_timeout" if locked else "failed", exc)
                    if locked and attempt <= self.settings.lock_retries:
                        stop = self._retry(migration, attempt, exc)
                        if stop is None:
                            attempt += 1
                            continue
                        raise self._failure(migration, label, exc, action, transactional=True, stopped=stop) from None
                    raise self._failure(migration, label, exc, action, transactional=True) from None
                if not isinstance(exc, psycopg.Error):
                    raise
                self._end_attempt(migration, started, "failed", exc)
                self._raise_if_broken(exc, migration, action, [])
                at_commit = stage == "ledger" and (committed_or_gone or bookkeeping is None)
                where = {"begin": "BEGIN", "ledger": "writing its _sqlx_migrations row"}.get(stage, stage)
                at = "COMMIT" if at_commit else where
                raise MigrationFailed(
                    f"{label}: {action} of version {migration.version} failed at {at}: {_pg_error(exc)}",
                    hint="nothing was applied: the transaction was rolled back and the ledger is unchanged"
                    + (" (a deferred constraint fails at COMMIT)" if at_commit else ""),
                ) from None

    def _rollback(self) -> None:
        """End a transaction left open or failed; a dead connection is reported by the caller."""
        import psycopg
        from psycopg import pq

        conn = self.conn
        if conn.closed or conn.broken:
            return
        if conn.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
            try:
                conn.execute("ROLLBACK", prepare=False)
            except psycopg.Error:  # pragma: no cover - the connection died under us
                pass

    def _run_autocommit(self, migration, statements, label, bookkeeping, action):
        import psycopg

        self.observer.migration_started(migration, 1)
        start = time.perf_counter_ns()
        results: list[StatementResult] = []
        position, attempt = 0, 1
        leftover: str | None = None  # an INVALID index the last attempt left, dropped before retrying
        while position < len(statements):
            started = self._begin_attempt()
            try:
                if leftover is not None:
                    self._drop_invalid_index(migration, position + 1, statements[position], results, leftover)
                    leftover = None
                results = self._statements(migration, statements, position, results, check_indexes=True)
                position = len(statements)
                self._end_attempt(migration, started, "ok")
            except _StatementError as err:
                self._rollback()  # a BEGIN of the file's own is dead after a failure
                results, position = err.done, err.index - 1
                locked = err.sqlstate == LOCK_NOT_AVAILABLE
                self._end_attempt(migration, started, "lock_timeout" if locked else "failed", err)
                if locked and attempt <= self.settings.lock_retries:
                    name = concurrent_index_name(err.statement.text)
                    if name and self._index_is_invalid(name):
                        leftover = name
                    stop = self._retry(migration, attempt, err)
                    if stop is None:
                        attempt += 1
                        continue
                    raise self._failure(migration, label, err, action, transactional=False, stopped=stop) from None
                raise self._failure(migration, label, err, action, transactional=False) from None
        duration_ns = time.perf_counter_ns() - start
        if bookkeeping is not None:
            try:
                self.conn.execute(bookkeeping(duration_ns), prepare=False)
            except psycopg.Error as exc:
                self._raise_if_broken(exc, migration, action, results)
                raise MigrationFailed(
                    f"{label}: version {migration.version} ran all {len(results)} statements but its "
                    f"{self.ledger_table} row could not be written: {_pg_error(exc)}",
                    hint="the statements ran (no transaction); record it with "
                    f"`safemig migrate mark-applied {migration.version}`",
                ) from None
        return results, duration_ns

    def _drop_invalid_index(self, migration, index, statement, done, name) -> None:
        """DROP INDEX CONCURRENTLY the INVALID index a timed-out attempt left; a failure counts as the attempt's."""
        import psycopg

        try:
            self.conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        except psycopg.Error as exc:
            raise _StatementError(index, statement, exc, done) from None

    def _statements(self, migration, statements, position, done, *, check_indexes=False, prefix=""):
        """Run ``statements[position:]``; a failure raises _StatementError with what already ran.

        ``prefix`` (``BEGIN;``) is sent in the same simple query as the first statement.
        With ``check_indexes`` (autocommit mode), a ``CREATE INDEX CONCURRENTLY`` must leave a
        valid index: ``IF NOT EXISTS`` silently skips an INVALID one left by an earlier failure.
        """
        import psycopg

        conn, observer = self.conn, self.observer
        results = list(done)
        for offset, statement in enumerate(statements[position:], start=position + 1):
            observer.statement_started(migration, offset, statement)
            watch = self.lock_watch
            if watch is not None:
                watch.start(conn.info.backend_pid, self.lock_timeout_s)
            began = time.perf_counter()
            try:
                cur = conn.execute(prefix + statement.text, prepare=False)
                if prefix:
                    cur.nextset()  # the statement's result, after the prefix's
            except psycopg.Error as exc:
                raise _StatementError(offset, statement, exc, results, position_shift=len(prefix)) from None
            finally:
                if watch is not None:
                    for blocker in watch.stop():
                        self._blockers.setdefault(blocker.pid, blocker)
            prefix = ""
            elapsed = time.perf_counter() - began
            result = StatementResult(
                index=offset,
                line=statement.line,
                text=statement.text,
                first_line=statement.first_line,
                duration_s=elapsed,
                rowcount=cur.rowcount if cur.rowcount >= 0 else None,
                status=cur.statusmessage or "",
            )
            if check_indexes:
                name = concurrent_index_name(statement.text)
                if name and self._index_is_invalid(name):
                    error = InvalidIndexError(
                        name,
                        f"index {name} exists but is INVALID (left by an earlier failed CREATE INDEX CONCURRENTLY)",
                    )
                    raise _StatementError(offset, statement, error, results)
            results.append(result)
            observer.statement_finished(conn, migration, result)
        return results

    def _index_is_invalid_quietly(self, name: str) -> bool:
        """Like :meth:`_index_is_invalid`, for error messages: a failing check is just "don't know"."""
        import psycopg

        try:
            return self._index_is_invalid(name)
        except psycopg.Error:
            return False

    def _index_is_invalid(self, name: str) -> bool:
        row = self.conn.execute(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (name,)
        ).fetchone()
        return bool(row and row[0])

    def _retry(self, migration: Migration, attempt: int, err: _StatementError) -> str | None:
        """Wait before retry ``attempt + 1``; or, when it could end after the deadline, say why not (no wait)."""
        delay = self._delay(attempt)
        left = self.settings.seconds_left()
        if left is not None and delay + self.lock_timeout_s > left:
            return (
                f"stopped before retry {attempt} of {self.settings.lock_retries}: its backoff ({delay:g}s) plus "
                f"lock_timeout ({self.lock_timeout_s:g}s) would end after the deadline (the maintenance window's end, "
                f"{max(left, 0.0):.1f}s away)"
            )
        error = _pg_error(err.exc)
        if self._blockers:
            error += f"; blocked by {describe_all(list(self._blockers.values()))}"
        self.observer.retrying(migration, attempt, error, delay)
        self._sleep(delay)
        return None

    def _raise_if_broken(self, exc: Exception, migration: Migration, action: str, done: list[StatementResult]) -> None:
        if self.conn.closed or self.conn.broken:
            ran = f"; statements already run: {_list(done)}" if done else ""
            raise DatabaseError(
                f"lost the connection during {action} of version {migration.version}: {error_text(exc)}{ran}",
                hint="PostgreSQL rolled back the open transaction; check the server, then `safemig migrate info`",
            ) from None

    def _failure(
        self,
        migration: Migration,
        label: str,
        err: _StatementError,
        action: str,
        *,
        transactional: bool,
        stopped: str | None = None,
    ) -> Exception:
        self._raise_if_broken(err.exc, migration, action, err.done)
        st, exc = err.statement, err.exc
        line = st.line
        diag = getattr(exc, "diag", None)
        position = getattr(diag, "statement_position", None) if diag is not None else None
        if position and str(position).isdigit() and int(position) > err.position_shift:
            line += st.text[: int(position) - 1 - err.position_shift].count("\n")
        message = (
            f"{label}:{line}: {action} of version {migration.version} failed at statement {err.index} "
            f"`{_clip(st.first_line)}`: {_pg_error(exc)}"
        )
        locked = err.sqlstate == LOCK_NOT_AVAILABLE
        blockers = list({b.pid: b for a in self._attempts for b in a.blockers}.values()) if locked else []
        if blockers:
            message += f"; blocked by {describe_all(blockers)}"
        hints = []
        pg_hint = getattr(diag, "message_hint", None) if diag is not None else None
        if pg_hint:
            hints.append(f"PostgreSQL says: {pg_hint}")
        if locked:
            tries = len(self._attempts)
            hints.append(
                f"lock_timeout ({self.settings.lock_timeout or 'session default'}) expired after {tries} attempt(s)"
                + (f"; {stopped}" if stopped else "")
                + (
                    ": end or wait for the blocking session(s) named above "
                    "(pg_terminate_backend(pid) ends one), then run again"
                    if blockers
                    else ": another session holds a conflicting lock (see pg_stat_activity and pg_locks)"
                )
            )
        elif err.sqlstate == QUERY_CANCELED:
            hints.append(
                f"statement_timeout ({self.settings.statement_timeout or 'session default'}) "
                "expired or the statement was cancelled"
            )
        index = None if transactional else concurrent_index_name(st.text)
        if index and (isinstance(exc, InvalidIndexError) or self._index_is_invalid_quietly(index)):
            hints.append(f"drop the INVALID index it left: DROP INDEX CONCURRENTLY IF EXISTS {index}; then run again")
        if transactional:
            ledger_note = "the ledger is unchanged" if action != "run" else "nothing was kept"
            hints.append(f"nothing was applied: the transaction was rolled back and {ledger_note}")
        elif err.done:
            hints.append(
                f"no transaction: statements {_list(err.done)} already ran and cannot be undone; "
                "no _sqlx_migrations row was written, so make them safe to re-run (IF NOT EXISTS) before running again"
            )
        else:
            hints.append("no statement of it ran; no _sqlx_migrations row was written")
        if locked:
            return LockTimeoutFailed(
                message,
                "; ".join(hints),
                attempts=list(self._attempts),
                blockers=blockers,
                deadline=stopped is not None,
            )
        return MigrationFailed(message, hint="; ".join(hints))


def _pg_error(exc: Exception) -> str:
    """``SQLSTATE message (detail: ...)`` from a psycopg error, redacted, on one line."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    detail = getattr(diag, "message_detail", None) if diag is not None else None
    sqlstate = getattr(exc, "sqlstate", None)
    text = primary or error_text(exc)
    out = f"{sqlstate} {text}" if sqlstate else text
    if detail:
        out += f" (detail: {detail})"
    return " ".join(error_text(Exception(out)).split())


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _list(done: list[StatementResult]) -> str:
    return ", ".join(f"{r.index} (line {r.line})" for r in done)
