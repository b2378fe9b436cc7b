"""Byte-compatibility with sqlx-cli: its table, its rows, its checksums, its advisory lock.

sqlx-cli is not installed here, so the test plays sqlx: it runs sqlx's own DDL and INSERT /
UPDATE statements (sqlx-postgres/src/migrate.rs) with checksums computed by hashlib, and
reads safemig's rows back with sqlx's own queries.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import zlib

import psycopg
import pytest

from .conftest import scalar

# On every PostgreSQL major CI tests (docs/postgres-majors.md).
pytestmark = pytest.mark.compat

SQLX_DDL = """
CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);
"""
SQLX_INSERT = (
    "INSERT INTO _sqlx_migrations ( version, description, success, checksum, execution_time ) "
    "VALUES ( %s, %s, TRUE, %s, -1 )"
)
SQLX_UPDATE_TIME = "UPDATE _sqlx_migrations SET execution_time = %s WHERE version = %s"
SQLX_LIST = "SELECT version, checksum FROM _sqlx_migrations ORDER BY version"
SQLX_DIRTY = "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1"

FILES = {
    # CRLF line endings and a BOM-less UTF-8 comment: the checksum is over the raw bytes
    "001_create_accounts.sql": b"-- Migration: cr\xc3\xa9er accounts\r\nCREATE TABLE accounts (id int);\r\n",
    "002_add_owner.sql": b"ALTER TABLE accounts ADD COLUMN owner text;\n",
    "003_create_ledger.sql": b"CREATE TABLE ledger_entries (id int, amount numeric);\n",
}


def _apply_like_sqlx(conn, project, names):
    """What `sqlx migrate run` does for each file: run it, INSERT the row, then UPDATE the time."""
    conn.execute(SQLX_DDL)
    for name in names:
        raw = FILES[name]
        version = int(name.split("_", 1)[0])
        description = name.split("_", 1)[1].removesuffix(".sql").replace("_", " ")
        with conn.transaction():
            conn.execute(raw.decode("utf-8"))
            conn.execute(SQLX_INSERT, (version, description, hashlib.sha384(raw).digest()))
        conn.execute(SQLX_UPDATE_TIME, (1_234_567, version))


def _write_all(project):
    for name, raw in FILES.items():
        project.write(name, raw)


def test_safemig_takes_over_a_database_migrated_by_sqlx(cli, conn, project, database_url):
    _write_all(project)
    _apply_like_sqlx(conn, project, ["001_create_accounts.sql", "002_add_owner.sql"])

    result = cli("migrate", "info", "--json", "--database-url", database_url, cwd=project.root)
    assert result.exit_code == 0, result.output
    import json

    states = {row["version"]: row["state"] for row in json.loads(result.stdout)}
    assert states == {1: "applied", 2: "applied", 3: "pending"}

    result = cli("migrate", "run", "--database-url", database_url, cwd=project.root)
    assert result.exit_code == 0, result.output
    assert "Applied 3/create ledger" in result.stdout
    assert "Applied 1/" not in result.stdout and "Applied 2/" not in result.stdout
    rows = conn.execute("SELECT version, execution_time FROM _sqlx_migrations ORDER BY version").fetchall()
    assert rows[:2] == [(1, 1_234_567), (2, 1_234_567)]  # sqlx's rows untouched


def test_sqlx_accepts_what_safemig_wrote(cli, conn, project, database_url):
    _write_all(project)
    result = cli("migrate", "run", "--database-url", database_url, cwd=project.root)
    assert result.exit_code == 0, result.output
    # sqlx's checks on start-up: no dirty version, and every checksum equals the file's SHA-384
    assert conn.execute(SQLX_DIRTY).fetchone() is None
    listed = [(v, bytes(c)) for v, c in conn.execute(SQLX_LIST)]
    assert listed == [(int(n[:3]), hashlib.sha384(raw).digest()) for n, raw in sorted(FILES.items())]
    descriptions = [r[0] for r in conn.execute("SELECT description FROM _sqlx_migrations ORDER BY version")]
    assert descriptions == ["create accounts", "add owner", "create ledger"]
    assert scalar(conn, "SELECT bool_and(execution_time > 0 AND installed_on <= now()) FROM _sqlx_migrations")


def _table_shape(url):
    with psycopg.connect(url, autocommit=True) as c:
        columns = c.execute(
            "SELECT column_name, data_type, is_nullable, column_default, ordinal_position "
            "FROM information_schema.columns WHERE table_name = '_sqlx_migrations' ORDER BY ordinal_position"
        ).fetchall()
        constraints = c.execute(
            "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = '_sqlx_migrations'::regclass ORDER BY contype, conname"
        ).fetchall()
    return columns, constraints


def test_ledger_table_is_identical_to_sqlx(conn, project, database_url, database_url_b):
    from safemig.migrations import ledger

    ledger.ensure_table(conn)
    with psycopg.connect(database_url_b, autocommit=True) as other:
        other.execute(SQLX_DDL)
    assert _table_shape(database_url) == _table_shape(database_url_b)
    ledger.ensure_table(conn)  # idempotent over an existing (sqlx-made) table


def test_lock_is_shared_with_sqlx(cli_process, conn, project, database_url):
    """A session holding sqlx's lock (computed here with zlib, as sqlx's crc crate does) blocks safemig."""
    project.write("001_a.sql", "CREATE TABLE a (x int);")
    name = scalar(conn, "SELECT current_database()")
    sqlx_lock = 0x3D32AD9E * zlib.crc32(name.encode())
    conn.execute("SELECT pg_advisory_lock(%s)", (sqlx_lock,))
    proc = subprocess.Popen(
        [sys.executable, "-m", "safemig.cli", "migrate", "run", "--database-url", database_url],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        line = proc.stderr.readline()
        assert "waiting for the migration lock" in line
        time.sleep(0.3)
        assert proc.poll() is None
        assert scalar(conn, "SELECT to_regclass('a')") is None
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (sqlx_lock,))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Applied 1/a" in out
    assert scalar(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
