"""docker/entrypoint.py outside Docker, against real PostgreSQL servers.

What `docker compose run --rm migrate [COMMAND]` does once the container starts: wait (bounded)
until the database accepts connections, then exec the command, by default `safemig migrate run`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from safemig.local.postgres import LocalCluster, free_port
from tests.conftest import REPO_ROOT

from .conftest import ledger_versions, path_with_venv, run

ENTRYPOINT = REPO_ROOT / "docker" / "entrypoint.py"
PASSWORD_MARK = "safemig"  # LocalCluster's password: it must never be printed


def entrypoint(*command: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120):
    return run(
        [sys.executable, str(ENTRYPOINT), *command], env={"PATH": path_with_venv(), **env}, cwd=cwd, timeout=timeout
    )


def unused_url() -> str:
    """A URL on a loopback port where nothing listens (the server is "down")."""
    return f"postgresql://postgres:{PASSWORD_MARK}@127.0.0.1:{free_port()}/postgres"


def test_proceeds_at_once_when_the_server_is_up(database_url, tmp_path):
    marker = tmp_path / "ran"
    result = entrypoint(
        sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ok')", env={"DATABASE_URL": database_url}
    )
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "ok"
    assert "accepts connections" in result.stderr
    assert ":****@" in result.stderr and f":{PASSWORD_MARK}@" not in result.stderr


def test_the_command_replaces_the_entrypoint_and_keeps_its_exit_code(database_url):
    # exec, not a child: the command's pid is the entrypoint's, its exit code the container's.
    proc = subprocess.Popen(
        [sys.executable, str(ENTRYPOINT), sys.executable, "-c", "import os, sys; print(os.getpid()); sys.exit(7)"],
        env={"PATH": path_with_venv(), "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 7
    assert int(out.strip()) == proc.pid


def test_gives_up_after_its_timeout_with_a_clear_message(tmp_path):
    marker = tmp_path / "ran"
    started = time.monotonic()
    result = entrypoint(
        sys.executable,
        "-c",
        f"open({str(marker)!r}, 'w')",
        env={"DATABASE_URL": unused_url(), "SAFEMIG_WAIT_TIMEOUT": "1.5"},
        timeout=60,
    )
    assert result.returncode == 3
    assert not marker.exists(), "the command must not run when the database never answered"
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("entrypoint: waiting up to 1.5s for postgresql://postgres:****@127.0.0.1:")
    assert lines[1].startswith("error: entrypoint: gave up waiting: postgresql://postgres:****@127.0.0.1:")
    assert lines[1].endswith("does not answer after 1.5s")
    assert lines[2].startswith("hint: ")
    assert "Traceback" not in result.stderr and f":{PASSWORD_MARK}@" not in result.stderr
    assert time.monotonic() - started >= 1.5  # it did wait, for the time it was given


def test_a_bad_timeout_is_a_usage_error_naming_the_variable():
    result = entrypoint("true", env={"DATABASE_URL": unused_url(), "SAFEMIG_WAIT_TIMEOUT": "soon"})
    assert result.returncode == 2
    assert "error: SAFEMIG_WAIT_TIMEOUT='soon' is not a number of seconds" in result.stderr
    assert "hint: e.g. SAFEMIG_WAIT_TIMEOUT=60" in result.stderr


def test_zero_timeout_and_no_database_named_do_not_wait():
    assert entrypoint("true", env={"DATABASE_URL": unused_url(), "SAFEMIG_WAIT_TIMEOUT": "0"}).returncode == 0
    result = entrypoint("true", env={})
    assert result.returncode == 0
    assert "neither DATABASE_URL nor PGHOST is set; not waiting" in result.stderr


def test_libpq_variables_are_waited_for_without_database_url(pg_cluster):
    result = entrypoint(
        "true",
        env={
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg_cluster.port),
            "PGUSER": "postgres",
            "PGPASSWORD": pg_cluster.password,
            "PGDATABASE": "postgres",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "the database given by libpq's PG* variables accepts connections" in result.stderr


def test_a_missing_command_is_a_usage_error():
    result = entrypoint("no-such-command-here", env={"SAFEMIG_WAIT_TIMEOUT": "0"})
    assert result.returncode == 2
    assert "error: entrypoint: cannot run 'no-such-command-here'" in result.stderr


def test_default_command_is_migrate_run_and_commands_can_be_given(database_url, sample_project):
    # `docker compose run --rm migrate`, then `docker compose run --rm migrate safemig migrate info`.
    before = sorted(sample_project.rglob("*"))
    result = entrypoint(env={"DATABASE_URL": database_url}, cwd=sample_project)
    assert result.returncode == 0, result.stderr
    assert ledger_versions(database_url) == [1, 2, 3, 4]
    info = entrypoint("safemig", "migrate", "info", env={"DATABASE_URL": database_url}, cwd=sample_project)
    assert info.returncode == 0, info.stderr
    assert info.stdout.count("applied") >= 4
    assert f":{PASSWORD_MARK}@" not in result.stdout + result.stderr + info.stdout + info.stderr
    # Nothing written into the repository: compose mounts it read-only.
    assert sorted(sample_project.rglob("*")) == before


@pytest.fixture
def stopped_cluster():
    """A private server of its own, initialised and then stopped (the session's stay up)."""
    base = Path(tempfile.mkdtemp(prefix="safemig-test-pg-down-"))
    cluster = LocalCluster(base / "data", port=free_port())
    cluster.start()
    cluster.stop()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_waits_while_the_server_is_down_and_proceeds_when_it_comes_up(stopped_cluster, tmp_path):
    marker = tmp_path / "ran"
    proc = subprocess.Popen(
        [sys.executable, str(ENTRYPOINT), sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ok')"],
        env={"PATH": path_with_venv(), "DATABASE_URL": stopped_cluster.url(), "SAFEMIG_WAIT_TIMEOUT": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # the entrypoint has been polling a server that is down all this time
        assert proc.poll() is None, proc.communicate()
        assert not marker.exists()
        stopped_cluster.start()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert marker.read_text() == "ok"
    assert "waiting up to 120s" in err and "accepts connections (after " in err
