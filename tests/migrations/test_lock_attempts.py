"""Lock-timeout attempts on a real server: every attempt kept, blockers named, the deadline honoured."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from safemig.migrations.blockers import LockWatch
from safemig.migrations.engine import ApplySettings, Attempt, LockTimeoutFailed, Migrator, Observer

from .conftest import scalar


class Attempts(Observer):
    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.retry_errors: list[str] = []

    def attempt_finished(self, migration, attempt):
        self.attempts.append(attempt)

    def retrying(self, migration, attempt, error, delay):
        self.retry_errors.append(error)


@contextmanager
def blocker(database_url, sql="SELECT count(*) FROM busy"):
    """A session named ``blocker-app`` in an open transaction that ran ``sql`` (ACCESS SHARE on busy)."""
    with psycopg.connect(database_url, application_name="blocker-app") as holder:
        holder.execute(sql)
        yield holder.info.backend_pid
        holder.rollback()


def _migrator(conn, project, settings, observer, watch):
    return Migrator(conn, project.discover(), rollbacks_dir=project.rollbacks, settings=settings, observer=observer, lock_watch=watch)


def test_a_blocking_session_is_named_in_every_attempt_and_the_error(conn, project, database_url):
    conn.execute("CREATE TABLE busy (a int)")
    project.write("001_alter.sql", "CREATE TABLE side (a int);\nALTER TABLE busy ADD COLUMN b int;\n")
    observer = Attempts()
    settings = ApplySettings(lock_timeout="300ms", lock_retries=2, retry_backoff=0.05)
    with LockWatch(database_url) as watch, blocker(database_url) as pid, pytest.raises(LockTimeoutFailed) as info:
        _migrator(conn, project, settings, observer, watch).run()
    error = info.value
    assert f"blocked by pid {pid} (blocker-app" in error.message
    assert "AccessShareLock on busy" in error.message and "SELECT count(*) FROM busy" in error.message
    assert "pg_terminate_backend" in error.hint and "after 3 attempt(s)" in error.hint
    assert [b.pid for b in error.blockers] == [pid]
    # every attempt is kept, each with its outcome, statement and blockers
    assert [(a.number, a.outcome, a.statement, a.line) for a in observer.attempts] == [
        (1, "lock_timeout", 2, 2),
        (2, "lock_timeout", 2, 2),
        (3, "lock_timeout", 2, 2),
    ]
    assert error.attempts == observer.attempts
    assert all([b.application_name for b in a.blockers] == ["blocker-app"] for a in observer.attempts)
    assert all(a.blockers[0].state == "idle in transaction" and a.blockers[0].transaction_age_s > 0 for a in observer.attempts)
    assert all(a.duration_s >= 0.3 for a in observer.attempts)
    assert all("blocked by pid" in e for e in observer.retry_errors)
    assert scalar(conn, "SELECT to_regclass('side') IS NULL")  # rolled back as a whole


def test_a_successful_migration_keeps_its_attempts(conn, project, database_url):
    conn.execute("CREATE TABLE busy (a int)")
    project.write("001_alter.sql", "ALTER TABLE busy ADD COLUMN b int;\n")
    with LockWatch(database_url) as watch:
        (applied,) = _migrator(conn, project, ApplySettings(lock_timeout="1s"), Attempts(), watch).run()
    (attempt,) = applied.attempts
    assert attempt.outcome == "ok" and attempt.blockers == () and attempt.error is None
    assert watch._conn is None  # a quick statement never needed the second connection


def test_retries_stop_before_the_deadline(conn, project, database_url):
    conn.execute("CREATE TABLE busy (a int)")
    project.write("001_alter.sql", "-- no-transaction\nALTER TABLE busy ADD COLUMN b int;\n")
    observer = Attempts()
    deadline = datetime.now(UTC) + timedelta(seconds=1.6)
    settings = ApplySettings(lock_timeout="250ms", lock_retries=50, retry_backoff=0.1, deadline=deadline)
    with LockWatch(database_url) as watch, blocker(database_url) as pid, pytest.raises(LockTimeoutFailed) as info:
        _migrator(conn, project, settings, observer, watch).run()
    assert info.value.deadline and "would end after the deadline" in info.value.hint
    assert f"pid {pid} (blocker-app" in info.value.message
    attempts = observer.attempts
    assert 1 < len(attempts) < 51
    # no attempt ran past the deadline, and the one not started could have
    assert all(a.started_at + timedelta(seconds=a.duration_s) <= deadline for a in attempts)
    last = attempts[-1]
    next_delay = 0.1 * 2 ** (len(attempts) - 1)
    assert last.started_at + timedelta(seconds=last.duration_s + next_delay + 0.25) > deadline
    assert scalar(conn, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy'") == 1


def test_no_migration_starts_after_the_deadline(conn, project):
    project.write("001_a.sql", "CREATE TABLE a (x int);\n")
    settings = ApplySettings(deadline=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(Exception) as info:
        Migrator(conn, project.discover(), rollbacks_dir=project.rollbacks, settings=settings).run()
    assert "deadline" in str(info.value) and scalar(conn, "SELECT to_regclass('a') IS NULL")


def test_a_naive_deadline_is_refused():
    with pytest.raises(ValueError):
        ApplySettings(deadline=datetime(2026, 1, 1, 2, 0))


def test_holders_names_conflicting_locks_only(conn, database_url):
    conn.execute("CREATE TABLE busy (a int)")
    with LockWatch(database_url) as watch, blocker(database_url) as pid:
        (holder,) = watch.holders("busy", "ACCESS EXCLUSIVE", pid=conn.info.backend_pid)
        assert holder.pid == pid and holder.application_name == "blocker-app" and "AccessShareLock" in holder.locks
        assert watch.holders("busy", "SHARE UPDATE EXCLUSIVE", pid=conn.info.backend_pid) == []
        assert watch.holders("no_such_table", "ACCESS EXCLUSIVE", pid=conn.info.backend_pid) == []


def test_migrate_run_names_the_blocker_after_its_lock_retries(cli, conn, project, database_url):
    conn.execute("CREATE TABLE busy (a int)")
    project.write("001_alter.sql", "ALTER TABLE busy ADD COLUMN b int;\n")
    with blocker(database_url) as pid:
        result = cli(
            "migrate", "run", "--database-url", database_url, "--lock-timeout", "200ms", "--lock-retries", "1",
            cwd=project.root,
        )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"blocked by pid {pid} (blocker-app" in result.stderr  # on the retry line and in the error
    assert "after 2 attempt(s)" in result.stderr and "Traceback" not in result.output
