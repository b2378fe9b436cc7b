"""Gate 4 end to end (the CLI as a subprocess, prod on pg_cluster, the staging server on pg_cluster_b,
moto's S3 server): the rehearsal on a restore of the fresh backup, schema-diffed rollbacks, standing staging."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from safemig.local.postgres import DEFAULT_PASSWORD
from tests.backup.test_tablespaces import tablespace  # noqa: F401 - a fixture: a tablespace on prod's server
from tests.deploy.test_pipeline import _gate_verdicts, _scratch_databases

VALIDATE = (
    "ALTER TABLE items DROP CONSTRAINT IF EXISTS items_name_present;\n"
    "ALTER TABLE items ADD CONSTRAINT items_name_present CHECK (name IS NOT NULL) NOT VALID;\n"
    "-- safemig:ignore validate-in-same-transaction -- the test needs the failure in one migration\n"
    "ALTER TABLE items VALIDATE CONSTRAINT items_name_present;\n"
)


def _run(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def _ledger(project, url: str) -> list[tuple]:
    return project.query(url, "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")


def test_prod_rows_a_constraint_rejects_fail_the_rehearsal_not_prod(project):
    """The issue's first story: staging is empty, prod holds a row 004's constraint rejects."""
    project.apply_directly(project.prod_url, [1])
    _run(project.prod_url, "INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 500) g")
    _run(project.prod_url, "INSERT INTO items VALUES (501, NULL)")
    project.migration("004_name_present.sql", VALIDATE)
    project.rollback("004_rollback_name_present.sql", "ALTER TABLE items DROP CONSTRAINT IF EXISTS items_name_present;\n")
    before = _ledger(project, project.prod_url)

    result = project.deploy()
    assert result.exit_code == 1, result.output
    assert "Staging rehearsal: FAILED" in result.stdout
    assert "applying 004_name_present.sql" in result.stderr and "23514" in result.stderr  # check_violation
    assert "prod is untouched" in result.stderr
    assert "[5/6] Production apply: not run: staging failed" in result.stdout
    assert "Report: passed" not in result.stdout
    # prod: neither 002 nor 003 (which passed the rehearsal) was applied; its schema is as it was
    assert _ledger(project, project.prod_url) == before
    assert project.columns(project.prod_url, "items") == ["id", "name"]
    assert _scratch_databases(project) == []
    assert project.versions(project.staging_url) == []  # the staging env's own database was not touched
    (record,) = project.records()
    assert record["failed_gate"] == "staging"
    ran_on = record["rehearsal"]["ran_on"]
    assert ran_on["backup_uri"] == record["backup"]["uri"] and ran_on["row_counts"] == {"public.items": 501}
    assert ran_on["scope"]["relations"] == ["public._sqlx_migrations", "public.items"]  # the ledger's rows too
    assert [a["version"] for a in record["rehearsal"]["applied"]] == [2, 3]


def test_a_rollback_that_leaves_a_column_behind_is_named_and_can_be_made_fatal(project):
    project.rollback("002_rollback_note.sql", "SELECT 1;  -- forgot to drop the column\n")
    result = project.deploy()
    assert result.exit_code == 0, result.output
    assert "the rollback of 002_add_note.sql does not restore the schema: column public.items.note left behind" in result.stdout
    (record,) = project.records()
    assert _gate_verdicts(record)["staging"] == "passed with warnings"
    by_version = {r["version"]: r["differences"] for r in record["rehearsal"]["rollback_schema"]}
    assert by_version[3] == [] and by_version[1] == []
    assert by_version[2] == [
        {"kind": "column", "object": "public.items.note", "change": "left behind", "before": None, "after": "text"}
    ]

    # the same on a fresh prod, with the setting that makes it a failure
    _run(project.prod_url, "DROP TABLE items; DROP TABLE _sqlx_migrations")
    project.write_config(rollback_must_restore_schema="true")
    strict = project.deploy()
    assert strict.exit_code == 1, strict.output
    assert "Staging rehearsal: FAILED" in strict.stdout
    assert "the rollback of 002_add_note.sql does not restore the schema: column public.items.note left behind" in strict.stderr
    assert "rollback_must_restore_schema = false" in strict.stderr
    assert project.versions(project.prod_url) == []
    record = project.records()[-1]
    assert record["failed_gate"] == "staging"
    assert record["rehearsal"]["rollback_schema"][-1]["differences"][0]["object"] == "public.items.note"
    assert _scratch_databases(project) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_during_the_rehearsal_leaves_no_scratch_database(project, signum):
    project.migration("004_slow.sql", "SELECT pg_sleep(60);\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "safemig.cli", "deploy", "--env", "prod"],
        cwd=project.root,
        env={**os.environ, **project.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        sleeping = False
        while not sleeping and proc.poll() is None and time.monotonic() < deadline:
            sleeping = bool(
                project.query(
                    project.staging_url,
                    "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND datname LIKE '%\\_rehearsal\\_%'",
                )
            )
            time.sleep(0.05)
        if not sleeping:
            proc.kill()
            raise AssertionError("the deploy never reached the rehearsal: " + "".join(proc.communicate()))
        assert _scratch_databases(project)  # there while it runs
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert "Staging rehearsal: FAILED" in stdout and "interrupted" in stdout
    assert _scratch_databases(project) == []
    assert project.versions(project.prod_url) == []
    record = project.records()[-1]
    assert (record["status"], record["failed_gate"], record["error"]) == ("failed", "staging", "interrupted")


def test_keep_rehearsal_leaves_the_database_and_prints_its_masked_url(project):
    result = project.deploy("--keep-rehearsal")
    assert result.exit_code == 0, result.output
    (kept,) = _scratch_databases(project)
    assert f"rehearsal database kept (--keep-rehearsal): postgresql://postgres:****@127.0.0.1:" in result.stdout
    assert f"/{kept}; drop it when done" in result.stdout
    assert DEFAULT_PASSWORD not in result.output
    assert project.query(project.staging_url.rsplit("/", 1)[0] + "/" + kept, "SELECT count(*) FROM items")[0][0] == 0
    _run(project.staging_url, f'DROP DATABASE "{kept}" WITH (FORCE)')


def test_preflight_refuses_a_staging_role_that_cannot_create_databases(project):
    role = "nocreate_" + uuid.uuid4().hex[:8]
    _run(project.staging_url, f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    try:
        url = project.staging_url.replace(f"postgres:{DEFAULT_PASSWORD}@", f"{role}:pw-{role}@")
        result = project.run_cli("deploy", "--env", "prod", cwd=project.root, env={**project.env, "STAGING_DATABASE_URL": url})
        assert result.exit_code == 2, result.output
        assert f"role {role} may not create databases" in result.stderr
        assert 'rehearsal = "staging"' in result.stderr
        assert project.s3_keys() == [] and project.versions(project.prod_url) == []
    finally:
        _run(project.staging_url, f"DROP ROLE {role}")


def test_a_rehearsal_that_does_not_fit_in_the_window_stops_before_prod(project):
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=1), now + timedelta(minutes=2)
    project.write_config(maintenance_window=f'"Mon-Sun {start:%H:%M}-{end:%H:%M} UTC"', window_margin="100")
    project.migration("004_slow.sql", "SELECT pg_sleep(2);\n")
    result = project.deploy()
    assert result.exit_code == 1, result.output
    assert "Staging rehearsal: FAILED" in result.stdout
    assert "with window_margin 100 that is" in result.stderr and "but the maintenance window closes in" in result.stderr
    assert project.versions(project.prod_url) == []
    assert _scratch_databases(project) == []


# -- standing staging -------------------------------------------------------------------------


def test_standing_staging_failure_is_put_back_so_the_fixed_file_deploys(project):
    project.write_config(rehearsal='"staging"')
    project.apply_directly(project.prod_url, [1, 2, 3])
    project.apply_directly(project.staging_url, [1, 2, 3])
    flag = project.migration(
        "004_flag.sql",
        "-- safemig:ignore not-idempotent -- the bug this test wants found by the second run\n"
        "ALTER TABLE items ADD COLUMN flag int;\n",
    )
    project.rollback("004_rollback_flag.sql", "ALTER TABLE items DROP COLUMN IF EXISTS flag;\n")

    failed = project.deploy()
    assert failed.exit_code == 1, failed.output
    assert "re-running 004_flag.sql" in failed.stderr and "42701" in failed.stderr
    assert "staging was put back as this rehearsal found it (reverted 4)" in failed.stderr
    assert project.versions(project.staging_url) == [1, 2, 3]
    assert "flag" not in project.columns(project.staging_url, "items")
    assert project.versions(project.prod_url) == [1, 2, 3]
    assert project.records()[-1]["rehearsal"]["staging_restored"] == [4]

    flag.write_text("ALTER TABLE items ADD COLUMN IF NOT EXISTS flag int;\n")  # the fix
    fixed = project.deploy()
    assert fixed.exit_code == 0, fixed.output
    assert project.versions(project.prod_url) == [1, 2, 3, 4] and project.versions(project.staging_url) == [1, 2, 3, 4]


def test_standing_staging_whose_schema_differs_from_prod_is_refused(project):
    project.write_config(rehearsal='"staging"')
    project.apply_directly(project.prod_url, [1])
    project.apply_directly(project.staging_url, [1])
    _run(project.staging_url, "ALTER TABLE items ADD COLUMN stray int")  # someone testing by hand
    result = project.deploy()
    assert result.exit_code == 1, result.output
    assert "staging env staging's schema differs from prod's where the pending migrations act" in result.stderr
    assert "column public.items.stray only on staging" in result.stderr
    assert 're-seed staging' in result.stderr and 'rehearsal = "restore"' in result.stderr
    assert project.versions(project.prod_url) == [1] and project.versions(project.staging_url) == [1]


def test_standing_staging_aligns_with_prod_first(project):
    project.write_config(rehearsal='"staging"')
    project.apply_directly(project.prod_url, [1])
    result = project.deploy()
    assert result.exit_code == 0, result.output
    record = project.records()[-1]
    assert record["rehearsal"]["mode"] == "staging" and record["rehearsal"]["aligned_applied"] == [1]
    assert project.versions(project.staging_url) == [1, 2, 3]


@pytest.mark.slow
def test_rehearsal_on_200k_prod_rows_measures_prod_sized_work(project):
    project.apply_directly(project.prod_url, [1, 2, 3])
    _run(project.prod_url, "INSERT INTO items (id, name) SELECT g, 'n' || (g % 1000) FROM generate_series(1, 200000) g")
    _run(project.prod_url, "ANALYZE items")
    project.migration("004_backfill.sql", "UPDATE items SET note = 'n/a' WHERE note IS NULL;\n")
    project.migration(
        "005_index_note.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_items_note ON items (note);\n"
    )
    project.rollback("004_rollback_backfill.sql", "UPDATE items SET note = NULL WHERE note = 'n/a';\n")
    project.rollback("005_rollback_index_note.sql", "-- no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS idx_items_note;\n")
    result = project.deploy(timeout=300)
    assert result.exit_code == 0, result.output
    record = project.records()[-1]
    rehearsal = record["rehearsal"]
    assert rehearsal["ran_on"]["row_counts"] == {"public.items": 200000}
    backfill = next(a for a in rehearsal["applied"] if a["version"] == 4)
    assert backfill["statements"][0]["rows"] == 200000  # the rehearsal updated prod's rows, not an empty table's
    index = next(lk for lk in record["locks"] if lk["version"] == 5 and lk["relation"] == "public.items")
    assert index["mode"] == "SHARE UPDATE EXCLUSIVE" and index["prod_rows_estimate"] == 200000
    assert project.query(project.prod_url, "SELECT count(*) FROM items WHERE note = 'n/a'")[0][0] == 200000
    assert _scratch_databases(project) == []


def test_a_policy_naming_a_role_the_staging_server_lacks_still_restores_and_the_role_goes_again(project):
    role = "app_reader_" + uuid.uuid4().hex[:8]
    project.apply_directly(project.prod_url, [1])
    _run(
        project.prod_url,
        f"CREATE ROLE {role} NOLOGIN; ALTER TABLE items ENABLE ROW LEVEL SECURITY;"
        f"CREATE POLICY readers ON items FOR SELECT TO {role} USING (true)",
    )
    try:
        result = project.deploy()
        assert result.exit_code == 0, result.output
        assert "the restore creates them" not in result.stdout  # one note, said once they exist
        record = project.records()[-1]
        created = record["rehearsal"]["ran_on"]["roles_created"]
        assert created == [role]  # exactly the roles policies name: no other role of prod's server
        assert result.stdout.count(f"role(s) {role}") == 1 and f"created role(s) {role} (NOLOGIN)" in result.stdout
        left = project.query(project.staging_url, "SELECT rolname FROM pg_roles")
        assert not set(created) & {r[0] for r in left}  # all dropped again
        assert _scratch_databases(project) == []
    finally:
        _run(project.prod_url, f"DROP POLICY readers ON items; DROP ROLE {role}")


_IN_TABLESPACE = "CREATE TABLE IF NOT EXISTS audit (id bigint) TABLESPACE {name};\n"


def _spaces(url: str, name: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT spcname FROM pg_tablespace WHERE spcname = %s", (name,))]


def test_a_tablespace_the_staging_server_lacks_is_created_in_place_for_the_rehearsal(tablespace, project, pg_major):
    """prod's table lives in a tablespace staging's server lacks, and a pending migration names it: as a
    superuser on 15+, the rehearsal creates it in place, restores prod's placement, runs the migration,
    and drops the tablespace again; prod gets the migration."""
    if pg_major < 15:
        pytest.skip("in-place tablespaces are PostgreSQL 15's")
    name, _ = tablespace
    project.apply_directly(project.prod_url, [1])
    _run(project.prod_url, f"ALTER TABLE items SET TABLESPACE {name}; INSERT INTO items VALUES (1, 'one')")
    project.migration("004_audit.sql", _IN_TABLESPACE.format(name=name))
    project.rollback("004_rollback_audit.sql", "DROP TABLE IF EXISTS audit;\n")
    result = project.deploy()
    assert result.exit_code == 0, result.output
    assert result.stdout.count(f"created tablespace(s) {name} in place on staging's server") == 1
    assert "restored into the scratch database's default tablespace" not in result.stdout
    (record,) = project.records()
    ran_on = record["rehearsal"]["ran_on"]
    assert ran_on["tablespaces_created"] == [name] and "tablespaces_omitted" not in ran_on
    assert [a["version"] for a in record["rehearsal"]["applied"]] == [2, 3, 4]
    assert _spaces(project.staging_url, name) == []  # dropped again
    assert _scratch_databases(project) == []
    placed = project.query(
        project.prod_url,
        "SELECT t.spcname FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace WHERE c.relname = 'audit'",
    )
    assert placed == [(name,)]


def test_without_a_superuser_the_tablespace_is_left_out_and_a_migration_naming_it_fails_with_why(
    tablespace, project, pg_cluster_b, pg_major
):
    """staging's role may not create tablespaces: the restore leaves placement out and says why it could
    not create them; the migration that names one fails the rehearsal, prod untouched."""
    name, _ = tablespace
    role = "rehearser_" + uuid.uuid4().hex[:6]
    password = uuid.uuid4().hex
    pg_cluster_b.psql(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'")
    try:
        database = project.staging_url.rsplit("/", 1)[1]
        project.staging_url = pg_cluster_b.url(database, user=role, password=password)
        project.apply_directly(project.prod_url, [1])
        _run(project.prod_url, f"ALTER TABLE items SET TABLESPACE {name}; INSERT INTO items VALUES (1, 'one')")
        before = _ledger(project, project.prod_url)
        project.migration("004_audit.sql", _IN_TABLESPACE.format(name=name))
        project.rollback("004_rollback_audit.sql", "DROP TABLE IF EXISTS audit;\n")
        result = project.deploy()
        assert result.exit_code == 1, result.output
        assert f"server lacks tablespace(s) {name} that prod's objects are in" in result.stdout
        why = (
            f"role {role} is not a superuser, which creating a tablespace needs"
            if pg_major >= 15
            else f"its server is PostgreSQL {pg_major}, and in-place tablespaces need 15 or later"
        )
        assert f"cannot be created in place there ({why})" in result.stdout
        assert "applying 004_audit.sql" in result.stderr and f'tablespace "{name}" does not exist' in result.stderr
        assert _ledger(project, project.prod_url) == before
        (record,) = project.records()
        assert record["rehearsal"]["ran_on"]["tablespaces_omitted"] == [name]
        assert record["rehearsal"]["ran_on"]["tablespaces_created"] == []
        assert _scratch_databases(project) == []
    finally:
        for db in pg_cluster_b.psql(f"SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = '{role}')").split():
            pg_cluster_b.psql(f'DROP DATABASE IF EXISTS "{db}"')
        pg_cluster_b.psql(f"DROP ROLE IF EXISTS {role}")


def test_a_failing_dry_run_writes_no_record_and_shows_the_rehearsal_it_would_run(project):
    plan = project.deploy("--dry-run")
    assert plan.exit_code == 0, plan.output
    assert "restore that backup (schema and the data of the tables the migrations touch) into a scratch database" in plan.stdout
    project.migration("004_broken.sql", "ALTER TABLEE items ADD COLUMN x TEXT;\n")
    failed = project.deploy("--dry-run")
    assert failed.exit_code == 1, failed.output
    assert "Lint: FAILED" in failed.stdout and "Report: passed" not in failed.stdout
    assert project.records() == [] and project.s3_keys() == []
