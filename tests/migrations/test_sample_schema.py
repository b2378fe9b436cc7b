"""The ForgeERP sample schema in docker/migrations: idempotent, tenant-isolated, reversible."""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from safemig.migrations.engine import Migrator
from safemig.migrations.files import discover, find_rollback, read_sql
from tests.conftest import REPO_ROOT

from .conftest import scalar

MIGRATIONS = REPO_ROOT / "docker" / "migrations"
ROLLBACKS = REPO_ROOT / "rollbacks"
TABLES = {"events", "snapshots", "projection_offsets", "inventory_stock"}


def test_layout_matches_the_guide():
    names = [m.path.name for m in discover(MIGRATIONS)]
    assert names == [
        "001_create_events_table.sql",
        "002_create_snapshots_table.sql",
        "003_create_rls_policies.sql",
        "004_create_read_models.sql",
    ]
    assert (MIGRATIONS / "README.md").is_file()
    for m in discover(MIGRATIONS):
        script = find_rollback(m, ROLLBACKS)
        assert script is not None and script.name.startswith(f"{m.path.name[:3]}_rollback_"), m.name
        text = read_sql(script)[1]
        statements = [line for line in text.splitlines() if line.strip() and not line.startswith("--")]
        assert statements and all("IF EXISTS" in s for s in statements if s.startswith("DROP")), script


def test_every_created_table_is_tenant_scoped_in_its_own_migration():
    for m in discover(MIGRATIONS):
        sql = m.sql
        assert not re.search(r"\bserial\b|\bjson\b", sql, re.IGNORECASE), m.name
        for table in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", sql):
            body = sql[sql.index(f"CREATE TABLE IF NOT EXISTS {table}"):]
            assert "tenant_id UUID NOT NULL" in body.split(");", 1)[0], (m.name, table)
            assert f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY" in sql, (m.name, table)
            assert re.search(rf"policyname = '{table}_tenant_isolation'.*?CREATE POLICY {table}_tenant_isolation ON {table}\s+"
                             r"USING \(tenant_id = current_tenant_id\(\)\)", sql, re.DOTALL), (m.name, table)
        assert "CREATE TABLE " not in sql.replace("CREATE TABLE IF NOT EXISTS", ""), m.name
        assert "CREATE INDEX " not in sql.replace("CREATE INDEX IF NOT EXISTS", ""), m.name


def test_apply_twice_revert_and_reapply(conn):
    migrations = discover(MIGRATIONS)
    migrator = Migrator(conn, migrations, rollbacks_dir=ROLLBACKS)
    assert [a.version for a in migrator.run()] == [1, 2, 3, 4]
    for m in migrations:  # the guide's promise: every file can run again
        migrator.execute_sql(m.sql, no_transaction=m.no_transaction, label=f"{m.name} (again)")
    tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == TABLES | {"_sqlx_migrations"}
    rls = dict(conn.execute("SELECT relname, relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = ANY(%s)", (list(TABLES),)).fetchall())
    assert rls == {"events": True, "snapshots": True, "projection_offsets": False, "inventory_stock": False}
    assert scalar(conn, "SELECT count(*) FROM pg_policies WHERE policyname LIKE '%tenant_isolation'") == 4

    for m in reversed(migrations):
        migrator.revert(m)
    for m in reversed(migrations):  # rollbacks are idempotent too
        migrator.execute_sql(read_sql(find_rollback(m, ROLLBACKS))[1], no_transaction=False, label=f"rollback {m.version} (again)")
    assert {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")} == {"_sqlx_migrations"}
    assert scalar(conn, "SELECT count(*) FROM pg_proc WHERE proname IN ('current_tenant_id', 'clear_tenant_offsets', 'clear_tenant_read_models', 'events_reject_mutation')") == 0
    assert [a.version for a in migrator.run()] == [1, 2, 3, 4]


@pytest.fixture
def app_role(pg_cluster, database_url):
    """A non-superuser login role (row-level security does not apply to superusers)."""
    name = "app_" + uuid.uuid4().hex[:8]
    pg_cluster.psql(f"CREATE ROLE {name} LOGIN PASSWORD 'app-pw'")
    yield name
    pg_cluster.psql(f"DROP OWNED BY {name} CASCADE", dbname=database_url.rsplit("/", 1)[1])  # its grants
    pg_cluster.psql(f"DROP ROLE {name}")


def test_tenants_are_isolated_and_events_append_only(conn, database_url, pg_cluster, app_role):
    Migrator(conn, discover(MIGRATIONS), rollbacks_dir=ROLLBACKS).run()
    for table in TABLES:
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app_role}")
    dbname = scalar(conn, "SELECT current_database()")
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(pg_cluster.url(dbname, user=app_role, password="app-pw"), autocommit=True) as app:
        app.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tenant_a),))
        app.execute(
            "INSERT INTO events (tenant_id, aggregate_type, aggregate_id, sequence, event_type, payload) "
            "VALUES (%s, 'item', gen_random_uuid(), 1, 'ItemCreated', '{\"sku\": \"A-1\"}')",
            (tenant_a,),
        )
        app.execute("INSERT INTO projection_offsets (tenant_id, projection_name, last_sequence) VALUES (%s, 'stock', 1)", (tenant_a,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # another tenant's row cannot be written
            app.execute("INSERT INTO projection_offsets (tenant_id, projection_name) VALUES (%s, 'stock')", (tenant_b,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            app.execute("UPDATE events SET event_type = 'Changed'")
        assert app.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        app.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tenant_b),))
        assert app.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert app.execute("SELECT count(*) FROM projection_offsets").fetchone()[0] == 0
    conn.execute("SELECT clear_tenant_offsets(%s, 'stock')", (tenant_a,))
    assert scalar(conn, "SELECT count(*) FROM projection_offsets") == 0
