"""The restore's stall bound (``backup.stall_timeout``) against the target server and the steps around
pg_restore: no false stall when the target has no free connection slot, and no hang in the TOC read,
the roles' or the tablespaces' creation.

Real PostgreSQL: a private cluster with ``max_connections = 8`` whose slots the test fills, and the
suite's two clusters; S3 is moto (in-process, or its HTTP server behind the freezing proxy of
``test_faults`` for the CLI).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest

import safemig.backup.tablespaces as tablespaces_module
from safemig.backup import restore_backup, run_backup
from safemig.backup.fetch import RestoreStalled
from safemig.config import load_config
from safemig.local.postgres import LocalCluster
from tests.backup.conftest import children_named, write_config
from tests.backup.test_faults import FreezingProxy, _spawn
from tests.backup.test_tablespaces import _server_dir, placed, tablespace  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

STALL_S = 3
SLOW_ROWS = 2500  # x 2 ms in the index's function: pg_restore is quiet for >= 5 s, longer than the bound


# -- a target server without a free connection slot ------------------------------------------------


@pytest.fixture(scope="module")
def small_cluster():
    base = Path(tempfile.mkdtemp(prefix="safemig-test-pg-small-"))
    cluster = LocalCluster(base / "data", server_options={"max_connections": "8"})
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def small_target(small_cluster):
    name = "t_" + uuid.uuid4().hex[:12]
    url = small_cluster.create_database(name)
    try:
        yield url
    finally:
        small_cluster.drop_database(name)


@pytest.fixture
def slow_index_backup(project, database_url, s3, bucket_name):
    """A backup whose restore ends in a >= 5 s index build: each row calls a function that sleeps 2 ms.

    The index is built while the function is fast, then the function is made slow: only the
    restore pays for it.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION slow(i int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT i'")
        conn.execute("CREATE TABLE slowidx AS SELECT i FROM generate_series(1, %s) AS i", (SLOW_ROWS,))
        conn.execute("CREATE INDEX slowidx_slow ON slowidx (slow(i))")
        conn.execute(
            "CREATE OR REPLACE FUNCTION slow(i int) RETURNS int IMMUTABLE LANGUAGE plpgsql"
            " AS $$ BEGIN PERFORM pg_sleep(0.002); RETURN i; END $$"
        )
    write_config(project, bucket_name, part_size_mb=5, stall_timeout=f"{STALL_S}s")
    config = load_config(project / "safemig.toml")
    return config, run_backup(config, "prod", database_url=database_url).uri


class Slots:
    """Connections that take every free slot of a server (superuser: its reserved slots too)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conns: list[psycopg.Connection] = []

    def fill(self, leave: int = 0) -> None:
        while True:
            try:
                self.conns.append(psycopg.connect(self.url, autocommit=True))
            except psycopg.OperationalError as exc:
                assert "too many clients" in str(exc), exc
                break
        for _ in range(leave):
            self.conns.pop().close()

    def sessions(self, application_name: str) -> list[tuple]:
        return self.conns[0].execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE application_name LIKE %s", (application_name,)
        ).fetchall()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.conns = []


def _building_the_index(slots: Slots) -> bool:
    return any(state == "active" and "CREATE INDEX" in query for _, state, query in slots.sessions("safemig-restore-%"))


def _lose_the_probes_session(slots: Slots) -> None:
    """End the probe's session (an admin's pg_terminate_backend, a failover) and take its slot."""
    deadline = time.monotonic() + 30
    while True:
        probes = slots.sessions("safemig restore (progress)")
        if not probes and time.monotonic() > deadline - 25:  # gone, and not reopened for a while
            return
        for pid, _, _ in probes:
            slots.conns[0].execute("SELECT pg_terminate_backend(%s)", (pid,))
        slots.fill()  # the freed slot is ours before the probe's next tick
        assert time.monotonic() < deadline, "the probe kept its session"
        time.sleep(0.2)


def _own_pg_restore() -> list[int]:
    found = []
    for pid in children_named(os.getpid(), "pg_restore"):
        try:
            if b"--single-transaction" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.mark.parametrize("probe_session_lost", [False, True], ids=["slots-full", "slots-full-probe-lost"])
@pytest.mark.parametrize("pg_restore_stopped", [False, True], ids=["working", "sigstopped"])
def test_a_target_without_free_connection_slots_is_no_stall_and_a_stopped_pg_restore_still_is(
    slow_index_backup, small_target, monkeypatch, probe_session_lost, pg_restore_stopped
):
    """Every slot of the target is taken once the restore's checks are done, but for pg_restore's own:
    a quiet pg_restore building an index for longer than the bound is no stall, also when the probe's
    session is lost and no new one can be opened (the note says so). A SIGSTOPped pg_restore still is."""
    config, uri = slow_index_backup
    slots = Slots(small_target)
    real_plan = tablespaces_module.plan_placement

    def plan_then_fill(*args, **kwargs):  # after the target's checks, before pg_restore connects
        placement = real_plan(*args, **kwargs)
        slots.fill(leave=1)  # the one pg_restore takes
        return placement

    monkeypatch.setattr(tablespaces_module, "plan_placement", plan_then_fill)
    happened: list[str] = []

    def meddle() -> None:
        _wait_for(lambda: bool(slots.conns) and _building_the_index(slots))
        happened.append("index build")
        try:  # the premise: pg_restore took the last slot
            psycopg.connect(small_target).close()
        except psycopg.OperationalError as exc:
            if "too many clients" in str(exc):
                happened.append("full")
        if probe_session_lost:
            _lose_the_probes_session(slots)
            happened.append("probe lost")
        if pg_restore_stopped:
            pids = _own_pg_restore()
            os.kill(pids[0], signal.SIGSTOP)
            happened.append("stopped")

    helper = threading.Thread(target=meddle, daemon=True)
    helper.start()
    began = time.monotonic()
    try:
        if pg_restore_stopped:
            with pytest.raises(RestoreStalled) as caught:
                restore_backup(config, "prod", source=uri, target_url=small_target)
            took = time.monotonic() - began
        else:
            result = restore_backup(config, "prod", source=uri, target_url=small_target)
        helper.join(timeout=30)
    finally:
        slots.close()
    lost = ["probe lost"] if probe_session_lost else []
    assert happened[: 2 + probe_session_lost] == ["index build", "full", *lost]
    with psycopg.connect(small_target) as conn:
        present = conn.execute("SELECT count(*) FROM pg_class WHERE relname IN ('slowidx', 'slowidx_slow')").fetchone()
    if pg_restore_stopped:
        assert happened[-1] == "stopped"
        err = caught.value.message
        assert caught.value.exit_code == 3 and f"no progress for {STALL_S}s" in err, err
        assert "single transaction rolled back: nothing was restored" in err, err
        if probe_session_lost:
            assert "is stopped" in err, err  # what the blind probe saw
        assert took < SLOW_ROWS * 0.002 * 3 + STALL_S + 20
        assert present == (0,)
        assert not [pid for pid in _own_pg_restore() if "T" in Path(f"/proc/{pid}/stat").read_text().split()[2]]
    else:
        assert result.duration_s > STALL_S + 1  # quiet for longer than the bound
        assert present == (2,)  # the table and its index
        if probe_session_lost:
            assert result.notes and "could not look at pg_restore's sessions" in result.notes[0], result.notes
        else:
            assert result.notes == ()


# -- the TOC read ----------------------------------------------------------------------------------


@pytest.fixture
def many_tables(project, s3_env, database_url, bucket_name):
    """A backup of 2,000 empty tables (a TOC of ~1.4 MB) and ~45 MB of rows after it, uncompressed."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN FOR i IN 1..2000 LOOP EXECUTE format('CREATE TABLE many_%s (a int)', i); END LOOP; END $$"
        )
        conn.execute(
            "CREATE TABLE bulk AS SELECT i, md5(i::text) || md5(random()::text) || md5(random()::text) AS t"
            " FROM generate_series(1, 400000) AS i"
        )
    write_config(project, bucket_name, compression=0, stall_timeout=f"{STALL_S}s")
    boto3.client("s3").create_bucket(Bucket=bucket_name)
    backup = _spawn(["backup", "--env", "prod", "--json"], project)
    out, err = backup.communicate(timeout=300)
    assert backup.returncode == 0, err
    import json

    return json.loads(out)["uri"]


def _listers(ppid: int) -> list[int]:
    found = []
    for pid in children_named(ppid, "pg_restore"):
        try:
            if b"--list" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("what", ["s3-frozen", "lister-stopped"])
def test_a_stall_while_the_toc_is_read_ends_within_the_bound(project, many_tables, s3_env, database_url_b, what):
    """S3 freezes before the TOC is complete, or ``pg_restore --list`` is stopped: exit 3 within the
    bound, naming the TOC read; the lister gone, nothing restored."""
    proxy = FreezingProxy(s3_env.port, pace_s=0.03)  # ~2 MB/s: the TOC takes most of a second
    try:
        restore = _spawn(
            ["restore", "--env", "prod", "--from", many_tables, "--target-database-url", database_url_b],
            project,
            env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"},
        )
        _wait_for(lambda: bool(_listers(restore.pid)) or restore.poll() is not None)
        listers = _listers(restore.pid)
        assert listers and proxy.returned < 1024 * 1024, "the TOC was read before the test could act"
        if what == "s3-frozen":
            proxy.frozen.set()
        else:
            os.kill(listers[0], signal.SIGSTOP)
        acted_at = time.monotonic()
        _, err = restore.communicate(timeout=180)
        took = time.monotonic() - acted_at
    finally:
        proxy.close()
    assert restore.returncode == 3, err
    assert f"no progress for {STALL_S}s on the download of" in err and "pg_restore --list reading its table" in err, err
    assert "nothing was restored" in err and "Traceback" not in err, err
    # frozen: the bound; stopped: the read-ahead (8 MiB) and the pipe fill at ~2 MB/s first, then the bound
    assert took < STALL_S + (15 if what == "s3-frozen" else 30)
    assert all(_gone(pid) for pid in listers)
    with psycopg.connect(database_url_b) as conn:
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'many\\_%'").fetchone() == (0,)


# -- roles and tablespaces: a lock another session holds ----------------------------------------------


def _role_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)).fetchone() == (1,)


def _in_thread(fn):
    """Run ``fn`` in a thread: (thread, outcome) where outcome gets the result or the exception."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_role_creation_blocked_by_another_sessions_lock_ends_within_the_bound_and_creates_nothing(
    project, database_url, database_url_b, pg_cluster, s3, bucket_name
):
    """Another session on the target's server created the same role in an open transaction: our
    CREATE ROLE waits on ``pg_authid``'s unique index. Exit 3 within the bound, naming the roles;
    once the other session rolls back, no role of ours appears (nothing went on after the stall)."""
    owner = "stall_owner_" + uuid.uuid4().hex[:6]
    pg_cluster.psql(f"CREATE ROLE {owner}")
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE events OWNER TO {owner}")
        write_config(project, bucket_name, part_size_mb=5, stall_timeout=f"{STALL_S}s")
        config = load_config(project / "safemig.toml")
        uri = run_backup(config, "prod", database_url=database_url).uri
        blocker = psycopg.connect(database_url_b)
        try:
            blocker.execute(f"CREATE ROLE {owner}")  # uncommitted: holds the name
            began = time.monotonic()
            thread, outcome = _in_thread(
                lambda: restore_backup(config, "prod", source=uri, target_url=database_url_b, create_roles=True)
            )
            thread.join(timeout=STALL_S + 20)
            took = time.monotonic() - began
            assert not thread.is_alive(), "the restore hung behind the other session's lock"
            blocker.rollback()
        finally:
            blocker.close()
        (failure,) = outcome
        assert isinstance(failure, RestoreStalled), failure
        assert f"no progress for {STALL_S}s on creating the backup's roles" in failure.message, failure.message
        assert "no role was created, nothing was restored" in failure.message
        assert "lock" in failure.message  # the lock it waited for (by lock_timeout, or named before the cancel)
        assert took < STALL_S + 15
        time.sleep(1.0)  # what would have gone on after the stall has had time to
        assert not _role_exists(database_url_b, owner)
        with psycopg.connect(database_url_b) as conn:
            assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'events'").fetchone() == (0,)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE events OWNER TO CURRENT_USER")
        pg_cluster.psql(f"DROP ROLE IF EXISTS {owner}")


@pytest.mark.parametrize("role_locked", [False, True], ids=["role-free", "role-locked"])
def test_a_tablespace_creation_blocked_by_another_sessions_lock_ends_within_the_bound_and_leaves_nothing(
    tablespace, project, placed, database_url, database_url_b, pg_cluster, pg_cluster_b, s3, bucket_name, role_locked  # noqa: F811
):
    """Another session holds a SHARE lock on the target's ``pg_tablespace`` (reads pass, CREATE
    TABLESPACE waits): exit 3 within the bound, naming the tablespace; no tablespace, nothing in
    its directory, and the role this restore created first dropped again. If a third session
    holds a lock on that role (an open ``COMMENT ON ROLE``), its drop waits at most the bound too,
    and the error names the role left behind."""
    name, _ = tablespace
    owner = "stall_ts_owner_" + uuid.uuid4().hex[:6]
    pg_cluster.psql(f"CREATE ROLE {owner}")
    target_dir = _server_dir(pg_cluster_b, "safemig-ts-stall-")
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE events OWNER TO {owner}")
        write_config(project, bucket_name, part_size_mb=5, stall_timeout=f"{STALL_S}s")
        config = load_config(project / "safemig.toml")
        uri = run_backup(config, "prod", database_url=database_url).uri
        blocker = psycopg.connect(database_url_b)
        role_blocker = psycopg.connect(database_url_b)
        try:
            blocker.execute("LOCK TABLE pg_tablespace IN SHARE MODE")
            began = time.monotonic()
            thread, outcome = _in_thread(
                lambda: restore_backup(
                    config, "prod", source=uri, target_url=database_url_b, tablespaces="create",
                    tablespace_locations={name: str(target_dir)}, create_roles=True,
                )
            )
            if role_locked:  # once the restore created the role, and while it waits for pg_tablespace
                _wait_for(lambda: _role_exists(database_url_b, owner), timeout=STALL_S + 10)
                role_blocker.execute(f"COMMENT ON ROLE {owner} IS 'held by another session'")
            thread.join(timeout=3 * STALL_S + 30)
            took = time.monotonic() - began
            hung = thread.is_alive()
            blocker.rollback()
            role_blocker.rollback()
        finally:
            blocker.close()
            role_blocker.close()
        assert not hung, "the restore hung behind the other session's lock"
        (failure,) = outcome
        assert isinstance(failure, RestoreStalled), failure
        assert f"no progress for {STALL_S}s on creating tablespace {name}" in failure.message, failure.message
        assert "nothing was restored" in failure.message and "lock" in failure.message
        time.sleep(1.0)
        with psycopg.connect(database_url_b) as conn:
            assert conn.execute("SELECT count(*) FROM pg_tablespace WHERE spcname = %s", (name,)).fetchone() == (0,)
        assert list(target_dir.iterdir()) == []  # no half-made version directory
        if role_locked:  # the drop waited for the role's lock for the bound, then said what is left
            assert f"role(s) {owner} created by this restore could not be dropped again" in failure.message
            assert _role_exists(database_url_b, owner)
            assert took < 2 * STALL_S + 20
        else:
            assert "could not be dropped" not in failure.message
            assert not _role_exists(database_url_b, owner)  # created for the restore, dropped again
            assert took < STALL_S + 15
    finally:
        shutil.rmtree(target_dir, ignore_errors=True)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE events OWNER TO CURRENT_USER")
        pg_cluster_b.psql(f"DROP ROLE IF EXISTS {owner}")
        pg_cluster.psql(f"DROP ROLE IF EXISTS {owner}")


def test_a_tablespace_created_before_a_stall_is_named_when_its_own_drop_is_blocked_too(pg_cluster, database_url):
    """The second CREATE TABLESPACE waits for another session's lock on pg_tablespace, the stall
    cancels it, and the first one's drop waits for the same lock past the step's grace: the
    caller's list still holds the first, so the restore's undo drops it or names it; it never
    goes unnamed (on the old code the caller's list stayed empty)."""
    from safemig.backup.fetch import RestoreBound
    from safemig.backup.roles import undo_created
    from safemig.backup.tablespaces import Placement, StoredTablespace, create_tablespaces

    first, second = ("ts_" + uuid.uuid4().hex[:8] for _ in range(2))
    dirs = [_server_dir(pg_cluster, "safemig-ts-stall-") for _ in range(2)]
    placement = Placement(
        to_create=(
            StoredTablespace(first, None, str(dirs[0]), ("SELECT pg_sleep(1)",)),  # time to take the lock
            StoredTablespace(second, None, str(dirs[1])),
        )
    )
    locker = psycopg.connect(database_url)

    def lock_soon() -> None:
        time.sleep(0.4)  # while the first one's extra statement sleeps
        locker.execute("LOCK TABLE pg_tablespace IN SHARE MODE")

    created: list[str] = []
    try:
        threading.Thread(target=lock_soon, daemon=True).start()
        with pytest.raises(RestoreStalled):
            with RestoreBound(STALL_S, "restoring into the test database", database_url) as bound:
                bound.step(lambda: create_tablespaces(database_url, placement, bound, created))
        assert created == [first]  # its drop is blocked by the lock: still the caller's to undo
        left = undo_created(database_url, [], created, STALL_S)
        assert first in left and "could not be dropped again" in left
        locker.rollback()
        assert undo_created(database_url, [], created, STALL_S) == ""
        assert pg_cluster.psql(f"SELECT count(*) FROM pg_tablespace WHERE spcname IN ('{first}', '{second}')").strip() == "0"
    finally:
        locker.close()
        for name in (first, second):
            pg_cluster.psql(f'DROP TABLESPACE IF EXISTS "{name}"')
        for path in dirs:
            shutil.rmtree(path, ignore_errors=True)
