"""Faults around a running backup or restore: a paused process, a frozen S3 server.

All run the CLI as a subprocess against moto's HTTP server (through a loopback proxy that
can stop forwarding, for the frozen server) and real PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import boto3
import psycopg
import pytest

from tests.backup.conftest import children_named, snapshot, write_config

pytestmark = pytest.mark.slow


class FreezingProxy:
    """A TCP proxy on 127.0.0.1 in front of moto that can freeze: it keeps every connection
    open (and accepts new ones) but stops passing bytes, like an S3 endpoint that hangs."""

    def __init__(self, upstream_port: int, pace_s: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.pace_s = pace_s  # a pause after every 64 KiB towards the client: a slower link (~64 KiB / pace_s)
        self.frozen = threading.Event()
        self.forwarded = 0  # bytes client -> upstream
        self.returned = 0  # bytes upstream -> client (a download's)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.frozen.is_set() and not self._closed:
                    time.sleep(0.05)  # hold the bytes: the peer sees a silent connection
                if self._closed:
                    break
                dst.sendall(data)
                if outbound:
                    self.forwarded += len(data)
                else:
                    self.returned += len(data)
                    if self.pace_s:
                        time.sleep(self.pace_s)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.listener.close()


@pytest.fixture
def big_project(project, database_url, bucket_name):
    """~25 MB of incompressible rows, no compression, 5 MiB parts, one part at a time: a long stream."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bulk AS SELECT i, md5(i::text) || md5(random()::text) || md5(random()::text) AS t"
            " FROM generate_series(1, 220000) AS i"
        )
    return project


def _spawn(args: list[str], cwd, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "safemig.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pause_repeatedly(proc: subprocess.Popen, times: int, pause_s: float, gap_s: float) -> int:
    """SIGSTOP/SIGCONT ``proc`` several times while it runs; how many pauses happened."""
    done = 0
    for _ in range(times):
        time.sleep(gap_s)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGSTOP)
        time.sleep(pause_s)
        proc.send_signal(signal.SIGCONT)
        done += 1
    return done


def test_paused_backup_and_restore_resume_and_finish_correctly(big_project, s3_env, database_url, database_url_b, bucket_name):
    """Ctrl-Z then `fg` (or a debugger) mid-stream, longer than the stall timeout: nothing dropped, nothing stalled."""
    write_config(big_project, bucket_name, part_size_mb=5, compression=0, concurrency=1, stall_timeout="1s")
    boto3.client("s3").create_bucket(Bucket=bucket_name)

    backup = _spawn(["backup", "--env", "prod", "--json"], big_project)
    s3 = boto3.client("s3")
    deadline = time.monotonic() + 60
    while not s3.list_multipart_uploads(Bucket=bucket_name).get("Uploads") and backup.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    paused = _pause_repeatedly(backup, times=4, pause_s=1.5, gap_s=0.05)
    out, err = backup.communicate(timeout=180)
    assert backup.returncode == 0, err
    assert paused >= 2, "the backup finished before it could be paused twice"
    uri = json.loads(out)["uri"]

    restore = _spawn(["restore", "--env", "prod", "--from", uri, "--target-database-url", database_url_b, "--json"], big_project)
    deadline = time.monotonic() + 60
    while not children_named(restore.pid, "pg_restore") and restore.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    paused = _pause_repeatedly(restore, times=4, pause_s=1.5, gap_s=0.05)
    out, err = restore.communicate(timeout=180)
    assert restore.returncode == 0, err
    assert paused >= 1
    assert snapshot(database_url_b) == snapshot(database_url)
    with psycopg.connect(database_url_b) as conn:
        assert conn.execute("SELECT count(*), sum(length(t)) FROM bulk").fetchone() == (220000, 220000 * 96)


def _pg_dump_locks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE a.application_name = 'pg_dump' AND l.mode = 'AccessShareLock' AND l.locktype = 'relation'"
        ).fetchone()[0]


def test_frozen_s3_stops_the_backup_within_the_stall_timeout_and_releases_prods_locks(big_project, s3_env, database_url, bucket_name):
    write_config(big_project, bucket_name, part_size_mb=5, compression=0, concurrency=1, stall_timeout="3s")
    boto3.client("s3").create_bucket(Bucket=bucket_name)
    proxy = FreezingProxy(s3_env.port)
    try:
        backup = _spawn(["backup", "--env", "prod"], big_project, env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"})
        deadline = time.monotonic() + 60
        while proxy.forwarded < 6 * 1024 * 1024 and backup.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proxy.frozen.set()  # S3 stops answering in the middle of the upload
        frozen_at = time.monotonic()
        assert backup.poll() is None, "the backup finished before S3 froze"
        time.sleep(1.0)
        assert _pg_dump_locks(database_url) > 0  # pg_dump is holding prod's locks while it waits
        _, err = backup.communicate(timeout=120)
        took = time.monotonic() - frozen_at
    finally:
        proxy.close()
    assert backup.returncode == 3, err
    assert "no progress for 3s" in err and "backup.stall_timeout" in err and "locks released" in err
    assert "Traceback" not in err
    assert "could not be aborted" in err and "lifecycle rule" in err  # S3 is frozen: it cannot abort either, and says so
    assert "nothing was stored (the upload was aborted)" not in err
    assert took < 3 + 3 + 20  # the stall, the bounded abort, process exit: not botocore's minutes of retries
    assert _pg_dump_locks(database_url) == 0
    s3 = boto3.client("s3")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket_name).get("Contents", [])] == []
