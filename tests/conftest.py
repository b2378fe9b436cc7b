"""Shared fixtures: real PostgreSQL clusters started by the suite, moto for S3, a CLI runner.

The suite starts its own PostgreSQL server (initdb/pg_ctl from ``$SAFEMIG_PG_BIN``, else PATH
or /usr/lib/postgresql/*/bin, as the ``postgres`` user when run as root) on a private port
and socket, once per session; each test that needs a database gets a fresh one.

``SAFEMIG_PG_BIN=DIR`` runs the suite against that installation's major (``scripts/pg-majors``
installs 14 to 18): DIR also goes first on PATH, so pg_dump, pg_restore and psql of the same
major are the ones backup code and subprocesses find.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from safemig.local.postgres import PG_BIN_ENV, LocalCluster

REPO_ROOT = Path(__file__).resolve().parent.parent

if os.environ.get(PG_BIN_ENV):
    # Session-wide (not monkeypatch): subprocesses and session fixtures need it too.
    os.environ["PATH"] = os.environ[PG_BIN_ENV] + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(scope="session")
def pg_cluster():
    """One private PostgreSQL server for the whole session."""
    base = Path(tempfile.mkdtemp(prefix="safemig-test-pg-"))
    cluster = LocalCluster(base / "data")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster_b():
    """A second private server, for tests that need two (staging and prod)."""
    base = Path(tempfile.mkdtemp(prefix="safemig-test-pg-b-"))
    cluster = LocalCluster(base / "data")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_major(pg_cluster) -> int:
    """The major version of the session's server (14, 15, ...)."""
    return int(pg_cluster.psql("SHOW server_version_num").strip()) // 10000


def _new_db(cluster: LocalCluster) -> tuple[str, str]:
    name = "t_" + uuid.uuid4().hex[:12]
    return name, cluster.create_database(name)


@pytest.fixture
def database_url(pg_cluster):
    """URL of a brand-new empty database on the session cluster (dropped afterwards)."""
    name, url = _new_db(pg_cluster)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
def database_url_b(pg_cluster_b):
    """URL of a brand-new empty database on the second cluster."""
    name, url = _new_db(pg_cluster_b)
    yield url
    pg_cluster_b.drop_database(name)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """Tests never read the developer's config, AWS profile or DATABASE_URL."""
    for var in ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE",
                "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "SAFEMIG_CONFIG", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("NO_COLOR", "1")
    from safemig import output

    output.reset()
    yield
    output.reset()


@pytest.fixture(scope="session")
def local_s3():
    """moto's S3 server over HTTP on 127.0.0.1, for code paths that involve a subprocess."""
    from safemig.local.s3 import start_local_s3

    server = start_local_s3()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(local_s3, monkeypatch):
    """Point boto3 in this process (and subprocesses given os.environ) at the moto server."""
    for key, value in local_s3.env.items():
        monkeypatch.setenv(key, value)
    return local_s3


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli():
    """Run the CLI in-process: ``cli("migrate", "info", cwd=path)`` -> CliResult."""

    def invoke(*args: str, cwd: Path | None = None) -> CliResult:
        from safemig import cli as cli_module
        from safemig import output

        out, err = io.StringIO(), io.StringIO()
        old = Path.cwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            output.reset()
            with redirect_stdout(out), redirect_stderr(err):
                code = cli_module.run(list(args))
        finally:
            os.chdir(old)
            output.reset()
        return CliResult(code, out.getvalue(), err.getvalue())

    return invoke


@pytest.fixture
def cli_process():
    """Run ``safemig`` as a real subprocess: ``cli_process("deploy", "--env", "prod", cwd=..., env=...)``."""

    def invoke(
        *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
    ) -> CliResult:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "safemig.cli", *args],
            cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return invoke
