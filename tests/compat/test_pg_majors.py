"""What must hold on every PostgreSQL major safemig supports (14 to 18), beyond the marked engine,
ledger and lock-capture tests: the suite really runs the chosen major with its own client programs,
sqlx's lock id is the key the server's advisory lock takes, and a backup restores partitions,
row-level security and large objects faithfully. CI runs ``-m compat`` on each major
(scripts/pg-majors, docs/postgres-majors.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import zlib
from pathlib import Path

import psycopg
import pytest

from safemig import db
from safemig.backup import restore_backup, run_backup
from safemig.backup.pgdump import pick_binary
from safemig.config import load_config
from safemig.errors import ToolError
from safemig.local.postgres import PG_BIN_ENV, LocalCluster, find_pg_bin
from tests.backup.conftest import write_config

pytestmark = pytest.mark.compat


def _major_of(program: str) -> int:
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\(PostgreSQL\) (\d+)", out)
    assert match, out
    return int(match.group(1))


def test_the_suite_runs_the_chosen_major_with_its_own_client_programs(pg_major):
    assert 14 <= pg_major <= 18
    assert _major_of(find_pg_bin("postgres")) == pg_major
    pinned = os.environ.get(PG_BIN_ENV)
    for name in ("pg_dump", "pg_restore"):
        binary = pick_binary(name, pg_major, purpose="test")  # how backup and restore choose theirs
        if pinned:
            assert Path(binary.path).parent == Path(pinned), f"{name} is {binary.path}, not from {pinned}"
            assert binary.major == pg_major
        else:
            assert binary.major >= pg_major


def test_a_pinned_bin_dir_without_the_program_is_an_error_not_a_fall_back(tmp_path, monkeypatch):
    monkeypatch.setenv(PG_BIN_ENV, str(tmp_path))
    with pytest.raises(ToolError, match=f"{PG_BIN_ENV}={tmp_path} has no initdb") as info:
        find_pg_bin("initdb")
    assert info.value.exit_code == 3 and "scripts/pg-majors" in (info.value.hint or "")


def test_a_data_directory_of_another_major_is_refused_with_the_fix(tmp_path, pg_major):
    datadir = tmp_path / "data"
    cluster = LocalCluster(datadir)
    cluster.init()
    (datadir / "PG_VERSION").write_text(f"{pg_major - 1}\n")  # as if made by the previous major
    with pytest.raises(ToolError, match=f"made by PostgreSQL {pg_major - 1}, but .* is PostgreSQL {pg_major}"):
        cluster.start()
    assert not cluster.running()


def _sqlx_lock_id(name: str) -> int:
    """sqlx-postgres migrate.rs ``generate_lock_id``: 0x3d32ad9e * crc32(name) as i64."""
    return 0x3D32AD9E * zlib.crc32(name.encode("utf-8"))


@pytest.mark.parametrize("name", ["forgeerp", "Mixed-Case.db", "ünïcode-db"])
def test_sqlx_lock_id_is_the_key_the_advisory_lock_takes(pg_cluster, name):
    url = pg_cluster.create_database(name)
    holder = db.connect(url, autocommit=True)
    other = psycopg.connect(url, autocommit=True)
    try:
        with db.advisory_lock(holder) as key:
            assert key == _sqlx_lock_id(name)
            rows = other.execute(
                "SELECT classid::bigint, objid::bigint, objsubid FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND pid = %s",
                (holder.info.backend_pid,),
            ).fetchall()
            # one lock on a single bigint key (objsubid 1), split into its high and low halves
            assert rows == [((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF, 1)]
            # what sqlx's own `SELECT pg_advisory_lock($1)` would take is taken
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (_sqlx_lock_id(name),)).fetchone() == (False,)
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (_sqlx_lock_id(name),)).fetchone() == (True,)
        other.execute("SELECT pg_advisory_unlock_all()")
    finally:
        holder.close()
        other.close()
        pg_cluster.drop_database(name)


def test_advisory_lock_waits_for_sqlx_holding_the_key(database_url):
    """A ``migrate!()`` at application start-up holding sqlx's lock makes safemig wait, not run."""
    dbname = database_url.rsplit("/", 1)[1]
    sqlx = psycopg.connect(database_url, autocommit=True)
    ours = db.connect(database_url, autocommit=True)
    waiting, acquired = threading.Event(), threading.Event()

    def take() -> None:
        with db.advisory_lock(ours, on_wait=waiting.set):
            acquired.set()

    try:
        sqlx.execute("SELECT pg_advisory_lock(%s)", (_sqlx_lock_id(dbname),))
        thread = threading.Thread(target=take)
        thread.start()
        assert waiting.wait(10)
        assert not acquired.wait(0.3)
        sqlx.execute("SELECT pg_advisory_unlock(%s)", (_sqlx_lock_id(dbname),))
        thread.join(10)
        assert acquired.is_set()
    finally:
        sqlx.close()
        ours.close()


SCHEMA = r"""
CREATE TABLE measurements (id bigint, taken date NOT NULL, value numeric, PRIMARY KEY (id, taken))
    PARTITION BY RANGE (taken);
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
    PARTITION BY RANGE (taken);
CREATE TABLE measurements_2026_h1 PARTITION OF measurements_2026 FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE measurements_2026_h2 PARTITION OF measurements_2026 FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
CREATE TABLE measurements_other PARTITION OF measurements DEFAULT;
CREATE INDEX measurements_value ON measurements (value);
INSERT INTO measurements SELECT i, date '2025-06-01' + (i % 900), i * 1.5 FROM generate_series(1, 3000) AS i;

CREATE TABLE documents (id int PRIMARY KEY, tenant text NOT NULL, body oid NOT NULL);
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON documents FOR SELECT USING (tenant = current_setting('app.tenant', true));
CREATE POLICY tenant_writes ON documents AS RESTRICTIVE FOR INSERT
    WITH CHECK (tenant = current_setting('app.tenant', true));
INSERT INTO documents
    SELECT i, 'tenant-' || (i % 3), lo_from_bytea(0, decode(repeat(md5(i::text), 4000), 'hex'))
    FROM generate_series(1, 5) AS i;
"""

FACTS = {
    # tables with their bounds, and the partitions of the indexes attached to their parents' indexes
    "partitions": "SELECT c.relname, p.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
    " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent ORDER BY 1",
    "rows per partition": "SELECT tableoid::regclass::text, count(*), sum(value) FROM measurements"
    " GROUP BY 1 ORDER BY 1",
    "partitioned index": "SELECT indexrelid::regclass::text FROM pg_index"
    " WHERE indrelid = 'measurements_2026_h2'::regclass ORDER BY 1",
    "row security": "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'documents'",
    "policies": "SELECT policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies ORDER BY 1",
    "large objects": "SELECT d.id, d.tenant, d.body, lo_get(d.body) FROM documents d ORDER BY d.id",
    "large object count": "SELECT count(*) FROM pg_largeobject_metadata",
}


def _facts(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {what: conn.execute(sql).fetchall() for what, sql in FACTS.items()}


def test_backup_round_trip_keeps_partitions_rls_policies_and_large_objects(
    tmp_path, monkeypatch, database_url, database_url_b, pg_major
):
    from moto import mock_aws

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    before = _facts(database_url)
    assert sum(1 for _, _, bound in before["partitions"] if bound) == 5 and len(before["large objects"]) == 5
    assert before["row security"] == [("documents", True, True)] and len(before["policies"]) == 2

    write_config(tmp_path, "compat-backups")
    monkeypatch.setenv("PROD_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    config = load_config(tmp_path / "safemig.toml")
    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="compat-backups")
        backup = run_backup(config, "prod", database_url=database_url)
        restored = restore_backup(config, "prod", source=backup.uri, target_url=database_url_b)

    assert restored.sha256 == backup.sha256
    assert backup.metadata["server-version"].split(".")[0] == str(pg_major)
    if os.environ.get(PG_BIN_ENV):  # the matching major's pg_dump, not a newer one
        assert backup.metadata["pg-dump-version"].split(".")[0] == str(pg_major)
        assert Path(backup.pg_dump).parent == Path(os.environ[PG_BIN_ENV])
    assert _facts(database_url_b) == before
