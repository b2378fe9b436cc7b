"""The restore side's stall bound (``backup.stall_timeout``): a frozen S3 or a stopped pg_restore
ends the restore with exit 3 within the bound, pg_restore stopped, nothing committed.

The CLI runs as a subprocess against moto's HTTP server behind the freezing proxy of
``test_faults`` and real PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import boto3
import psycopg
import pytest

from tests.backup.conftest import children_named, write_config
from tests.backup.test_faults import FreezingProxy, _spawn

pytestmark = pytest.mark.slow

STALL_S = 3


@pytest.fixture
def stored(project, s3_env, database_url, bucket_name):
    """A ~45 MB uncompressed backup of two tables (so --jobs 2 spools), its URI, and a spool dir."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bulk AS SELECT i, md5(i::text) || md5(random()::text) || md5(random()::text) AS t"
            " FROM generate_series(1, 400000) AS i"
        )
    spool = project / "spool"
    spool.mkdir()
    write_config(project, bucket_name, compression=0, stall_timeout=f"{STALL_S}s", spool_dir=str(spool))
    boto3.client("s3").create_bucket(Bucket=bucket_name)
    backup = _spawn(["backup", "--env", "prod", "--json"], project)
    out, err = backup.communicate(timeout=180)
    assert backup.returncode == 0, err
    return json.loads(out)["uri"], spool


def _restore_sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'safemig-restore-%'"
        ).fetchone()[0]


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relname IN ('bulk', 'events')")]


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.mark.parametrize("jobs", [1, 2])
def test_frozen_s3_during_a_restore_ends_within_the_stall_timeout_and_commits_nothing(
    project, stored, s3_env, database_url_b, jobs
):
    uri, spool = stored
    proxy = FreezingProxy(s3_env.port, pace_s=0.004)  # ~16 MB/s: the freeze comes long before the object's end
    try:
        restore = _spawn(
            ["restore", "--env", "prod", "--from", uri, "--target-database-url", database_url_b, "--jobs", str(jobs)],
            project,
            env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"},
        )
        if jobs == 1:  # streamed: S3 freezes while pg_restore is restoring from it
            _wait_for(lambda: _restore_sessions(database_url_b) > 0 or restore.poll() is not None)
        else:  # spooled: S3 freezes while the local copy is written
            _wait_for(lambda: proxy.returned > 2 * 1024 * 1024 or restore.poll() is not None)
        proxy.frozen.set()
        frozen_at = time.monotonic()
        assert restore.poll() is None, "the restore finished before S3 froze"
        _, err = restore.communicate(timeout=120)
        took = time.monotonic() - frozen_at
    finally:
        proxy.close()
    assert restore.returncode == 3, err
    assert f"no progress for {STALL_S}s" in err and "backup.stall_timeout" in err, err
    assert "Traceback" not in err
    if jobs == 1:
        assert "single transaction rolled back: nothing was restored" in err
    else:
        assert "nothing was restored" in err
    assert took < STALL_S + 15  # the bound, not botocore's read timeout times its retries
    _wait_for(lambda: _restore_sessions(database_url_b) == 0, timeout=10)
    assert _tables(database_url_b) == []
    assert list(Path(spool).iterdir()) == []  # no local copy left behind


def test_a_stopped_pg_restore_is_stopped_within_the_stall_timeout_and_commits_nothing(
    project, stored, database_url_b
):
    """pg_restore stops reading (SIGSTOP: a hung process): killed, its transaction rolled back, exit 3."""
    uri, _ = stored
    restore = _spawn(["restore", "--env", "prod", "--from", uri, "--target-database-url", database_url_b], project)

    def restoring() -> list[int]:
        found = []
        for pid in children_named(restore.pid, "pg_restore"):
            try:
                if b"--single-transaction" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        return found

    _wait_for(lambda: bool(restoring()) or restore.poll() is not None)
    pids = restoring()
    assert pids and restore.poll() is None, "the restore finished before pg_restore could be stopped"
    _wait_for(lambda: _restore_sessions(database_url_b) > 0)
    os.kill(pids[0], signal.SIGSTOP)
    stopped_at = time.monotonic()
    _, err = restore.communicate(timeout=120)
    took = time.monotonic() - stopped_at
    assert restore.returncode == 3, err
    assert f"no progress for {STALL_S}s" in err and "pg_restore was stopped" in err, err
    assert took < STALL_S + 15
    assert not Path(f"/proc/{pids[0]}").exists() or "Z" in Path(f"/proc/{pids[0]}/stat").read_text().split()[2]
    _wait_for(lambda: _restore_sessions(database_url_b) == 0, timeout=10)
    assert _tables(database_url_b) == []


def test_frozen_s3_during_backups_verify_ends_within_the_stall_timeout(project, stored, s3_env):
    uri, _ = stored
    proxy = FreezingProxy(s3_env.port)
    try:
        verify = _spawn(
            ["backups", "verify", "--env", "prod", uri], project, env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
        )
        _wait_for(lambda: proxy.returned > 4 * 1024 * 1024 or verify.poll() is not None)
        proxy.frozen.set()
        frozen_at = time.monotonic()
        assert verify.poll() is None, "the verification finished before S3 froze"
        _, err = verify.communicate(timeout=120)
        took = time.monotonic() - frozen_at
    finally:
        proxy.close()
    assert verify.returncode == 3, err  # S3 failed to answer: not a verdict on the backup (that would be 1)
    assert f"no progress for {STALL_S}s" in err and "the backup was not verified" in err, err
    assert took < STALL_S + 15


def test_the_rehearsals_streamed_restore_is_bounded_too(project, stored, s3_env, database_url_b, monkeypatch):
    """restore_backup(verify_before_commit=False), as the deploy's rehearsal calls it, with S3 frozen
    mid-stream: RestoreStalled (exit 3) within the bound, saying the target must be dropped."""
    import threading

    from safemig.backup import restore_backup
    from safemig.backup.fetch import RestoreStalled
    from safemig.config import load_config

    uri, _ = stored
    proxy = FreezingProxy(s3_env.port, pace_s=0.004)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")

    def without_events_rows(lines: list[str]) -> list[str]:  # data left out: the rehearsal's streamed mode
        return [line for line in lines if not (" TABLE DATA " in line and " events " in line)]

    frozen_at: list[float] = []

    def freeze_once_restoring() -> None:
        _wait_for(lambda: _restore_sessions(database_url_b) > 0)
        proxy.frozen.set()
        frozen_at.append(time.monotonic())

    threading.Thread(target=freeze_once_restoring, daemon=True).start()
    try:
        with pytest.raises(RestoreStalled) as caught:
            restore_backup(
                load_config(project / "safemig.toml"),
                "prod",
                source=uri,
                target_url=database_url_b,
                select=without_events_rows,
                verify_before_commit=False,
            )
    finally:
        proxy.close()
    assert caught.value.exit_code == 3
    assert f"no progress for {STALL_S}s" in caught.value.message and "must be dropped" in caught.value.message
    assert frozen_at and time.monotonic() - frozen_at[0] < STALL_S + 15
    _wait_for(lambda: _restore_sessions(database_url_b) == 0, timeout=10)
