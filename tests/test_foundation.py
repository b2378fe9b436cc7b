"""The shared foundation: config loading, URL redaction, sqlx-compatible file discovery."""

from __future__ import annotations

import hashlib

import pytest

from safemig.config import load_config, resolve_database_url
from safemig.errors import ConfigError, MigrationFileError, UsageError
from safemig.migrations.files import discover, find_rollback, parse_name
from safemig.redact import mask_url, redact


def test_parse_name_matches_sqlx():
    assert parse_name("001_create_events_table.sql") == (1, "create events table", "simple")
    assert parse_name("20240101120000_add_x.up.sql") == (20240101120000, "add x", "up")
    assert parse_name("2_add_x.down.sql") == (2, "add x", "down")
    # sqlx derives the description with trim_end_matches, which strips every repeated suffix
    assert parse_name("3_add_x.sql.sql") == (3, "add x", "simple")
    assert parse_name("4_add_x.up.sql.up.sql") == (4, "add x", "up")
    assert parse_name("README.md") is None
    # Rust's i64::from_str takes one sign (discover() warns about it)
    assert parse_name("-1_neg.sql") == (-1, "neg", "simple")
    assert parse_name("+2_pos.sql") == (2, "pos", "simple")


@pytest.mark.parametrize("name", ["abc_create.sql", "1a_x.sql", "create.sql", "\u0661_x.sql", "--1_x.sql", "_x.sql"])
def test_parse_name_refuses_non_integer_prefix(name):
    with pytest.raises(MigrationFileError) as info:
        parse_name(name)
    assert name in info.value.message


def test_discover_orders_by_version_and_checksums_raw_bytes(tmp_path):
    (tmp_path / "10_b.sql").write_bytes(b"SELECT 2;\r\n")
    (tmp_path / "9_a.sql").write_bytes(b"-- no-transaction\nSELECT 1;\n")
    (tmp_path / "README.md").write_text("docs")
    found = discover(tmp_path)
    assert [m.version for m in found] == [9, 10]
    assert found[0].no_transaction and not found[1].no_transaction
    assert found[1].checksum == hashlib.sha384(b"SELECT 2;\r\n").digest()


def test_discover_refuses_duplicates_and_bad_utf8(tmp_path):
    (tmp_path / "1_a.sql").write_text("SELECT 1;")
    (tmp_path / "01_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationFileError, match="duplicate migration version 1"):
        discover(tmp_path)
    (tmp_path / "01_b.sql").unlink()
    (tmp_path / "2_c.sql").write_bytes(b"SELECT 'caf\xe9';\n")
    with pytest.raises(MigrationFileError, match=r"2_c.sql:1: not valid UTF-8 at byte offset 11"):
        discover(tmp_path)


def test_rollback_lookup_compares_versions_as_integers(tmp_path):
    migrations = tmp_path / "m"
    rollbacks = tmp_path / "r"
    migrations.mkdir(), rollbacks.mkdir()
    (migrations / "004_x.sql").write_text("SELECT 1;")
    (rollbacks / "4_rollback_x.sql").write_text("SELECT 1;")
    (m,) = discover(migrations)
    assert find_rollback(m, rollbacks).name == "4_rollback_x.sql"


def test_config_interpolates_lazily(tmp_path, monkeypatch):
    (tmp_path / "safemig.toml").write_text(
        '[envs.prod]\ndatabase_url = "${PROD_URL}"\nstaging = "staging"\n'
        '[envs.staging]\ndatabase_url = "${STAGING_URL:-postgresql://localhost/st}"\n'
    )
    config = load_config(cwd=tmp_path)
    assert config.migrations_dir == (tmp_path / "migrations").resolve()  # neither directory exists: sqlx's default
    assert resolve_database_url(config, env="staging") == "postgresql://localhost/st"
    with pytest.raises(ConfigError, match=r"envs.prod.database_url .* \$\{PROD_URL\}"):
        resolve_database_url(config, env="prod")
    monkeypatch.setenv("PROD_URL", "postgresql://u:pw@h/db")
    assert resolve_database_url(config, env="prod") == "postgresql://u:pw@h/db"
    with pytest.raises(UsageError, match="unknown env 'qa'"):
        resolve_database_url(config, env="qa")


def test_config_from_pyproject_and_bad_toml(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.safemig]\nmigrations_dir = "db"\n')
    assert load_config(cwd=tmp_path).migrations_dir == (tmp_path / "db").resolve()
    (tmp_path / "safemig.toml").write_text("migrations_dir = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(cwd=tmp_path)


def test_redaction_masks_passwords_and_keys():
    assert mask_url("postgresql://app:s3cr%40t@db.example:5432/forge") == "postgresql://app:****@db.example:5432/forge"
    text = 'failed: postgres://u:hunter2@h/db password=abc123 aws_secret_access_key=wJalrXUtnFEMI/K7MDENG AKIAIOSFODNN7EXAMPLE'
    out = redact(text)
    for secret in ("hunter2", "abc123", "wJalrXUtnFEMI", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in out


def test_cli_version_and_unknown_command(cli):
    result = cli("--version")
    assert result.exit_code == 0 and "safemig" in result.stdout
    assert cli("no-such-command").exit_code == 2


def test_local_cluster_serves_a_fresh_database(database_url):
    import psycopg

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_source_option_replaces_migrations_dir(tmp_path):
    (tmp_path / "safemig.toml").write_text('migrations_dir = "db/migrations"\n')
    assert load_config(cwd=tmp_path, source="other").migrations_dir == (tmp_path / "other").resolve()
    assert load_config(cwd=tmp_path).migrations_dir == (tmp_path / "db/migrations").resolve()
