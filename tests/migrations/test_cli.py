"""`safemig migrate ...` end to end (in-process CLI, real PostgreSQL): output, exit codes, redaction."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from urllib.parse import urlsplit

import pytest

from .conftest import scalar


@pytest.fixture
def three(project):
    project.write("001_create_a.sql", "CREATE TABLE a (x int);\n")
    project.write("002_create_b.sql", "CREATE TABLE b (x int);\nINSERT INTO b VALUES (1), (2), (3);\n")
    project.write("003_create_c.sql", "CREATE TABLE c (x int);\n")
    project.rollback("002_rollback_b.sql", "DROP TABLE IF EXISTS b;\n")
    project.rollback("003_rollback_c.sql", "DROP TABLE IF EXISTS c;\n")
    return project


def run(cli, project, url, *args):
    return cli("migrate", *args, "--database-url", url, cwd=project.root)


def test_run_verbose_then_nothing_to_do(cli, three, database_url):
    result = run(cli, three, database_url, "run", "-v")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Applying docker/migrations/002_create_b.sql" in out
    assert "line 2" in out and "INSERT 0 3, 3 rows" in out and "INSERT INTO b VALUES (1), (2), (3)" in out
    assert "Applied 2/create b (" in out and "2 statements)" in out
    assert "3 migration(s) applied; the database is at version 3." in out
    again = run(cli, three, database_url, "run")
    assert again.exit_code == 0 and "Nothing to apply: the database is at version 3." in again.stdout


def test_dry_run_prints_sql_and_touches_nothing(cli, three, database_url):
    result = run(cli, three, database_url, "run", "--dry-run", "--target-version", "2")
    assert result.exit_code == 0, result.output
    assert "-- Would apply docker/migrations/001_create_a.sql (1 statement, in one transaction)" in result.stdout
    assert "INSERT INTO b VALUES (1), (2), (3);" in result.stdout
    assert "003_create_c" not in result.stdout
    assert "2 migration(s) would be applied; nothing was changed" in result.stdout
    assert scalar(database_url, "SELECT to_regclass('_sqlx_migrations')") is None


def test_info_text_and_json(cli, three, database_url):
    run(cli, three, database_url, "run", "--target-version", "2")
    text = run(cli, three, database_url, "info")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "STATE", "INSTALLED", "ON", "TIME", "DESCRIPTION"]
    assert lines[1].split()[:2] == ["1", "applied"] and lines[3].split()[:2] == ["3", "pending"]
    data = json.loads(run(cli, three, database_url, "info", "--json").stdout)
    assert [(d["version"], d["state"]) for d in data] == [(1, "applied"), (2, "applied"), (3, "pending")]
    assert data[1]["execution_time_ns"] > 0 and data[2]["installed_on"] is None
    assert data[0]["checksum"] == hashlib.sha384(b"CREATE TABLE a (x int);\n").hexdigest()


def test_modified_missing_failed_and_out_of_order_refuse_with_exit_1(cli, three, database_url):
    assert run(cli, three, database_url, "run").exit_code == 0
    path = three.migrations / "002_create_b.sql"
    original = path.read_bytes()
    path.write_bytes(original + b"-- tweak\n")
    result = run(cli, three, database_url, "run")
    assert result.exit_code == 1
    assert "error: docker/migrations/002_create_b.sql: version 2 (create b) was modified after it was applied" in result.stderr
    assert hashlib.sha384(original).hexdigest() in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.output
    info = run(cli, three, database_url, "info")
    assert "modified" in info.stdout and "applied checksum" in info.stdout
    path.write_bytes(original)

    (three.migrations / "003_create_c.sql").unlink()
    result = run(cli, three, database_url, "run")
    assert result.exit_code == 1 and "version 3 (create c) is applied but no file for it exists" in result.stderr

    three.write("003_create_c.sql", "CREATE TABLE c (x int);\n")
    three.write("000_late.sql", "SELECT 1;\n")
    result = run(cli, three, database_url, "run")
    assert result.exit_code == 1 and "older than the newest applied version 3 (out of order)" in result.stderr
    result = run(cli, three, database_url, "run", "--allow-out-of-order")
    assert result.exit_code == 0 and "Applied 0/late" in result.stdout

    scalar(database_url, "UPDATE _sqlx_migrations SET success = false WHERE version = 1 RETURNING 1")
    result = run(cli, three, database_url, "run")
    assert result.exit_code == 1 and "version 1 (create a) is recorded as failed" in result.stderr


def test_failed_migration_exit_1_without_traceback(cli, three, database_url):
    three.write("004_broken.sql", "CREATE TABLE d (x int);\nINSERT INTO d VALUES ('not a number');\n")
    result = run(cli, three, database_url, "run")
    assert result.exit_code == 1
    assert "error: docker/migrations/004_broken.sql:2: apply of version 4 failed at statement 2" in result.stderr
    assert "22P02" in result.stderr and "rolled back" in result.stderr
    assert "Applied 3/create c" in result.stdout  # earlier ones stay applied
    assert scalar(database_url, "SELECT max(version) FROM _sqlx_migrations") == 3


def test_revert_newest_then_to_target(cli, three, database_url):
    run(cli, three, database_url, "run")
    result = run(cli, three, database_url, "revert")
    assert result.exit_code == 0 and "Reverted 3/create c" in result.stdout
    assert scalar(database_url, "SELECT to_regclass('c')") is None
    dry = run(cli, three, database_url, "revert", "--dry-run")
    assert "-- Would revert 2/create b with rollbacks/002_rollback_b.sql" in dry.stdout and "DROP TABLE IF EXISTS b;" in dry.stdout
    assert scalar(database_url, "SELECT to_regclass('b')") == "b"
    assert run(cli, three, database_url, "revert", "--target-version", "7").exit_code == 2
    # version 1 has no rollback: as sqlx, reverting to 0 reverts 2 and skips 1, which stays applied
    result = run(cli, three, database_url, "revert", "--target-version", "0")
    assert result.exit_code == 0, result.output
    assert "Reverted 2/create b" in result.stdout and "Skipped 1/create a: no rollback script" in result.stdout
    assert scalar(database_url, "SELECT array_agg(version) FROM _sqlx_migrations") == [1]
    assert scalar(database_url, "SELECT to_regclass('a')") == "a"
    # none left with a rollback: sqlx's message, exit 0
    result = run(cli, three, database_url, "revert")
    assert result.exit_code == 0 and "No migrations available to revert" in result.stdout


def test_add_uses_the_same_padding_and_template(cli, project):
    project.write("0041_create_x.sql", "SELECT 1;")
    result = cli("migrate", "add", "add user preferences table", cwd=project.root)
    assert result.exit_code == 0, result.output
    created = project.migrations / "0042_add_user_preferences_table.sql"
    rollback = project.rollbacks / "0042_rollback_add_user_preferences_table.sql"
    assert f"Created docker/migrations/{created.name}" in result.stdout
    text = created.read_text()
    assert text.startswith(f"-- Migration: add user preferences table\n-- Created: {date.today().isoformat()}\n--\n")
    assert rollback.read_text().startswith(f"-- Rollback for {created.name}\n")
    result = cli("migrate", "add", "create_events_projection", cwd=project.root)
    assert (project.rollbacks / "0043_rollback_events_projection.sql").is_file()
    assert cli("migrate", "add", "../escape", cwd=project.root).exit_code == 2


def test_add_in_an_empty_directory_uses_a_timestamp_as_sqlx(cli, project):
    assert cli("migrate", "add", "first", cwd=project.root).exit_code == 0
    (created,) = project.migrations.iterdir()
    version = created.name.split("_", 1)[0]
    assert created.name.endswith("_first.sql") and len(version) == 14 and version.startswith("20")


def test_mark_applied_records_the_real_checksum(cli, three, database_url):
    result = run(cli, three, database_url, "mark-applied", "2", "--reason", "built by hand, INC-42")
    assert result.exit_code == 0, result.output
    expected = hashlib.sha384((three.migrations / "002_create_b.sql").read_bytes()).digest()
    assert bytes(scalar(database_url, "SELECT checksum FROM _sqlx_migrations WHERE version = 2")) == expected
    assert "Marked version 2 (create b) as applied without running it" in result.stdout
    assert "INC-42" in result.stdout and expected.hex() in result.stdout
    assert scalar(database_url, "SELECT to_regclass('b')") is None  # nothing ran

    scalar(database_url, "UPDATE _sqlx_migrations SET success = false, checksum = '\\x00' WHERE version = 2 RETURNING 1")
    result = run(cli, three, database_url, "mark-applied", "2", "--reason", "fixed")
    assert "turned its failed public._sqlx_migrations row into a successful one" in result.stdout
    assert scalar(database_url, "SELECT success FROM _sqlx_migrations WHERE version = 2") is True

    (three.migrations / "002_create_b.sql").write_text("-- edited\n")
    assert run(cli, three, database_url, "mark-applied", "2", "--reason", "x").exit_code == 1
    assert run(cli, three, database_url, "mark-applied", "9", "--reason", "x").exit_code == 2
    assert run(cli, three, database_url, "mark-applied", "1", "--reason", " ").exit_code == 2


def test_wrong_password_exit_3_and_never_printed(cli, three, pg_cluster):
    url = pg_cluster.url("postgres", password="Hunter2-Very-Secret")
    for command in (["run"], ["info"], ["revert"], ["mark-applied", "1", "--reason", "r"]):
        result = cli("migrate", *command, "--database-url", url, cwd=three.root)
        assert result.exit_code == 3, (command, result.output)
        assert "Hunter2-Very-Secret" not in result.output
        assert "postgres:****@127.0.0.1" in result.stderr


def test_database_from_env_config_and_libpq_variables(cli, three, database_url, monkeypatch):
    (three.root / "safemig.toml").write_text('[envs.dev]\ndatabase_url = "${DEV_DB}"\nlock_timeout = "2s"\n')
    result = cli("migrate", "info", "--env", "dev", cwd=three.root)
    assert result.exit_code == 2 and "${DEV_DB}" in result.stderr
    monkeypatch.setenv("DEV_DB", database_url)
    assert cli("migrate", "run", "--env", "dev", "--target-version", "1", cwd=three.root).exit_code == 0

    monkeypatch.delenv("DEV_DB")
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = cli("migrate", "run", "--target-version", "2", cwd=three.root)
    assert result.exit_code == 0 and "Applied 2/create b" in result.stdout

    monkeypatch.delenv("DATABASE_URL")
    parts = urlsplit(database_url)
    for key, value in {"PGHOST": parts.hostname, "PGPORT": str(parts.port), "PGUSER": parts.username,
                       "PGPASSWORD": parts.password, "PGDATABASE": parts.path.lstrip("/")}.items():
        monkeypatch.setenv(key, value)
    result = cli("migrate", "run", cwd=three.root)
    assert result.exit_code == 0 and "Applied 3/create c" in result.stdout


def test_no_database_and_bad_timeout_are_usage_errors(cli, three, database_url):
    result = cli("migrate", "run", cwd=three.root)
    assert result.exit_code == 2 and "no database given" in result.stderr
    result = run(cli, three, database_url, "run", "--lock-timeout", "later")
    assert result.exit_code == 2 and "--lock-timeout = 'later' is not a value PostgreSQL accepts" in result.stderr


def test_migrate_modules_do_not_import_psycopg_at_import_time():
    """`safemig lint` loads the command modules; psycopg must wait until a database command runs."""
    import subprocess
    import sys

    code = (
        "import sys, safemig.cli; safemig.cli.build_app();"
        "import safemig.migrations.ledger, safemig.migrations.engine, safemig.migrations.operations, safemig.db;"
        "print(sorted(m for m in ('psycopg', 'boto3', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ctrl_c_mid_migration_rolls_back_and_releases_the_lock(project, database_url):
    import os
    import signal
    import subprocess
    import sys
    import time

    project.write("001_slow.sql", "CREATE TABLE slow_half (a int);\nSELECT pg_sleep(60);\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "safemig.cli", "migrate", "run", "--database-url", database_url],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if scalar(database_url, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(60)%'"):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert scalar(database_url, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(60)%'") == 0
    assert scalar(database_url, "SELECT to_regclass('slow_half')") is None
    assert scalar(database_url, "SELECT count(*) FROM _sqlx_migrations") == 0
    assert scalar(database_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


def test_next_version_keeps_timestamp_versions(project):
    from safemig.migrations.operations import next_version_prefix

    project.write("20240101120000_init.sql", "SELECT 1;")
    prefix = next_version_prefix(project.discover())
    assert len(prefix) == 14 and int(prefix) > 20240101120000
    project.write("7_x.sql", "SELECT 1;")
    (project.migrations / "20240101120000_init.sql").unlink()
    assert next_version_prefix(project.discover()) == "8"
