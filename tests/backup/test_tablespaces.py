"""Tablespaces on restore, on two real clusters of one host: prod's objects live in a tablespace
in a temporary directory; the target's server lacks it, or gets it created in another directory."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

import safemig.backup.tablespaces as tablespaces_module
from safemig.backup import restore_backup, run_backup
from safemig.backup.tablespaces import stored_tablespaces
from safemig.errors import CheckFailed, DatabaseError, UsageError
from tests.backup.test_restore import corrupt_downloads


def rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def _server_dir(cluster, prefix: str) -> Path:
    """An empty directory the cluster's server (its OS user) may use for a tablespace."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    owner = os.stat(cluster.datadir)
    os.chown(path, owner.st_uid, owner.st_gid)
    return path


def _drop_tablespace(cluster, name: str) -> None:
    cluster.psql(f'DROP TABLESPACE IF EXISTS "{name}"')


@pytest.fixture
def tablespace(pg_cluster, pg_cluster_b):
    """A tablespace on prod's server (and its name dropped on both servers afterwards).

    Requested before ``project``/``database_url``, so it is torn down after their databases.
    """
    name = "ts_" + uuid.uuid4().hex[:8]
    where = _server_dir(pg_cluster, "safemig-ts-a-")
    pg_cluster.psql(f"CREATE TABLESPACE {name} LOCATION '{where}'")
    try:
        yield name, where
    finally:
        _drop_tablespace(pg_cluster_b, name)
        _drop_tablespace(pg_cluster, name)
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def placed(tablespace, database_url):
    """prod's ``events`` table, an index and a materialized view in the tablespace; a function whose
    body holds a ``SET default_tablespace`` line that is no placement."""
    name, _ = tablespace
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE events SET TABLESPACE {name}")
        conn.execute(f"ALTER INDEX events_tenant SET TABLESPACE {name}")
        conn.execute(f"CREATE MATERIALIZED VIEW tenants TABLESPACE {name} AS SELECT DISTINCT tenant FROM events")
        conn.execute("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\nSET default_tablespace = bogus;\nSELECT 1 $$")
    return name


def _placement(url: str) -> dict[str, str | None]:
    return dict(
        rows(
            url,
            "SELECT c.relname, t.spcname FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace"
            " WHERE c.relname IN ('events', 'events_tenant', 'tenants', 'events_pkey')",
        )
    )


def test_a_missing_tablespace_is_refused_before_anything_is_restored(tablespace, project, placed, database_url_b, s3, cli):
    run_backup_cli = cli("backup", "--env", "prod")
    assert run_backup_cli.exit_code == 0, run_backup_cli.output
    for extra in ([], ["--jobs", "2"]):  # streamed or spooled: refused before either
        refused = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b, *extra)
        assert refused.exit_code == 2, refused.output
        error = refused.stderr.strip().splitlines()[0]
        assert f"tablespace(s) the target's server" in error and f"{placed} (TABLE public.events and 2 more" in error
        assert "bogus" not in refused.stderr  # a function body's line is no placement
        assert "--no-tablespaces" in refused.stderr and "--create-tablespaces" in refused.stderr
        assert rows(database_url_b, "SELECT count(*) FROM pg_class WHERE relname = 'events'") == [(0,)]

    done = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b, "--no-tablespaces")
    assert done.exit_code == 0, done.output
    assert rows(database_url_b, "SELECT count(*) FROM events") == rows(project_url(), "SELECT count(*) FROM events")
    assert set(_placement(database_url_b).values()) == {None}  # the target's default tablespace


def project_url() -> str:
    return os.environ["PROD_DATABASE_URL"]


def test_create_tablespaces_in_another_directory_with_their_owner_options_and_grants(
    tablespace, project, config, placed, database_url_b, pg_cluster, pg_cluster_b, s3
):
    name, source_dir = tablespace
    owner = "ts_owner_" + uuid.uuid4().hex[:6]
    pg_cluster.psql(
        f"CREATE ROLE {owner} NOLOGIN; ALTER TABLESPACE {name} OWNER TO {owner};"
        f" ALTER TABLESPACE {name} SET (random_page_cost = 1.1); GRANT CREATE ON TABLESPACE {name} TO PUBLIC;"
        f" COMMENT ON TABLESPACE {name} IS 'fast disks;\nsecond line'"
    )
    target_dir = _server_dir(pg_cluster_b, "safemig-ts-b-")
    created_roles: tuple[str, ...] = ()
    try:
        run_backup(config, "prod", database_url=project_url())
        # the owner is missing on the target: refused before anything is created
        with pytest.raises(UsageError, match=f"owned by or granted to role.*{owner}"):
            restore_backup(
                config, "prod", source="latest", target_url=database_url_b, tablespaces="create",
                tablespace_locations={name: str(target_dir)},
            )
        # the stored directory is the source cluster's, in use on this host: PostgreSQL refuses, nothing is left
        with pytest.raises(DatabaseError, match=f"cannot create tablespace {name} at {source_dir}") as refused:
            restore_backup(config, "prod", source="latest", target_url=database_url_b, tablespaces="create", no_owner=True)
        assert "--tablespace-location" in (refused.value.hint or "")
        assert rows(database_url_b, "SELECT count(*) FROM pg_tablespace WHERE spcname = %s", (name,)) == [(0,)]

        result = restore_backup(
            config, "prod", source="latest", target_url=database_url_b, tablespaces="create",
            tablespace_locations={name: str(target_dir)}, create_roles=True,
        )
        created_roles = result.roles_created
        assert result.tablespaces_created == (name,) and owner in created_roles
        assert rows(
            database_url_b,
            "SELECT pg_tablespace_location(oid), pg_get_userbyid(spcowner), spcoptions,"
            " shobj_description(oid, 'pg_tablespace'), has_tablespace_privilege('public', oid, 'CREATE')"
            " FROM pg_tablespace WHERE spcname = %s",
            (name,),
        ) == [(str(target_dir), owner, ["random_page_cost=1.1"], "fast disks;\nsecond line", True)]
        assert _placement(database_url_b) == _placement(project_url())
        assert rows(database_url_b, "SELECT count(*) FROM events") == rows(project_url(), "SELECT count(*) FROM events")
    finally:
        with psycopg.connect(database_url_b, autocommit=True) as conn:
            conn.execute("DROP MATERIALIZED VIEW IF EXISTS tenants; DROP TABLE IF EXISTS events")
        _drop_tablespace(pg_cluster_b, name)
        for role in created_roles:
            pg_cluster_b.psql(f'DROP ROLE IF EXISTS "{role}"')
        pg_cluster.psql(f"ALTER TABLESPACE {name} OWNER TO postgres; DROP ROLE {owner}")
        shutil.rmtree(target_dir, ignore_errors=True)


def test_a_refused_restore_drops_the_tablespaces_it_created(
    tablespace, project, config, placed, database_url_b, pg_cluster_b, s3, monkeypatch
):
    name, _ = tablespace
    target_dir = _server_dir(pg_cluster_b, "safemig-ts-b-")
    try:
        run_backup(config, "prod", database_url=project_url())
        made: list[list[str]] = []
        real_create = tablespaces_module.create_tablespaces
        monkeypatch.setattr(tablespaces_module, "create_tablespaces", lambda *a: made.append(real_create(*a)) or made[-1])
        with monkeypatch.context() as patched:
            corrupt_downloads(patched, at_fraction=0.9)
            with pytest.raises(CheckFailed, match="does not match its recorded checksum"):
                restore_backup(
                    config, "prod", source="latest", target_url=database_url_b, tablespaces="create",
                    tablespace_locations={name: str(target_dir)},
                )
        assert made == [[name]]  # it was created before the damage was found ...
        assert rows(database_url_b, "SELECT count(*) FROM pg_tablespace WHERE spcname = %s", (name,)) == [(0,)]
        assert list(target_dir.iterdir()) == []  # ... and dropped again, PostgreSQL's version directory with it
    finally:
        _drop_tablespace(pg_cluster_b, name)
        shutil.rmtree(target_dir, ignore_errors=True)


def test_none_if_missing_restores_without_them_and_says_which(tablespace, project, config, placed, database_url_b, pg_cluster_b, s3, monkeypatch):
    name, _ = tablespace
    run_backup(config, "prod", database_url=project_url())
    result = restore_backup(config, "prod", source="latest", target_url=database_url_b, tablespaces="none-if-missing")
    assert result.tablespaces_omitted == (name,)
    assert set(_placement(database_url_b).values()) == {None}


def test_a_target_with_every_source_tablespace_keeps_the_placement_without_reading_the_archive(
    tablespace, project, config, placed, database_url_b, pg_cluster_b, s3, monkeypatch
):
    name, _ = tablespace
    target_dir = _server_dir(pg_cluster_b, "safemig-ts-b-")
    pg_cluster_b.psql(f"CREATE TABLESPACE {name} LOCATION '{target_dir}'")
    try:
        run_backup(config, "prod", database_url=project_url())
        others = {n for (n,) in rows(project_url(), "SELECT spcname FROM pg_tablespace")} - {"pg_default", "pg_global"}
        for other in others - {name}:  # left by tests running elsewhere on this server: give the target them too
            pytest.skip(f"prod's server holds another tablespace ({other})")

        def no_scan(*args, **kwargs):
            raise AssertionError("the globals said the target has every tablespace: no archive read needed")

        monkeypatch.setattr(tablespaces_module, "archive_tablespaces", no_scan)
        result = restore_backup(config, "prod", source="latest", target_url=database_url_b)
        assert result.tablespaces_omitted == () and result.tablespaces_created == ()
        assert _placement(database_url_b) == _placement(project_url())
    finally:
        with psycopg.connect(database_url_b, autocommit=True) as conn:
            conn.execute("DROP MATERIALIZED VIEW IF EXISTS tenants; DROP TABLE IF EXISTS events")
        _drop_tablespace(pg_cluster_b, name)
        shutil.rmtree(target_dir, ignore_errors=True)


def test_a_backup_without_globals_is_still_checked_from_its_archive(tablespace, project, config, placed, database_url_b, s3, monkeypatch):
    from safemig.backup.store import BackupInfo

    name, _ = tablespace
    run_backup(config, "prod", database_url=project_url())
    monkeypatch.setattr(BackupInfo, "globals", property(lambda self: None))  # as before the globals were kept
    with pytest.raises(UsageError, match=f"lacks: {name} "):
        restore_backup(config, "prod", source="latest", target_url=database_url_b)
    with pytest.raises(UsageError, match=f"no stored CREATE TABLESPACE for {name}"):
        restore_backup(config, "prod", source="latest", target_url=database_url_b, tablespaces="create")


def test_cli_options_are_checked_before_anything_runs(project, s3, cli, database_url_b):
    both = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b,
               "--no-tablespaces", "--create-tablespaces")
    assert both.exit_code == 2 and "contradict" in both.stderr
    bad = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b,
              "--create-tablespaces", "--tablespace-location", "fast")
    assert bad.exit_code == 2 and "expected NAME=DIR" in bad.stderr
    relative = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b,
                   "--create-tablespaces", "--tablespace-location", "fast=data/fast")
    assert relative.exit_code == 2 and "must be an absolute path" in relative.stderr
    alone = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b,
                "--tablespace-location", "fast=/srv/fast")
    assert alone.exit_code == 2 and "needs --create-tablespaces" in alone.stderr


def test_stored_tablespaces_reads_pg_dumpall_output():
    script = "\n".join(
        [
            "\\restrict abc",
            "SET default_transaction_read_only = off;",
            "CREATE ROLE app;",
            "CREATE TABLESPACE \"Fast Disks\" OWNER app LOCATION '/srv/it''s';",
            "ALTER TABLESPACE \"Fast Disks\" SET (random_page_cost=1.1);",
            "REVOKE ALL ON TABLESPACE \"Fast Disks\" FROM app;",
            "GRANT CREATE ON TABLESPACE \"Fast Disks\" TO reader GRANTED BY app;",
            "COMMENT ON TABLESPACE \"Fast Disks\" IS 'one;",
            "two';",
            "CREATE TABLESPACE slow OWNER postgres LOCATION '/srv/slow';",
            "SECURITY LABEL FOR selinux ON TABLESPACE slow IS 'x';",
            "\\unrestrict abc",
        ]
    )
    found = stored_tablespaces(script)
    assert set(found) == {"Fast Disks", "slow"}
    fast = found["Fast Disks"]
    assert (fast.owner, fast.location, fast.roles) == ("app", "/srv/it's", frozenset({"app", "reader"}))
    assert fast.statements[0].startswith("ALTER TABLESPACE") and fast.statements[-1].endswith("'one;\ntwo'")
    assert found["slow"].statements == ()  # a security label's provider may not exist on the target


def test_creating_needs_a_superuser_and_says_so_before_anything_is_done(tablespace, project, config, placed, database_url_b, pg_cluster_b, s3):
    from urllib.parse import urlsplit, urlunsplit

    name, _ = tablespace
    role = "restorer_" + uuid.uuid4().hex[:6]
    pg_cluster_b.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'restorer-pw-1'")
    parts = urlsplit(database_url_b)
    as_role = urlunsplit(parts._replace(netloc=f"{role}:restorer-pw-1@{parts.hostname}:{parts.port}"))
    try:
        run_backup(config, "prod", database_url=project_url())
        with pytest.raises(DatabaseError, match=f"needs a superuser, and {role} .* is not: nothing was restored"):
            restore_backup(config, "prod", source="latest", target_url=as_role, tablespaces="create", create_roles=True)
        assert rows(database_url_b, "SELECT count(*) FROM pg_class WHERE relname = 'events'") == [(0,)]
    finally:
        pg_cluster_b.psql(f"DROP ROLE {role}")


def test_the_chunks_the_toc_was_read_from_are_enough_to_find_the_tablespaces(tablespace, project, config, placed, s3, bucket_name):
    """A caller that already read the TOC from the head of its download passes those chunks: no second GET."""
    from safemig.backup.pgdump import pick_binary
    from safemig.backup.tablespaces import archive_tablespaces
    from safemig.backup.verify import toc_from_head

    name, _ = tablespace
    result = run_backup(config, "prod", database_url=project_url())
    body = s3.get_object(Bucket=bucket_name, Key=result.key)["Body"].read()
    head = [body[:8192], body[8192:16384]]  # the TOC and the start of the data, not the rest (129 KB)
    pg_restore = pick_binary("pg_restore", 0, None, purpose="read the archive")
    assert len(toc_from_head(iter(head), pg_restore, result.uri)) == result.toc_entries  # the whole TOC is there
    assert archive_tablespaces(head, pg_restore, result.uri) == {
        name: ["TABLE public.events", "MATERIALIZED VIEW public.tenants", "INDEX public.events_tenant"]
    }


def test_cli_create_tablespaces_at_a_given_location(tablespace, project, placed, database_url_b, pg_cluster_b, s3, cli):
    import json

    name, _ = tablespace
    target_dir = _server_dir(pg_cluster_b, "safemig-ts-b-")
    try:
        assert cli("backup", "--env", "prod").exit_code == 0
        done = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b,
                   "--create-tablespaces", "--tablespace-location", f"{name}={target_dir}", "--json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["tablespaces_created"] == [name]
        assert rows(database_url_b, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = %s", (name,)) == [
            (str(target_dir),)
        ]
        assert _placement(database_url_b) == _placement(project_url())
    finally:
        with psycopg.connect(database_url_b, autocommit=True) as conn:
            conn.execute("DROP MATERIALIZED VIEW IF EXISTS tenants; DROP TABLE IF EXISTS events")
        _drop_tablespace(pg_cluster_b, name)
        shutil.rmtree(target_dir, ignore_errors=True)
