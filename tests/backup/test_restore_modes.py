"""restore_backup's modes and options on real PostgreSQL and moto: jobs, select, --clean with partitions, roles."""

from __future__ import annotations

import psycopg
import pytest

from safemig.backup import restore_backup, run_backup
from tests.backup.conftest import snapshot


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_parallel_restore_from_a_verified_local_copy(project, config, database_url, database_url_b, s3):
    run_backup(config, "prod", database_url=database_url)
    result = restore_backup(config, "prod", source="latest", target_url=database_url_b, jobs=2)
    assert result.mode == "spool" and result.jobs == 2
    assert snapshot(database_url_b) == snapshot(database_url)
    assert rows(database_url_b, "SELECT count(*) FROM pg_indexes WHERE tablename = 'events'") == [(2,)]


def test_select_receives_the_toc_and_restores_only_what_it_returns(project, config, database_url, database_url_b, s3):
    run_backup(config, "prod", database_url=database_url)
    seen: list[list[str]] = []

    def schema_only_for_events(lines: list[str]) -> list[str]:
        seen.append(lines)
        return [line for line in lines if not (" TABLE DATA " in line and " events " in line)]

    result = restore_backup(config, "prod", source="latest", target_url=database_url_b, select=schema_only_for_events)
    assert any(" TABLE public events " in line for line in seen[0])
    assert result.mode == "spool"  # data left out: a stream could end (and commit) before its checksum is known
    assert rows(database_url_b, "SELECT count(*) FROM events") == [(0,)]
    assert rows(database_url_b, "SELECT count(*) FROM _sqlx_migrations") == [(3,)]

    def reject_nothing(lines: list[str]) -> list[str]:
        return list(reversed(lines))  # any order: restored in the archive's order

    with psycopg.connect(database_url_b, autocommit=True) as conn:
        conn.execute("DROP TABLE events, _sqlx_migrations")
    streamed = restore_backup(config, "prod", source="latest", target_url=database_url_b, select=reject_nothing)
    assert streamed.mode == "stream"
    assert snapshot(database_url_b) == snapshot(database_url)


def test_select_returning_a_foreign_line_is_a_bug_not_a_restore(project, config, database_url, database_url_b, s3):
    run_backup(config, "prod", database_url=database_url)
    with pytest.raises(ValueError, match="not in the archive's TOC"):
        restore_backup(config, "prod", source="latest", target_url=database_url_b, select=lambda lines: ["1; 2 3 TABLE x y z"])


def test_clean_replaces_a_partitioned_table_with_a_primary_key(project, config, database_url, s3):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE measurements (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);"
            "CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
            "CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');"
            "CREATE INDEX measurements_v ON measurements (v);"
            "INSERT INTO measurements SELECT i, '2024-06-01'::date + (i % 400), md5(i::text) FROM generate_series(1, 3000) i"
        )
    run_backup(config, "prod", database_url=database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM measurements WHERE id > 10")
    for jobs in (1, 2):
        result = restore_backup(config, "prod", source="latest", target_url=database_url, clean=True, jobs=jobs)
        assert result.cleaned
        assert rows(database_url, "SELECT count(*) FROM measurements") == [(3000,)]
        assert rows(database_url, "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'measurements%'") == [(6,)]


@pytest.fixture
def owned(database_url, pg_cluster):
    """prod's tables owned by app_owner, with a grant to app_reader: roles pg_cluster_b does not have."""
    pg_cluster.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_owner') THEN"
        " CREATE ROLE app_owner NOLOGIN; END IF;"
        " IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_reader') THEN CREATE ROLE app_reader LOGIN PASSWORD 'reader-pw-1';"
        " GRANT app_owner TO app_reader; END IF; END $$"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events OWNER TO app_owner; GRANT SELECT ON events TO app_reader")
    return database_url


def _drop_roles(cluster, url: str | None = None) -> None:
    if url is not None:
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT count(*) FROM pg_roles WHERE rolname IN ('app_reader', 'app_owner')").fetchone()[0] == 2:
                conn.execute("DROP OWNED BY app_reader, app_owner")
    cluster.psql("DROP ROLE IF EXISTS app_reader; DROP ROLE IF EXISTS app_owner")


def test_restore_onto_a_server_without_the_owning_roles(project, config, owned, database_url_b, pg_cluster_b, s3, cli):
    _drop_roles(pg_cluster_b)
    run_backup(config, "prod", database_url=owned)
    refused = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b)
    assert refused.exit_code == 3 and 'role "app_owner" does not exist' in refused.stderr
    assert rows(database_url_b, "SELECT to_regclass('events') IS NULL") == [(True,)]  # one transaction: nothing

    done = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b, "--no-owner", "--no-privileges")
    assert done.exit_code == 0, done.output
    assert snapshot(database_url_b) == snapshot(owned)
    assert rows(database_url_b, "SELECT tableowner FROM pg_tables WHERE tablename = 'events'") == [("postgres",)]


def test_create_roles_from_the_globals_stored_beside_the_backup(project, config, owned, database_url_b, pg_cluster_b, s3):
    _drop_roles(pg_cluster_b)
    created: tuple[str, ...] = ()
    try:
        run_backup(config, "prod", database_url=owned)
        result = restore_backup(config, "prod", source="latest", target_url=database_url_b, create_roles=True)
        created = result.roles_created
        assert {"app_owner", "app_reader"} <= set(created) and "postgres" not in created
        assert rows(database_url_b, "SELECT tableowner FROM pg_tables WHERE tablename = 'events'") == [("app_owner",)]
        assert rows(database_url_b, "SELECT has_table_privilege('app_reader', 'events', 'SELECT')") == [(True,)]
        assert rows(database_url_b, "SELECT pg_has_role('app_reader', 'app_owner', 'MEMBER')") == [(True,)]
        # no password was stored: the role exists, but cannot log in with prod's password
        assert rows(database_url_b, "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'app_reader'") == [(True,)]
    finally:
        _drop_roles(pg_cluster_b, database_url_b)
        for other in set(created) - {"app_owner", "app_reader"}:  # roles other tests left on prod's server
            pg_cluster_b.psql(f'DROP ROLE IF EXISTS "{other}"')
