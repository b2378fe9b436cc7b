"""Which locks each statement of a migration takes, recorded while it runs on staging.

A migration that takes ACCESS EXCLUSIVE on a large table blocks every read and write of
it until the migration commits; the rehearsal on staging is where to see that before
production does. Two ways of looking, depending on how the migration runs:

* in a transaction (the default): right after each statement, on the migration's own
  connection and inside its transaction, ``pg_locks`` for ``pg_backend_pid()`` shows
  every lock held so far; the ones not seen after the previous statement are this
  statement's. Exact: a transaction keeps its locks until it ends, so none is missed.
  All of them are *held until the migration commits*, which the summary says.
* ``-- no-transaction`` (autocommit): a statement's locks are gone when it returns, so a
  second connection samples ``pg_locks`` for the migration's backend pid every
  :data:`SAMPLE_INTERVAL_S` while the statement runs. A statement shorter than the
  interval may show no locks, and a lock taken and released between two samples is
  missed; what is shown was really held. Each entry says which method produced it.

Sizes come from ``pg_class`` estimates (``reltuples``, ``relpages``): reading them takes
no lock, so the sampler can never queue behind the migration it watches.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from safemig.migrations.blockers import pg_lock_name
from safemig.migrations.engine import Observer

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

SAMPLE_INTERVAL_S = 0.01
LARGE_TABLE_ROWS = 100_000
LARGE_TABLE_BYTES = 100 * 1024 * 1024

# Weakest to strongest, as PostgreSQL's lock table lists them.
LOCK_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)

_LOCKS_SQL = """
SELECT l.relation::bigint, l.mode, l.granted, n.nspname, c.relname, c.relkind::text,
       c.reltuples::bigint, c.relpages::bigint * current_setting('block_size')::bigint
FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = %s AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def sql_mode(mode: str) -> str:
    """``AccessExclusiveLock`` -> ``ACCESS EXCLUSIVE`` (how LOCK TABLE and the docs spell it)."""
    words: list[str] = []
    for ch in mode.removesuffix("Lock"):
        if ch.isupper() and words:
            words.append(" ")
        words.append(ch.upper())
    return "".join(words)


def strength(mode: str) -> int:
    return LOCK_MODES.index(mode) if mode in LOCK_MODES else -1


@dataclass(frozen=True)
class HeldLock:
    """One relation-level lock of the migration's session."""

    relation: str  # schema.name, or "oid 12345 (dropped)"
    mode: str  # PostgreSQL's name, e.g. AccessExclusiveLock
    granted: bool
    kind: str | None = None  # relkind: r table, i index, S sequence, v view ...
    rows: int | None = None
    bytes: int | None = None

    @property
    def large(self) -> bool:
        return (self.rows or 0) >= LARGE_TABLE_ROWS or (self.bytes or 0) >= LARGE_TABLE_BYTES


def query_locks(conn: psycopg.Connection, pid: int) -> list[HeldLock]:
    """Relation locks of backend ``pid`` in the current database, system catalogs left out."""
    found = []
    for relation, mode, granted, schema, name, kind, rows, size in conn.execute(_LOCKS_SQL, (pid,), prepare=False):
        if schema in _SYSTEM_SCHEMAS:
            continue
        label = f"{schema}.{name}" if name else f"oid {relation} (dropped)"
        found.append(HeldLock(label, mode, bool(granted), kind, max(rows, 0) if rows is not None else None, size))
    return found


_RELATION_SQL = """
SELECT n.nspname, c.relname, c.relkind::text, c.reltuples::bigint,
       c.relpages::bigint * current_setting('block_size')::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""


pg_mode = pg_lock_name  # ``SHARE UPDATE EXCLUSIVE`` -> ``ShareUpdateExclusiveLock`` (the inverse of sql_mode)


def predicted_locks(conn: psycopg.Connection, statement: str) -> list[HeldLock]:
    """The lock PostgreSQL documents for ``statement``'s kind, on the relation it names.

    Used only for a ``-- no-transaction`` statement that ran entirely between two samples
    (a ``CREATE INDEX CONCURRENTLY`` on a small staging table takes a few milliseconds), so
    the report still says which lock prod will see; the entry's method says it was predicted.
    """
    import psycopg

    from safemig.deploy.expectations import expected_locks

    found = []
    try:
        for expected in expected_locks(statement):
            mode = pg_mode(expected.mode)
            if mode not in LOCK_MODES:
                continue
            row = conn.execute(_RELATION_SQL, (expected.table,), prepare=False).fetchone()
            if row is None or row[0] in _SYSTEM_SCHEMAS:
                continue
            schema, name, kind, rows, size = row
            found.append(
                HeldLock(f"{schema}.{name}", mode, True, kind, max(rows, 0) if rows is not None else None, size)
            )
    except psycopg.Error:
        return []
    return found


@dataclass
class StatementLocks:
    """The locks one statement took, with how long it ran."""

    version: int
    migration: str
    index: int
    line: int
    first_line: str
    duration_s: float
    rowcount: int | None
    locks: list[HeldLock] = field(default_factory=list)
    method: str = "in-transaction"
    held_until_commit: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "migration": self.migration,
            "statement": self.index,
            "line": self.line,
            "first_line": self.first_line,
            "duration_ms": round(self.duration_s * 1000, 2),
            "rows": self.rowcount,
            "method": self.method,
            "held_until_commit": self.held_until_commit,
            "locks": [
                {
                    "relation": lk.relation,
                    "mode": sql_mode(lk.mode),
                    "granted": lk.granted,
                    "rows_estimate": lk.rows,
                    "bytes_estimate": lk.bytes,
                }
                for lk in self.locks
            ],
        }


class _Sampler:
    """Polls ``pg_locks`` for one backend from its own connection until stopped."""

    def __init__(self, url: str, pid: int) -> None:
        from safemig import db

        self._conn = db.connect(url, autocommit=True, application_name="safemig lock sampler")
        self._pid = pid
        self._seen: dict[tuple[str, str], HeldLock] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._seen.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="safemig-lock-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                for lock in query_locks(self._conn, self._pid):
                    self._seen.setdefault((lock.relation, lock.mode), lock)
            except Exception as exc:  # the sampler must never break the migration it watches
                from safemig.db import error_text

                self.error = error_text(exc)
                return
            if self._stop.wait(SAMPLE_INTERVAL_S):
                return

    def stop(self) -> list[HeldLock]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return list(self._seen.values())

    def close(self) -> None:
        self._stop.set()
        self._conn.close()


class LockRecorder(Observer):
    """An engine :class:`Observer` that records each statement's locks and duration.

    ``pid`` is the backend of the connection the Migrator runs on; ``sample_url`` is the
    URL a second connection uses to sample ``-- no-transaction`` statements. ``forward``
    receives every observer call too (the terminal reporter).
    """

    def __init__(self, pid: int, sample_url: str, forward: Observer | None = None) -> None:
        self.pid = pid
        self.sample_url = sample_url
        self.forward = forward or Observer()
        self.statements: list[StatementLocks] = []
        self.notes: list[str] = []
        self._seen_in_tx: set[tuple[str, str]] = set()
        self._sampler: _Sampler | None = None
        self._sampling = False

    # -- Observer ---------------------------------------------------------------------
    def migration_started(self, migration, attempt):
        self._seen_in_tx = set()
        self.forward.migration_started(migration, attempt)

    def statement_started(self, migration, index, statement):
        if migration.no_transaction:
            if self._sampler is None:
                self._sampler = _Sampler(self.sample_url, self.pid)
            self._sampler.start()
            self._sampling = True
        self.forward.statement_started(migration, index, statement)

    def statement_finished(self, conn, migration, result):
        if self._sampling and self._sampler is not None:
            locks = self._sampler.stop()
            self._sampling = False
            if self._sampler.error:
                self.notes.append(f"lock sampling failed for {migration.name}: {self._sampler.error}")
            method = f"sampled every {SAMPLE_INTERVAL_S * 1000:g} ms"
            if not locks:  # finished between two samples: fall back to the documented lock of its kind
                locks = predicted_locks(conn, result.text)
                method = "predicted from the statement (it finished between two samples)" if locks else method
            entry = self._entry(migration, result, locks, method=method, held=False)
        else:
            entry = self._entry(
                migration, result, self._new_locks_in_transaction(conn), method="in-transaction", held=True
            )
        self.statements.append(entry)
        self.forward.statement_finished(conn, migration, result)

    def migration_finished(self, migration, result):
        self.forward.migration_finished(migration, result)

    def retrying(self, migration, attempt, error, delay):
        if self._sampling and self._sampler is not None:  # the statement failed: stop watching it
            self._sampler.stop()
            self._sampling = False
        if not migration.no_transaction:
            # The failed attempt was rolled back as a whole; keep only what the next attempt does.
            # (Without a transaction only the failing statement is retried; what ran before stays.)
            self.statements = [s for s in self.statements if s.version != migration.version]
        self.forward.retrying(migration, attempt, error, delay)

    def attempt_finished(self, migration, attempt):
        self.forward.attempt_finished(migration, attempt)

    # -- helpers ----------------------------------------------------------------------
    def _new_locks_in_transaction(self, conn) -> list[HeldLock]:
        import psycopg
        from psycopg import pq

        status = conn.info.transaction_status
        if status not in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.IDLE):
            return []
        try:
            if status == pq.TransactionStatus.INTRANS:
                with conn.transaction():  # a savepoint: a failure here cannot abort the migration
                    locks = query_locks(conn, conn.info.backend_pid)
            else:
                locks = query_locks(conn, conn.info.backend_pid)
        except psycopg.Error as exc:
            from safemig.db import error_text

            self.notes.append(f"could not read pg_locks: {error_text(exc)}")
            return []
        fresh = [lk for lk in locks if (lk.relation, lk.mode) not in self._seen_in_tx]
        self._seen_in_tx.update((lk.relation, lk.mode) for lk in locks)
        return fresh

    @staticmethod
    def _entry(migration, result, locks, *, method, held) -> StatementLocks:
        return StatementLocks(
            version=migration.version,
            migration=migration.name,
            index=result.index,
            line=result.line,
            first_line=result.first_line,
            duration_s=result.duration_s,
            rowcount=result.rowcount,
            locks=sorted(locks, key=lambda lk: (-strength(lk.mode), lk.relation)),
            method=method,
            held_until_commit=held,
        )

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None


def strongest_per_relation(statements: list[StatementLocks]) -> list[dict[str, Any]]:
    """Roll-up for the summary: per migration and relation, the strongest lock and how long it was held.

    In a transaction a lock is held from its statement until the migration commits, so
    the time is the sum of that statement's and every later statement's durations.
    """
    rollup: dict[tuple[int, str], dict[str, Any]] = {}
    by_version: dict[int, list[StatementLocks]] = {}
    for st in statements:
        by_version.setdefault(st.version, []).append(st)
    for version, sts in by_version.items():
        for i, st in enumerate(sts):
            held_s = sum(s.duration_s for s in sts[i:]) if st.held_until_commit else st.duration_s
            for lk in st.locks:
                key = (version, lk.relation)
                current = rollup.get(key)
                if current is None or strength(lk.mode) > strength(current["_mode"]):
                    rollup[key] = {
                        "version": version,
                        "migration": st.migration,
                        "relation": lk.relation,
                        "mode": sql_mode(lk.mode),
                        "_mode": lk.mode,
                        "first_taken_at_line": st.line,
                        "held_ms": round(held_s * 1000, 2),
                        "rows_estimate": lk.rows,
                        "large": lk.large,
                        "method": st.method,  # in-transaction, sampled, or predicted (too quick to sample)
                    }
    out = sorted(rollup.values(), key=lambda r: (r["version"], -strength(r["_mode"]), r["relation"]))
    for row in out:
        del row["_mode"]
    return out
