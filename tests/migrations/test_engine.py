"""The Migrator on real PostgreSQL: atomic apply, no-transaction files, retries, revert, rehearsal."""

from __future__ import annotations

import hashlib
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest

from safemig.errors import CheckFailed, LedgerError, MigrationFailed, MigrationFileError
from safemig.migrations.engine import ApplySettings, Migrator, Observer

from .conftest import scalar

# On every PostgreSQL major CI tests (docs/postgres-majors.md).
pytestmark = pytest.mark.compat


class Recorder(Observer):
    """Remembers every callback; inspects the connection while statements are in flight."""

    def __init__(self):
        self.events = []
        self.in_flight = []  # (index, transaction_status, txid or None)

    def migration_started(self, migration, attempt):
        self.events.append(("started", migration.version, attempt))

    def statement_started(self, migration, index, statement):
        self.events.append(("statement", migration.version, index))

    def statement_finished(self, conn, migration, result):
        status = conn.info.transaction_status
        txid = conn.execute("SELECT txid_current_if_assigned()").fetchone()[0]
        self.in_flight.append((result.index, status, txid))

    def migration_finished(self, migration, result):
        self.events.append(("finished", migration.version, len(result.statements)))

    def retrying(self, migration, attempt, error, delay):
        self.events.append(("retrying", migration.version, attempt, error, delay))


def migrator(conn, project, **kwargs):
    return Migrator(conn, project.discover(), rollbacks_dir=project.rollbacks, **kwargs)


def test_apply_records_sqlx_row_in_the_same_transaction(conn, project):
    sql = "CREATE TABLE widgets (id int, label text);\nINSERT INTO widgets VALUES (1, '100% done'), (2, 'b');\n"
    project.write("001_create_widgets.sql", sql)
    observer = Recorder()
    (applied,) = migrator(conn, project, observer=observer).run()
    assert [(r.index, r.line, r.status, r.rowcount) for r in applied.statements] == [
        (1, 1, "CREATE TABLE", None),
        (2, 2, "INSERT 0 2", 2),
    ]
    version, description, success, checksum, execution_time, xmin = conn.execute(
        "SELECT version, description, success, checksum, execution_time, xmin::text::bigint FROM _sqlx_migrations"
    ).fetchone()
    assert (version, description, success) == (1, "create widgets", True)
    assert bytes(checksum) == hashlib.sha384(sql.encode()).digest()
    assert 0 < execution_time == applied.duration_ns
    # statement_finished ran inside the migration's transaction, and the row was written by it
    assert all(status == psycopg.pq.TransactionStatus.INTRANS for _, status, _ in observer.in_flight)
    assert observer.in_flight[-1][2] == xmin
    assert scalar(conn, "SELECT label FROM widgets WHERE id = 1") == "100% done"
    assert observer.events[0] == ("started", 1, 1) and observer.events[-1] == ("finished", 1, 2)


def test_failing_migration_leaves_no_row_and_no_partial_schema(conn, project):
    project.write("001_ok.sql", "CREATE TABLE ok_table (id int);")
    project.write(
        "002_broken.sql",
        "-- Migration: broken\nCREATE TABLE half_done (id int);\nCREATE INDEX half_idx ON half_done (id);\n"
        "ALTER TABLE half_done\n    ADD COLUMN x int REFERENCES no_such_table (id);\n",
    )
    with pytest.raises(MigrationFailed) as info:
        migrator(conn, project).run()
    err = info.value
    assert err.exit_code == 1
    assert "002_broken.sql:4: apply of version 2 failed at statement 3 `ALTER TABLE half_done`" in err.message
    assert '42P01 relation "no_such_table" does not exist' in err.message
    assert "rolled back" in err.hint
    assert [r[0] for r in conn.execute("SELECT version FROM _sqlx_migrations")] == [1]
    assert scalar(conn, "SELECT to_regclass('half_done')") is None
    assert scalar(conn, "SELECT to_regclass('half_idx')") is None


def test_error_line_uses_postgres_error_position(conn, project):
    project.write("001_pos.sql", "-- header\nCREATE TABLE copy AS\nSELECT relname,\n       missing_column\nFROM pg_class;\n")
    with pytest.raises(MigrationFailed, match=r"001_pos.sql:4: apply of version 1 failed at statement 1 `CREATE TABLE copy AS`: 42703"):
        migrator(conn, project).run()


def test_commit_time_failure_is_rolled_back(conn, project):
    project.write(
        "001_deferred.sql",
        "CREATE TABLE parent (id int PRIMARY KEY);\n"
        "CREATE TABLE child (pid int REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);\n"
        "INSERT INTO child VALUES (42);\n",
    )
    with pytest.raises(MigrationFailed, match="failed at COMMIT: 23503"):
        migrator(conn, project).run()
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations") == 0
    assert scalar(conn, "SELECT to_regclass('child')") is None


def test_no_transaction_runs_several_concurrent_indexes(conn, project):
    project.write("001_t.sql", "CREATE TABLE t (a int, b int);")
    project.write(
        "002_idx.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_b ON t (b);\n",
    )
    observer = Recorder()
    results = migrator(conn, project, observer=observer).run()
    assert [len(r.statements) for r in results] == [1, 2]
    assert {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 't'")} == {"t_a", "t_b"}
    assert observer.in_flight[-1][1] == psycopg.pq.TransactionStatus.IDLE
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations WHERE success") == 2


def test_no_transaction_failure_names_statements_that_ran(conn, project):
    project.write("001_t.sql", "CREATE TABLE t (a int);")
    project.write(
        "002_idx.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\nCREATE INDEX CONCURRENTLY t_z ON t (zzz);\n",
    )
    with pytest.raises(MigrationFailed) as info:
        migrator(conn, project).run()
    assert "002_idx.sql:3:" in info.value.message and "42703" in info.value.message
    assert "statements 1 (line 2) already ran and cannot be undone" in info.value.hint
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations") == 1
    assert scalar(conn, "SELECT to_regclass('t_a')") == "t_a"


@contextmanager
def busy_table(conn, database_url, seconds):
    """Table ``busy``, locked ACCESS EXCLUSIVE by another session for ``seconds`` from now."""
    conn.execute("CREATE TABLE busy (a int)")
    ready = threading.Event()

    def hold():
        with psycopg.connect(database_url) as holder:
            holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
            ready.set()
            time.sleep(seconds)
            holder.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert ready.wait(10)
        yield
    finally:
        thread.join()


def test_lock_timeout_is_retried_with_backoff(conn, project, database_url):
    project.write("001_alter.sql", "CREATE TABLE side (a int);\nALTER TABLE busy ADD COLUMN b int;\n")
    observer = Recorder()
    settings = ApplySettings(lock_timeout="150ms", lock_retries=10, retry_backoff=0.1)
    with busy_table(conn, database_url, 0.8):
        migrator(conn, project, settings=settings, observer=observer).run()
    retries = [e for e in observer.events if e[0] == "retrying"]
    assert retries, "expected at least one retry"
    assert all("55P03" in e[3] for e in retries)
    assert [e[4] for e in retries[:3]] == [0.1, 0.2, 0.4][: len(retries[:3])]
    starts = [e for e in observer.events if e[0] == "started"]
    assert [e[2] for e in starts] == list(range(1, len(retries) + 2))  # whole migration re-run
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations") == 1
    assert scalar(conn, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy'") == 2


def test_lock_timeout_gives_up_after_retries(conn, project, database_url):
    project.write("001_alter.sql", "ALTER TABLE busy ADD COLUMN b int;")
    observer = Recorder()
    settings = ApplySettings(lock_timeout="100ms", lock_retries=1, retry_backoff=0.05)
    with busy_table(conn, database_url, 1.5), pytest.raises(MigrationFailed) as info:
        migrator(conn, project, settings=settings, observer=observer).run()
    assert "55P03" in info.value.message
    assert "lock_timeout (100ms) expired after 2 attempt(s)" in info.value.hint
    assert len([e for e in observer.events if e[0] == "retrying"]) == 1
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations") == 0


def test_no_transaction_retries_only_the_failing_statement(conn, project, database_url):
    project.write("001_two.sql", "-- no-transaction\nCREATE TABLE IF NOT EXISTS first_one (a int);\nALTER TABLE busy ADD COLUMN b int;\n")
    observer = Recorder()
    settings = ApplySettings(lock_timeout="100ms", lock_retries=20, retry_backoff=0.05)
    with busy_table(conn, database_url, 0.5):
        (applied,) = migrator(conn, project, settings=settings, observer=observer).run()
    runs = [e[2] for e in observer.events if e[0] == "statement"]
    assert runs.count(1) == 1 and runs.count(2) >= 2
    assert [r.index for r in applied.statements] == [1, 2]


def test_statement_timeout_is_explained(conn, project):
    project.write("001_slow.sql", "SELECT pg_sleep(2);")
    with pytest.raises(MigrationFailed) as info:
        migrator(conn, project, settings=ApplySettings(statement_timeout="100ms")).run()
    assert "57014" in info.value.message
    assert "statement_timeout (100ms)" in info.value.hint


def test_unterminated_and_transaction_control_refused_before_touching_the_database(conn, project):
    project.write("001_bad.sql", "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1;\n")
    with pytest.raises(MigrationFileError, match=r"001_bad.sql:1: unterminated dollar-quoted string"):
        migrator(conn, project).run()
    assert scalar(conn, "SELECT to_regclass('_sqlx_migrations')") is None
    (project.migrations / "001_bad.sql").write_text("BEGIN;\nCREATE TABLE x (a int);\nCOMMIT;\n")
    with pytest.raises(MigrationFileError, match=r"001_bad.sql:1: transaction control statement `BEGIN;?`") as info:
        migrator(conn, project).run()
    assert "-- no-transaction" in info.value.hint


def test_run_up_to_target_version(conn, project):
    for v in (1, 2, 3):
        project.write(f"00{v}_m{v}.sql", f"CREATE TABLE m{v} (a int);")
    m = migrator(conn, project)
    assert [a.version for a in m.run(target_version=2)] == [1, 2]
    assert [a.version for a in m.run()] == [3]
    assert m.run() == []


def test_revert_runs_rollback_and_deletes_row_atomically(conn, project):
    project.write("001_a.sql", "CREATE TABLE a (x int);")
    project.write("002_b.sql", "CREATE TABLE b (x int);")
    project.rollback("002_rollback_b.sql", "DROP TABLE IF EXISTS b;")
    m = migrator(conn, project)
    m.run()
    migrations = project.discover()
    reverted = m.revert(migrations[1])
    assert reverted.version == 2 and len(reverted.statements) == 1
    assert scalar(conn, "SELECT to_regclass('b')") is None
    assert [r[0] for r in conn.execute("SELECT version FROM _sqlx_migrations")] == [1]
    with pytest.raises(CheckFailed, match="version 1 has no rollback script") as info:
        m.revert(migrations[0])
    assert "001_rollback_a.sql" in info.value.hint
    with pytest.raises(LedgerError, match="version 2 .* is not applied"):
        m.revert(migrations[1])


def test_failed_revert_keeps_row_and_schema(conn, project):
    project.write("001_a.sql", "CREATE TABLE a (x int);")
    project.rollback("001_rollback_a.sql", "DROP TABLE a;\nDROP TABLE no_such_thing;\n")
    m = migrator(conn, project)
    m.run()
    with pytest.raises(MigrationFailed, match=r"001_rollback_a.sql:2: revert of version 1 failed at statement 2"):
        m.revert(project.discover()[0])
    assert scalar(conn, "SELECT to_regclass('a')") == "a"
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations") == 1


def test_execute_sql_does_not_touch_the_ledger(conn, project):
    m = migrator(conn, project)
    observer_results = m.execute_sql("CREATE TABLE IF NOT EXISTS r (a int);\nINSERT INTO r VALUES (1);", no_transaction=False, label="rehearsal")
    assert [r.status for r in observer_results] == ["CREATE TABLE", "INSERT 0 1"]
    assert scalar(conn, "SELECT to_regclass('_sqlx_migrations')") is None
    with pytest.raises(MigrationFailed, match=r"^rehearsal:1: run of version 0 failed"):
        m.execute_sql("INSERT INTO r VALUES ('x');", no_transaction=True, label="rehearsal")


def test_migrator_refuses_a_connection_inside_a_transaction(database_url, project):
    with psycopg.connect(database_url) as c:
        c.execute("SELECT 1")
        with pytest.raises(RuntimeError, match="without an open transaction"):
            Migrator(c, [], rollbacks_dir=project.rollbacks)


def _leave_invalid_index(conn, database_url, name):
    """Make CREATE INDEX CONCURRENTLY time out while waiting for a writer: it leaves an INVALID index."""
    with psycopg.connect(database_url) as writer:
        writer.execute("INSERT INTO t VALUES (1)")  # open transaction holding RowExclusiveLock
        conn.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute(f"CREATE INDEX CONCURRENTLY {name} ON t (a)")
        conn.execute("RESET lock_timeout")
        writer.rollback()
    assert scalar(conn, f"SELECT NOT indisvalid FROM pg_index WHERE indexrelid = '{name}'::regclass") is True


def test_if_not_exists_does_not_hide_an_invalid_concurrent_index(conn, project, database_url):
    conn.execute("CREATE TABLE t (a int)")
    _leave_invalid_index(conn, database_url, "t_a")
    project.write("001_idx.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n")
    with pytest.raises(MigrationFailed, match="index t_a exists but is INVALID") as info:
        migrator(conn, project).run()
    assert "DROP INDEX CONCURRENTLY IF EXISTS t_a" in info.value.hint
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations") == 0


def test_concurrent_index_retry_drops_the_invalid_index_it_left(conn, project, database_url):
    conn.execute("CREATE TABLE t (a int)")
    project.write("001_idx.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n")
    released = threading.Event()

    def writer():
        with psycopg.connect(database_url) as w:
            w.execute("INSERT INTO t VALUES (1)")
            released.wait(10)
            time.sleep(0.4)
            w.rollback()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    released.set()
    observer = Recorder()
    settings = ApplySettings(lock_timeout="150ms", lock_retries=10, retry_backoff=0.1)
    try:
        migrator(conn, project, settings=settings, observer=observer).run()
    finally:
        thread.join()
    assert any(e[0] == "retrying" for e in observer.events)
    assert scalar(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass") is True
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations") == 1


def test_no_transaction_file_may_manage_its_own_transactions(conn, project):
    project.write(
        "001_mixed.sql",
        "-- no-transaction\nBEGIN;\nCREATE TABLE m (a int);\nINSERT INTO m VALUES (1);\nCOMMIT;\nCREATE INDEX CONCURRENTLY m_a ON m (a);\n",
    )
    (applied,) = migrator(conn, project).run()
    assert [r.status for r in applied.statements] == ["BEGIN", "CREATE TABLE", "INSERT 0 1", "COMMIT", "CREATE INDEX"]
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations") == 1
    project.write("002_fails.sql", "-- no-transaction\nBEGIN;\nINSERT INTO m VALUES (2);\nINSERT INTO m VALUES ('x');\nCOMMIT;\n")
    with pytest.raises(MigrationFailed, match="002_fails.sql:4"):
        migrator(conn, project).run()
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # the file's BEGIN was rolled back
    assert scalar(conn, "SELECT count(*) FROM m") == 1


def test_revert_prefers_the_down_file_of_a_reversible_pair(conn, project):
    project.write("001_pair.up.sql", "CREATE TABLE pair (a int);")
    project.write("001_pair.down.sql", "DROP TABLE pair;")
    project.rollback("001_rollback_pair.sql", "SELECT 1/0;")  # would fail if it were used
    m = migrator(conn, project)
    (applied,) = m.run()
    assert applied.description == "pair"
    m.revert(project.discover()[0])
    assert scalar(conn, "SELECT to_regclass('pair')") is None
    assert scalar(conn, "SELECT count(*) FROM _sqlx_migrations") == 0
